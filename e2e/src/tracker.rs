//! Watching the HTTPRoutes with a bare client, as a user would: which routes are correct, how
//! many times each was written, and when a route with a given number of rules showed up.
//!
//! A route write is a change to anything but the controller's status annotation (which it
//! writes to the same route under its own field manager, and which tests count apart).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use futures::StreamExt;
use kube::api::{Api, DynamicObject};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use routemap_index::live::{KeptRoute, LiveRoute};
use routing_core::keys::STATUS_ANNOTATION;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::cluster::Cluster;
use crate::wait::wait_every;

/// Poll interval of the tracker's waits.
const TICK: Duration = Duration::from_millis(20);

#[derive(Debug, Default)]
struct TrackState {
    want: HashMap<String, KeptRoute>,
    /// name -> (the route but its status annotation and bookkeeping, correct)
    live: HashMap<String, (Value, bool)>,
    correct: usize,
    synced: bool,
    counting: bool,
    since: Option<Instant>,
    /// Route name -> changes seen (writes but the status annotation's, deletions) since counting
    /// started.
    writes: HashMap<String, u32>,
    all_correct_at: Option<Instant>,
    /// When every wanted route first existed (written at least once, correct or not) since
    /// counting started.
    all_present_at: Option<Instant>,
    last_change_at: Option<Instant>,
}

/// Watches the HTTPRoutes of a namespace; knows which are correct and counts writes.
#[derive(Debug)]
pub struct Tracker {
    state: Arc<Mutex<TrackState>>,
    task: tokio::task::JoinHandle<()>,
}

