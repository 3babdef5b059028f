//! The writer: makes the writes the planner (`routemap_index::write_plan`) decides, several
//! routemaps at a time.
//!
//! Inputs ([`WriterMsg`]): the index's changes, what the routemap watch saw of each routemap
//! (resourceVersion, creation time), and the HTTPRoute watch's view of the routes we own
//! ([`LiveEvent`], with the status annotation on each); plus leadership flips, a periodic resync
//! and retry timers. Outputs: a GET of a route name before its first create (a route that is not
//! ours is never written), server-side applies of HTTPRoutes (`fieldManager` from the config,
//! `force=true`, a timeout per call), deletes of routes a routemap no longer writes, and through
//! [`crate::status`] Events and the status annotation on our route.
//!
//! How: routemaps with something to do wait in a queue, each at most once (a newer decision
//! for a routemap still queued replaces the older one: the planner holds only the latest). Up
//! to `max_in_flight` calls run at once (fewer while the API server answers 429:
//! [`InFlightLimit`]), at most one per routemap, so a routemap's route, Event
//! and status are written in order. Messages are read only while the queue is below
//! [`QUEUE_LIMIT`], so a burst (a cold start) pushes back on the index task through the bounded
//! channel instead of growing memory.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use kube::Client;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use routemap_index::index::Change;
use routemap_index::report::RouteMapStatus;
use routemap_index::write_plan::{InFlightLimit, Next, Step, WritePlanner};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::error::{WriteError, write_error};
use crate::fence::Fence;
use crate::kube_types::{DynamicObject, GatewayHttpRoute, httproute_resource};
use crate::metrics::Metrics;
use crate::status::StatusWriter;
pub use routemap_index::live::{KeptRoute, LiveRoute, RouteId, covers};
use routemap_index::routemap::RouteMapKey;
pub use routemap_index::write_plan::LiveEvent;

/// Routemaps waiting for a write before the writer stops reading messages.
pub const QUEUE_LIMIT: usize = 1024;

/// Messages to the writer task.
#[derive(Debug, Clone)]
pub enum WriterMsg {
    /// A decision of the index (boxed: a route is large next to the other messages).
    Change(Box<Change>),
    /// A routemap was seen by the watch.
    Seen {
        /// Which routemap.
        key: RouteMapKey,
        /// Its resourceVersion.
        resource_version: Option<String>,
        /// Its `metadata.creationTimestamp` (of two routemaps claiming a route, the older wins).
        created: Option<String>,
    },
    /// The HTTPRoute watch.
    Live(LiveEvent),
    /// Every event of a watch up to this resourceVersion was sent before: once the writes
    /// they caused are done, it is `iter8_observed_resource_version{watch}`.
    Observed {
        /// The watch's name.
        watch: String,
        /// The resourceVersion, as an integer.
        resource_version: i64,
    },
}

/// Settings of the writer.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Field manager of the route applies.
    pub field_manager: String,
    /// Timeout of each API call.
    pub timeout: Duration,
    /// Period of the resync that repairs missed writes.
    pub resync: Duration,
}

/// How a call went, handed back to the planner.
enum Done {
    Applied(Result<LiveRoute, WriteError>),
    Reported {
        status: RouteMapStatus,
        answer: Result<(), WriteError>,
        /// Its Event was published (a failed status write is then retried alone).
        event_out: bool,
    },
    Deleted {
        id: RouteId,
        answer: Result<(), WriteError>,
    },
    Looked(Result<Option<LiveRoute>, WriteError>),
    Evented,
}

impl Done {
    /// The API server throttled the call (429, or a 5xx naming a delay).
    fn throttled(&self) -> bool {
        let throttled = |e: &WriteError| matches!(e, WriteError::Throttled { .. });
        match self {
            Done::Applied(Err(e)) | Done::Looked(Err(e)) => throttled(e),
            Done::Reported { answer: Err(e), .. } | Done::Deleted { answer: Err(e), .. } => {
                throttled(e)
            }
            _ => false,
        }
    }
}

/// The writer. See the module doc.
pub struct Writer {
    client: Client,
    config: WriterConfig,
    status: StatusWriter,
    metrics: Metrics,
    fence: Fence,
    planner: WritePlanner,
    limit: InFlightLimit,
    queue: VecDeque<RouteMapKey>,
    queued: HashSet<RouteMapKey>,
    /// Routemaps with a call in flight, and those that got new work meanwhile.
    busy: HashSet<RouteMapKey>,
    again: HashSet<RouteMapKey>,
    /// Calls in flight, each with the time it started.
    in_flight: FuturesUnordered<BoxFuture<'static, (RouteMapKey, Done, std::time::Instant)>>,
    /// Work is numbered as it is queued: a routemap with work queued or in flight holds the
    /// number it got when it had none, until it has none again.
    ticket: u64,
    outstanding: HashMap<RouteMapKey, u64>,
    by_ticket: BTreeSet<(u64, RouteMapKey)>,
    /// Watch marks, each with the number of the next work to come: published once no work
    /// numbered before it is outstanding.
    marks: VecDeque<(String, i64, u64)>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("routemaps", &self.planner.routemap_count())
            .field("queued", &self.queue.len())
            .field("in_flight", &self.in_flight.len())
            .field("leader", &self.planner.is_leader())
            .finish()
    }
}

impl Writer {
    /// A writer; it starts as a follower (no writes until [`Self::set_leader`]).
    pub fn new(
        client: Client,
        config: WriterConfig,
        status: StatusWriter,
        metrics: Metrics,
    ) -> Self {
        let field_manager = config.field_manager.clone();
        Writer {
            client,
            config,
            status,
            metrics,
            fence: Fence::always(),
            planner: {
                let mut planner = WritePlanner::new();
                planner.set_field_manager(&field_manager);
                planner
            },
            limit: InFlightLimit::new(routemap_index::config::DEFAULT_MAX_WRITES_IN_FLIGHT),
            queue: VecDeque::new(),
            queued: HashSet::new(),
            busy: HashSet::new(),
            again: HashSet::new(),
            in_flight: FuturesUnordered::new(),
            ticket: 0,
            outstanding: HashMap::new(),
            by_ticket: BTreeSet::new(),
            marks: VecDeque::new(),
        }
    }

    /// Writes only while `fence` is open (leader election); without it, always.
    pub fn with_fence(mut self, fence: Fence) -> Self {
        self.fence = fence;
        self
    }

    /// At most `n` (at least 1) calls in flight.
    pub fn with_max_in_flight(mut self, n: usize) -> Self {
        self.limit = InFlightLimit::new(n);
        self
    }

    /// Handles one message and makes the writes it calls for, waiting for them to finish
    /// (the task's loop, [`Self::run`], does not wait; tests call this).
    pub async fn handle(&mut self, msg: WriterMsg) {
        self.accept(msg);
        self.flush().await;
    }

    /// Leadership changed; a new leader catches up on everything at once.
    pub async fn set_leader(&mut self, leader: bool) {
        self.leadership(leader);
        self.flush().await;
    }

    /// Re-checks every routemap (the periodic resync): repairs missed writes, retries reports.
    pub async fn resync(&mut self) {
        let keys = self.planner.resync();
        self.enqueue_all(keys);
        self.flush().await;
    }

    /// Retries whose time has come.
    pub async fn retry_due(&mut self) {
        self.enqueue_due();
        self.flush().await;
    }

    /// When the next retry is due.
    pub fn next_retry(&self) -> Option<Instant> {
        self.planner.next_retry().map(Instant::from_std)
    }

    fn accept(&mut self, msg: WriterMsg) {
        match msg {
            WriterMsg::Seen {
                key,
                resource_version,
                created,
            } => self.planner.seen(key, resource_version, created),
            WriterMsg::Change(change) => {
                if let Some(key) = self.planner.change(*change) {
                    self.enqueue(key);
                }
            }
            WriterMsg::Live(event) => {
                let keys = self.planner.live_event(event);
                self.enqueue_all(keys);
            }
            WriterMsg::Observed {
                watch,
                resource_version,
            } => self.marks.push_back((watch, resource_version, self.ticket)),
        }
        let woken = self.planner.take_woken();
        self.enqueue_all(woken);
        self.count();
        self.release_marks();
    }

    /// Publishes the marks no outstanding work came before.
    fn release_marks(&mut self) {
        let oldest = self.by_ticket.first().map(|(t, _)| *t);
        while let Some((_, _, ticket)) = self.marks.front() {
            if oldest.is_some_and(|o| o < *ticket) {
                break;
            }
            if let Some((watch, rv, _)) = self.marks.pop_front() {
                self.metrics.observed(&watch, rv);
            }
        }
    }