impl Tracker {
    /// Starts the watch and waits for its initial list.
    pub async fn start(
        cluster: &Cluster,
        ns: &str,
        want: &HashMap<String, KeptRoute>,
    ) -> Result<Self> {
        let state = Arc::new(Mutex::new(TrackState {
            want: want.clone(),
            ..Default::default()
        }));
        let api = cluster.routes(ns);
        let st = state.clone();
        let task = tokio::spawn(async move {
            let stream = watcher::watcher(api, watcher::Config::default());
            let mut stream = std::pin::pin!(stream);
            while let Some(ev) = stream.next().await {
                let now = Instant::now();
                let Ok(ev) = ev else { continue };
                let Ok(mut s) = st.lock() else { return };
                match ev {
                    Event::Init => {}
                    Event::InitDone => s.synced = true,
                    Event::InitApply(o) | Event::Apply(o) => s.upsert(&o, now),
                    Event::Delete(o) => s.delete(&o, now),
                }
            }
        });
        let tracker = Tracker { state, task };
        wait_every(
            "the route watch to list",
            Duration::from_secs(120),
            TICK,
            || async { Ok(tracker.lock().synced.then_some(()).ok_or(String::new())) },
        )
        .await?;
        Ok(tracker)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TrackState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts counting writes from now on (and forgets the last "all correct" time).
    pub fn start_counting(&self) {
        let mut s = self.lock();
        s.counting = true;
        s.since = Some(Instant::now());
        s.writes.clear();
        s.all_correct_at = None;
        s.all_present_at = None;
        s.last_change_at = None;
        if s.correct == s.want.len() {
            s.all_correct_at = s.since;
        }
        if s.all_present() {
            s.all_present_at = s.since;
        }
    }

    /// Routes correct now.
    pub fn correct(&self) -> usize {
        self.lock().correct
    }

    /// Whether route `name` is correct now.
    pub fn is_correct(&self, name: &str) -> bool {
        self.lock().live.get(name).is_some_and(|(_, ok)| *ok)
    }

    /// When every route first became correct since counting started.
    pub fn all_correct_at(&self) -> Option<Instant> {
        self.lock().all_correct_at
    }

    /// When every wanted route first existed since counting started: each written at least
    /// once, whatever its content (e.g. a route written and then changed again before the
    /// last of the others).
    pub fn all_present_at(&self) -> Option<Instant> {
        self.lock().all_present_at
    }

    /// When the last route change was seen.
    pub fn last_change_at(&self) -> Option<Instant> {
        self.lock().last_change_at
    }

    /// Route name -> changes since counting started.
    pub fn writes(&self) -> HashMap<String, u32> {
        self.lock().writes.clone()
    }

    /// Waits until `count` routes are correct.
    pub async fn wait_correct(&self, count: usize, limit: Duration) -> Result<()> {
        wait_every(&format!("{count} routes correct"), limit, TICK, || async {
            let now = self.correct();
            Ok((now == count)
                .then_some(())
                .ok_or(format!("{now} routes correct")))
        })
        .await
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TrackState {
    fn upsert(&mut self, o: &DynamicObject, now: Instant) {
        let name = o.metadata.name.clone().unwrap_or_default();
        let json = serde_json::to_value(o).unwrap_or_default();
        // Correct as the controller's writer judges it: the live route carries what it owns.
        let live = LiveRoute::from_json(&json);
        let content = route_content(json);
        let ok = self
            .want
            .get(&name)
            .zip(live)
            .is_some_and(|(want, live)| live.carries(want));
        let before = self.live.insert(name.clone(), (content.clone(), ok));
        if before.as_ref().is_some_and(|(_, was)| *was) {
            self.correct -= 1;
        }
        if ok {
            self.correct += 1;
        }
        if self.counting && before.as_ref().is_none_or(|(r, _)| *r != content) {
            *self.writes.entry(name).or_default() += 1;
            self.last_change_at = Some(now);
        }
        if self.counting && self.all_correct_at.is_none() && self.correct == self.want.len() {
            self.all_correct_at = Some(now);
        }
        if self.counting && self.all_present_at.is_none() && self.all_present() {
            self.all_present_at = Some(now);
        }
    }

    /// Every wanted route exists.
    fn all_present(&self) -> bool {
        self.live.len() >= self.want.len() && self.want.keys().all(|k| self.live.contains_key(k))
    }

    fn delete(&mut self, o: &DynamicObject, now: Instant) {
        let name = o.metadata.name.clone().unwrap_or_default();
        if let Some((_, was)) = self.live.remove(&name)
            && was
        {
            self.correct -= 1;
        }
        if self.counting {
            *self.writes.entry(name).or_default() += 1;
            self.last_change_at = Some(now);
        }
    }
}

/// Watches one route; sends `(arrival, rules, resourceVersion)` for every change.
pub fn probe(api: Api<DynamicObject>, name: &str) -> mpsc::UnboundedReceiver<(Instant, usize)> {
    let (tx, rx) = mpsc::unbounded_channel();
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    tokio::spawn(async move {
        // With backoff: once the API server is gone, a watcher without it fails and retries at
        // once, forever, and the task never yields to let the runtime shut down.
        let stream = watcher::watcher(api, config).default_backoff();
        let mut stream = std::pin::pin!(stream);
        while let Some(ev) = stream.next().await {
            if tx.is_closed() {
                return;
            }
            let now = Instant::now();
            if let Ok(Event::Apply(o) | Event::InitApply(o)) = ev {
                let rules = o.data["spec"]["rules"].as_array().map_or(0, Vec::len);
                if tx.send((now, rules)).is_err() {
                    return;
                }
            }
        }
    });
    rx
}

/// Waits on a probe for a route with `rules` rules; returns when it arrived.
pub async fn wait_rules(
    rx: &mut mpsc::UnboundedReceiver<(Instant, usize)>,
    rules: usize,
    limit: Duration,
) -> Result<Instant> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some((at, n))) if n == rules => return Ok(at),
            Ok(Some(_)) => {}
            Ok(None) => bail!("the route watch ended"),
            Err(_) => bail!("no route with {rules} rules within {limit:?}"),
        }
    }
}

/// Drops what a probe has queued.
pub fn drain(rx: &mut mpsc::UnboundedReceiver<(Instant, usize)>) {
    while rx.try_recv().is_ok() {}
}

/// The route as far as a route write changes it: without `resourceVersion`, `managedFields`
/// (which every write, the status annotation's too, touches) and the status annotation.
fn route_content(mut json: Value) -> Value {
    if let Some(meta) = json.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
        meta.remove("managedFields");
        if let Some(a) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
            a.remove(STATUS_ANNOTATION);
            if a.is_empty() {
                meta.remove("annotations");
            }
        }
    }
    json
}