    /// Numbers a routemap's work if it had none outstanding.
    fn hold(&mut self, key: &RouteMapKey) {
        if !self.outstanding.contains_key(key) {
            self.outstanding.insert(key.clone(), self.ticket);
            self.by_ticket.insert((self.ticket, key.clone()));
            self.ticket += 1;
        }
    }

    /// Drops a routemap's number once it has nothing queued or in flight.
    fn release(&mut self, key: &RouteMapKey) {
        if self.queued.contains(key) || self.busy.contains(key) || self.again.contains(key) {
            return;
        }
        if let Some(ticket) = self.outstanding.remove(key) {
            self.by_ticket.remove(&(ticket, key.clone()));
        }
    }

    fn leadership(&mut self, leader: bool) {
        if leader != self.planner.is_leader() {
            self.metrics.set_leader(leader);
            tracing::info!(leader, "leadership changed");
        }
        let keys = self.planner.set_leader(leader);
        self.enqueue_all(keys);
    }

    fn enqueue_due(&mut self) {
        let keys = self.planner.due(Instant::now().into_std());
        self.enqueue_all(keys);
    }

    fn enqueue_all(&mut self, keys: Vec<RouteMapKey>) {
        for key in keys {
            self.enqueue(key);
        }
    }

    /// Queues a routemap once; one with a call in flight is queued again when it returns.
    fn enqueue(&mut self, key: RouteMapKey) {
        self.hold(&key);
        if self.busy.contains(&key) {
            self.again.insert(key);
        } else if self.queued.insert(key.clone()) {
            self.queue.push_back(key);
        }
    }

    /// Starts calls for queued routemaps while there is room.
    fn fill(&mut self) {
        self.metrics.set_write_limit(self.limit.current());
        while self.in_flight.len() < self.limit.current() {
            let Some(key) = self.queue.pop_front() else {
                break;
            };
            self.queued.remove(&key);
            if let Next::Write(step) = self.planner.next(&key, Instant::now().into_std()) {
                self.busy.insert(key.clone());
                // Leadership fence (crate::fence): nothing starts once it is closed, and a call
                // still running when it closes is dropped, its requests and waits with it.
                let fenced = fenced_off(&step);
                let call = self.call(key.clone(), step);
                let fence = self.fence.clone();
                let started = Instant::now().into_std();
                self.in_flight.push(Box::pin(async move {
                    let (key, done) = fence.guard(call).await.unwrap_or_else(|| {
                        tracing::info!(routemap.namespace = %key.namespace, routemap.name = %key.name, "write not made: leadership fence closed");
                        (key, fenced)
                    });
                    (key, done, started)
                }));
            } else {
                self.release(&key);
            }
        }
        self.count();
        self.release_marks();
    }

    /// Hands a finished call back to the planner and queues what follows.
    fn finish(&mut self, key: RouteMapKey, done: Done, started: std::time::Instant) {
        self.busy.remove(&key);
        let now = Instant::now().into_std();
        let jitter = fastrand::f64();
        if done.throttled() {
            self.limit.throttled(started, now);
        } else {
            self.limit.answered();
        }
        let more = match done {
            Done::Applied(answer) => {
                match &answer {
                    Ok(_) => self.metrics.apply("applied"),
                    Err(e) => self.count_failure("apply", e),
                }
                self.planner.applied(&key, answer, now, jitter)
            }
            Done::Reported {
                status,
                answer,
                event_out,
            } => {
                // Failed Event and status writes are counted by the status writer.
                if let Err(WriteError::Throttled { .. }) = &answer {
                    self.metrics.throttled("report");
                }
                if event_out && answer.is_err() {
                    self.planner.event_out(&key, &status);
                }
                self.planner.reported(&key, &status, answer, now, jitter)
            }
            Done::Deleted { id, answer } => {
                match &answer {
                    Ok(()) => self.metrics.route_deleted(),
                    Err(e) => self.count_failure("delete", e),
                }
                self.planner.deleted(&key, &id, answer, now, jitter)
            }
            Done::Looked(answer) => {
                if let Err(e) = &answer {
                    self.count_failure("get", e);
                }
                self.planner.looked(&key, answer, now, jitter)
            }
            Done::Evented => self.planner.evented(&key),
        };
        let woken = self.planner.take_woken();
        self.enqueue_all(woken);
        // Both: a routemap that got new work while in flight must leave `again` either way.
        let again = self.again.remove(&key);
        if more || again {
            // Finish this routemap's sequence before starting others.
            if self.queued.insert(key.clone()) {
                self.queue.push_front(key);
            }
        } else {
            self.release(&key);
        }
        self.release_marks();
    }

    fn count_failure(&self, call: &'static str, e: &WriteError) {
        if let WriteError::Throttled { .. } = e {
            self.metrics.throttled(call);
        } else {
            if call == "apply" {
                self.metrics.apply("failed");
            }
            self.metrics.error(e.category());
        }
    }

    fn count(&mut self) {
        let tally = self.planner.take_tally();
        for _ in 0..tally.decisions {
            self.metrics.reconcile();
        }
        for _ in 0..tally.unchanged {
            self.metrics.apply("unchanged");
        }
        for _ in 0..tally.skipped_follower {
            self.metrics.apply("skipped_follower");
        }
        for category in tally.invalid {
            self.metrics.invalid_routemap(category);
        }
        for acceptance in tally.gateway {
            self.metrics.gateway_answer(acceptance);
        }
    }

    /// Runs queued work until nothing is queued or in flight.
    async fn flush(&mut self) {
        loop {
            self.fill();
            match self.in_flight.next().await {
                Some((key, done, started)) => self.finish(key, done, started),
                None => return,
            }
        }
    }

    /// The call for one step, in a span named after its routemap.
    fn call(&self, key: RouteMapKey, step: Step) -> BoxFuture<'static, (RouteMapKey, Done)> {
        use tracing::Instrument;
        let span = tracing::info_span!(
            "write",
            routemap.namespace = %key.namespace,
            routemap.name = %key.name
        );
        let client = self.client.clone();
        let status = self.status.clone();
        let field_manager = self.config.field_manager.clone();
        let timeout = self.config.timeout;
        let metrics = self.metrics.clone();
        Box::pin(
            async move {
                let done = match step {
                    Step::Apply { id, route } => Done::Applied(
                        apply(&client, &field_manager, timeout, &metrics, &id, &route).await,
                    ),
                    Step::Look { id } => Done::Looked(look(&client, timeout, &id).await),
                    Step::Event { owner, event } => {
                        tracing::warn!(reason = event.reason, note = %event.note, "route contested");
                        status.publish_event(&owner, &event).await;
                        Done::Evented
                    }
                    Step::Report {
                        owner,
                        report,
                        route,
                    } => {
                        let (event_out, answer) =
                            status.publish(&owner, &report, route.as_ref()).await;
                        if let Err(e) = &answer {
                            tracing::warn!(error = %e, "cannot write routemap status");
                        }
                        Done::Reported {
                            status: report.status,
                            answer,
                            event_out,
                        }
                    }
                    Step::Delete {
                        id,
                        resource_version,
                        owner,
                        event,
                    } => {
                        let answer = delete(&client, timeout, &id, resource_version).await;
                        match &answer {
                            Ok(()) => {
                                tracing::info!(route.namespace = %id.namespace, route.name = %id.name, "deleted HTTPRoute this routemap no longer writes");
                                status.publish_event(&owner, &event).await;
                            }
                            Err(e) => {
                                tracing::warn!(route.namespace = %id.namespace, route.name = %id.name, error = %e, "cannot delete HTTPRoute")
                            }
                        }
                        Done::Deleted { id, answer }
                    }
                };
                (key, done)
            }
            .instrument(span),
        )
    }

    /// Runs the task until the channel closes or `shutdown` flips.
    pub async fn run(
        mut self,
        mut rx: mpsc::Receiver<WriterMsg>,
        mut leader: watch::Receiver<bool>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut resync = tokio::time::interval(self.config.resync);
        resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        resync.tick().await;
        let is_leader = *leader.borrow_and_update();
        self.leadership(is_leader);
        loop {
            self.fill();
            let next_retry = self.next_retry();
            let room = self.queue.len() < QUEUE_LIMIT;
            tokio::select! {
                Some((key, done, started)) = self.in_flight.next(), if !self.in_flight.is_empty() => {
                    self.finish(key, done, started);
                }
                msg = rx.recv(), if room => match msg {
                    Some(msg) => self.accept(msg),
                    None => break,
                },
                changed = leader.changed() => {
                    if changed.is_err() {
                        // The elector stopped: act as a follower from now on.
                        self.leadership(false);
                        break;
                    }
                    let is_leader = *leader.borrow_and_update();
                    self.leadership(is_leader);
                }
                _ = resync.tick() => {
                    let keys = self.planner.resync();
                    self.enqueue_all(keys);
                }
                _ = sleep_until(next_retry) => self.enqueue_due(),
                _ = shutdown.changed() => break,
            }
        }
        tracing::info!("writer stopped");
    }
}

/// One server-side apply, timed and bounded by the per-call timeout.
async fn apply(
    client: &Client,
    field_manager: &str,
    timeout: Duration,
    metrics: &Metrics,
    id: &RouteId,
    route: &KeptRoute,
) -> Result<LiveRoute, WriteError> {
    let body: GatewayHttpRoute = route
        .to_json()
        .and_then(serde_json::from_value)
        .map_err(|e| WriteError::Encode(e.to_string()))?;
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &id.namespace, &httproute_resource());
    let params = PatchParams::apply(field_manager).force();
    let started = std::time::Instant::now();
    let result =
        tokio::time::timeout(timeout, api.patch(&id.name, &params, &Patch::Apply(&body))).await;
    metrics.apply_latency(started.elapsed().as_secs_f64());
    let answer = match result {
        Ok(Ok(obj)) => serde_json::to_value(obj)
            .ok()
            .and_then(|v| LiveRoute::from_json(&v))
            .ok_or_else(|| WriteError::Connection("unreadable answer to an apply".into())),
        Ok(Err(e)) => Err(write_error(e)),
        Err(_) => Err(WriteError::Timeout(timeout)),
    };
    match &answer {
        Ok(_) => {
            tracing::info!(route.namespace = %id.namespace, route.name = %id.name, "applied HTTPRoute")
        }
        Err(e) => {
            tracing::warn!(route.namespace = %id.namespace, route.name = %id.name, category = e.category(), error = %e, transient = e.transient(), "cannot apply HTTPRoute")
        }
    }
    answer
}

/// GETs a route name the owned-route watch does not show: `None` when there is no such route.
async fn look(
    client: &Client,
    timeout: Duration,
    id: &RouteId,
) -> Result<Option<LiveRoute>, WriteError> {
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &id.namespace, &httproute_resource());
    match tokio::time::timeout(timeout, api.get_opt(&id.name)).await {
        Ok(Ok(None)) => Ok(None),
        Ok(Ok(Some(obj))) => {
            let live = serde_json::to_value(obj)
                .ok()
                .and_then(|v| LiveRoute::from_json(&v))
                .ok_or_else(|| WriteError::Connection("unreadable route".into()))?;
            Ok(Some(live))
        }
        Ok(Err(e)) => Err(write_error(e)),
        Err(_) => Err(WriteError::Timeout(timeout)),
    }
}

/// Deletes a route if it is still as last seen.
async fn delete(
    client: &Client,
    timeout: Duration,
    id: &RouteId,
    resource_version: String,
) -> Result<(), WriteError> {
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &id.namespace, &httproute_resource());
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            resource_version: Some(resource_version),
            uid: None,
        }),
        ..Default::default()
    };
    match tokio::time::timeout(timeout, api.delete(&id.name, &params)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(write_error(e)),
        Err(_) => Err(WriteError::Timeout(timeout)),
    }
}

/// What a call that the leadership fence stopped hands back: a transient failure, retried if
/// this replica leads again.
fn fenced_off(step: &Step) -> Done {
    let e = || WriteError::Connection("leadership fence closed".into());
    match step {
        Step::Apply { .. } => Done::Applied(Err(e())),
        Step::Report { report, .. } => Done::Reported {
            status: report.status.clone(),
            answer: Err(e()),
            event_out: false,
        },
        Step::Delete { id, .. } => Done::Deleted {
            id: id.clone(),
            answer: Err(e()),
        },
        Step::Look { .. } => Done::Looked(Err(e())),
        // The Event is not published: the replica that leads now reports for itself.
        Step::Event { .. } => Done::Evented,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
