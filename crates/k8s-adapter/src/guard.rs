//! The guard task: judges the candidates of guarded routemaps from Prometheus and withdraws
//! one that keeps failing its objectives.
//!
//! Every decision comes from the pure crate `iter8-guard` (queries, answers, verdicts, state,
//! schedule); this task only keeps time and makes the HTTP calls. It learns what to judge from
//! the index task ([`GuardMsg`]: a [`GuardView`] per guarded routemap, sent when the routemap or
//! one of its resources changes) and tells the index of a withdrawal or a reinstatement
//! ([`IndexMsg::Guard`]), which decides the routemap again with the candidate unavailable: the
//! route then changes through the one write path of readiness, with its ownership checks,
//! coalescing and leader fence.
//!
//! Bounds: each candidate is judged once per `interval`, at an offset from a stable hash of its
//! key (so a thousand releases spread their queries over the interval); a candidate whose last
//! judgement has not returned is skipped at its turn; at most `queries_in_flight` queries are
//! in flight over all routemaps, each with a timeout of half the interval (0.5-5 s); at most
//! [`MAX_JUDGED_CANDIDATES`] candidates of one routemap are judged. Prometheus unreachable is
//! one Warning per routemap while it lasts (and a Normal Event when it answers again), never a
//! withdrawal unless the routemap's `unknownFails` says so, and never touches routing or
//! `/readyz`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use iter8_guard::{
    Answer, CandidateGuard, Identity, Phase, Queries, QueryError, Refresh, Step, Target,
    VerdictKind, candidate_key, judge, next_due, offset, parse_answer, query_request,
    render_queries, request_timeout,
};
use routemap_index::index::{GuardView, Withdrawn};
use routemap_index::report::EventNote;
use routemap_index::routemap::RouteMapKey;
use routing_core::{GuardSpec, RouteMapRef};
use tokio::sync::{Semaphore, mpsc, watch};

use crate::index_task::IndexMsg;
use crate::metrics::Metrics;
use crate::status::StatusWriter;

/// Candidates of one routemap judged at most: a routemap's cost on Prometheus is bounded
/// whatever it declares (the rest are logged once and not judged).
pub const MAX_JUDGED_CANDIDATES: usize = 16;
/// How often the task looks for judgements due.
const TICK: Duration = Duration::from_millis(100);
/// Largest answer read from Prometheus: one number's JSON is a few hundred bytes.
pub const MAX_ANSWER_BYTES: usize = 1 << 20;

/// What the index task tells the guard task.
#[derive(Debug)]
pub enum GuardMsg {
    /// A guarded routemap as it is now.
    View(Box<GuardView>),
    /// A routemap that had a guard is gone or has none any more.
    Gone(RouteMapKey),
}

/// What a GET gives: the status and body, or why there was no answer.
pub type Fetched = Result<(u16, Vec<u8>), String>;

/// An HTTP GET with a timeout. A trait so that tests see the exact requests without a server.
pub trait Fetch: Send + Sync + 'static {
    /// GETs `url`, giving up after `timeout`.
    fn get(&self, url: String, timeout: Duration) -> BoxFuture<'static, Fetched>;
}

/// The controller's Prometheus client: HTTP/1.1, `http://` or `https://` (the system's roots).
#[derive(Clone)]
pub struct HttpFetch {
    client: hyper_util::client::legacy::Client<
        hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
        http_body_util::Empty<bytes::Bytes>,
    >,
}

impl std::fmt::Debug for HttpFetch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HttpFetch")
    }
}

impl HttpFetch {
    /// A client trusting the system's root certificates (`SSL_CERT_FILE` or the usual bundle
    /// paths). Without any (the controller's image is `FROM scratch`), `https://` Prometheus
    /// URLs fail at each query with the TLS error, said once here, and `http://` works.
    pub fn new() -> Self {
        let https = match hyper_rustls::HttpsConnectorBuilder::new().with_native_roots() {
            Ok(builder) => builder,
            Err(e) => {
                tracing::warn!(error = %e, "guard: no system root certificates: Prometheus is reached over http:// only; for https:// mount a CA bundle and set SSL_CERT_FILE");
                hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(no_roots())
            }
        }
        .https_or_http()
        .enable_http1()
        .build();
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build(https);
        HttpFetch { client }
    }
}

impl Default for HttpFetch {
    fn default() -> Self {
        Self::new()
    }
}

/// A TLS configuration that trusts nothing: every `https://` call fails verification.
fn no_roots() -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    match rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
    {
        Ok(b) => b
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth(),
        // The ring provider supports the default versions; this branch is not taken.
        Err(_) => rustls::ClientConfig::builder()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth(),
    }
}

impl Fetch for HttpFetch {
    fn get(&self, url: String, timeout: Duration) -> BoxFuture<'static, Fetched> {
        use http_body_util::BodyExt;
        let client = self.client.clone();
        Box::pin(async move {
            let request = http::Request::get(&url)
                .header(http::header::ACCEPT, "application/json")
                .body(http_body_util::Empty::new())
                .map_err(|e| format!("bad URL {url}: {e}"))?;
            let call = async {
                let answer = client.request(request).await.map_err(|e| {
                    // The connector's error is in the source chain; the top one says "client error".
                    let mut text = e.to_string();
                    let mut source = std::error::Error::source(&e);
                    while let Some(s) = source {
                        text = format!("{text}: {s}");
                        source = s.source();
                    }
                    text
                })?;
                let status = answer.status().as_u16();
                let body = http_body_util::Limited::new(answer.into_body(), MAX_ANSWER_BYTES)
                    .collect()
                    .await
                    .map_err(|e| format!("reading the answer: {e}"))?
                    .to_bytes();
                Ok((status, body.to_vec()))
            };
            match tokio::time::timeout(timeout, call).await {
                Ok(answer) => answer,
                Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
            }
        })
    }
}

/// Settings of the guard task.
#[derive(Debug, Clone)]
pub struct GuardSettings {
    /// The Prometheus of routemaps whose guard names none (the controller chart's).
    pub default_prometheus: Option<String>,
    /// Queries in flight at once, over all routemaps.
    pub queries_in_flight: usize,
}

/// Where the guard's own Events go: published by the leader only.
#[derive(Debug, Clone)]
pub struct GuardEvents {
    /// The publisher.
    pub status: StatusWriter,
    /// Whether this replica leads.
    pub leader: watch::Receiver<bool>,
}

/// One candidate being judged.
#[derive(Debug)]
struct Candidate {
    version: String,
    available: bool,
    state: CandidateGuard,
    /// What its queries were rendered for; they are rendered again only when it or the guard
    /// changes (views come with every status update of the candidate's resources).
    target: Option<Target>,
    queries: Option<Queries>,
    offset: Duration,
    due: Duration,
    busy: bool,
}

/// One guarded routemap.
#[derive(Debug)]
struct Guarded {
    owner: RouteMapRef,
    guard: Box<GuardSpec>,
    prometheus: Option<String>,
    candidates: Vec<Candidate>,
    /// Prometheus cannot be asked (or no URL is set), since the last judgement that reached it.
    outage: Option<Outage>,
    capped_logged: bool,
}

/// An outage of a routemap's Prometheus, as users are told of it: one Warning when it starts,
/// published by the leader (a follower that becomes leader during the outage publishes it
/// then), and a Normal Event when it ends if the Warning was out.
#[derive(Debug)]
struct Outage {
    why: String,
    told: bool,
}

/// A judgement that came back.
#[derive(Debug)]
struct Judged {
    key: RouteMapKey,
    uid: String,
    version: String,
    identity: Identity,
    verdict: iter8_guard::Verdict,
    /// Why Prometheus could not be asked at all, when none of the queries got an answer.
    unreachable: Option<String>,
    /// Each query's outcome, for the metrics: `value`, `no_data` or an error category.
    results: Vec<&'static str>,
}

/// The guard task; see the module doc. Runs until `rx` closes.
pub async fn run_guard(
    mut rx: mpsc::UnboundedReceiver<GuardMsg>,
    index: mpsc::Sender<IndexMsg>,
    fetch: Arc<dyn Fetch>,
    settings: GuardSettings,
    events: Option<GuardEvents>,
    metrics: Metrics,
) {
    // Turns are taken on the wall clock's grid (the process's own clock moving it on), so a
    // candidate keeps its slot in the interval across restarts and in every replica.
    let started = tokio::time::Instant::now();
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let now = || wall + started.elapsed();
    let permits = Arc::new(Semaphore::new(settings.queries_in_flight.max(1)));
    let mut guarded: HashMap<RouteMapKey, Guarded> = HashMap::new();
    let mut running: FuturesUnordered<BoxFuture<'static, Judged>> = FuturesUnordered::new();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            msg = rx.recv() => match msg {
                Some(GuardMsg::View(view)) => {
                    for (key, version) in take_view(&mut guarded, *view, &settings, now()) {
                        if index.send(IndexMsg::Guard { key, version, withdrawn: None }).await.is_err() {
                            return;
                        }
                    }
                }
                Some(GuardMsg::Gone(key)) => {
                    guarded.remove(&key);
                }
                None => return,
            },
            Some(done) = running.next(), if !running.is_empty() => {
                if let Some(msg) = take_judgement(&mut guarded, done, events.as_ref(), &metrics)
                    && index.send(msg).await.is_err()
                {
                    return;
                }
            }
            _ = tick.tick() => {
                let now = now();
                for (key, g) in &mut guarded {
                    for job in due(key, g, now, &permits, &fetch) {
                        running.push(job);
                    }
                    if g.prometheus.is_none() && g.candidates.iter().any(|c| c.available) {
                        outage_begins(g, "no Prometheus URL: set guard.prometheus in the routemap or the controller chart's guard.prometheus");
                    }
                    tell_outage(g, events.as_ref());
                }
            }
        }
        metrics.guard_sizes(
            guarded.values().map(|g| g.candidates.len()).sum(),
            guarded
                .values()
                .flat_map(|g| &g.candidates)
                .filter(|c| c.state.is_withdrawn())
                .count(),
            guarded.values().filter(|g| g.outage.is_some()).count(),
        );
    }
}

/// Takes a routemap's view: new candidates are judged from nothing, known ones keep their
/// count unless their identity changed. Returns the candidates to let back into the route
/// (withdrawn ones with a new version or retry annotation).
fn take_view(
    guarded: &mut HashMap<RouteMapKey, Guarded>,
    view: GuardView,
    settings: &GuardSettings,
    now: Duration,
) -> Vec<(RouteMapKey, String)> {
    let GuardView {
        key,
        uid,
        guard,
        candidates,
    } = view;
    let owner = RouteMapRef {
        namespace: key.namespace.clone(),
        name: key.name.clone(),
        uid,
    };
    let prometheus = guard
        .prometheus
        .clone()
        .or_else(|| settings.default_prometheus.clone());
    let g = match guarded.get_mut(&key) {
        Some(g) if g.owner.uid == owner.uid => g,
        _ => {
            guarded.insert(
                key.clone(),
                Guarded {
                    owner,
                    guard: guard.clone(),
                    prometheus: prometheus.clone(),
                    candidates: Vec::new(),
                    outage: None,
                    capped_logged: false,
                },
            );
            guarded.get_mut(&key).expect("just inserted")
        }
    };
    let interval = guard.interval.get();
    let guard_changed = g.guard != guard;
    if guard_changed || g.prometheus != prometheus {
        g.guard = guard;
        g.prometheus = prometheus;
        g.outage = None;
    }
    let mut reinstated = Vec::new();
    let mut next: Vec<Candidate> = Vec::with_capacity(candidates.len());
    for c in candidates {
        let name = c.version.name.clone();
        let identity = Identity {
            fingerprint: c.fingerprint,
            retry: c.retry,
        };
        let ck = candidate_key(&key.namespace, &key.name, &name);
        let at = offset(&ck, interval);
        let target = Target::of_version(&key.namespace, &c.version);
        let mut candidate = match g.candidates.iter().position(|old| old.version == name) {
            Some(i) => g.candidates.swap_remove(i),
            None => Candidate {
                version: name.clone(),
                available: false,
                // Withdrawn by an earlier process (restored from the route's status): out while
                // the same candidate, back in (below) if it changed meanwhile.
                state: match &c.withdrawn {
                    Some(w) => CandidateGuard::withdrawn_earlier(Identity {
                        fingerprint: w.identity.clone(),
                        retry: None,
                    }),
                    None => CandidateGuard::new(identity.clone()),
                },
                target: None,
                queries: None,
                offset: at,
                due: next_due(now, at, interval),
                busy: false,
            },
        };
        // A restored candidate's identity is the recorded string: compare as strings.
        if candidate.state.phase() == &Phase::WithdrawnEarlier
            && candidate.state.identity().fingerprint == identity.key()
        {
            candidate.state = CandidateGuard::withdrawn_earlier(identity.clone());
        }
        match candidate.state.refresh(&identity) {
            Refresh::Unchanged => {}
            Refresh::Restarted => {
                tracing::info!(routemap.namespace = %key.namespace, routemap.name = %key.name, version = %name, "guard: new version of the candidate; judged afresh");
            }
            Refresh::Reinstated => {
                tracing::info!(routemap.namespace = %key.namespace, routemap.name = %key.name, version = %name, "guard: withdrawn candidate has a new version or a retry; back in the route, judged afresh");
                reinstated.push((key.clone(), name.clone()));
            }
        }
        // The index may still hold a withdrawal this task no longer knows (it never should:
        // both start empty); let it go rather than keep a candidate out for no reason.
        if c.withdrawn.is_some() && !candidate.state.is_withdrawn() {
            reinstated.push((key.clone(), name.clone()));
        }
        candidate.available = c.available;
        if guard_changed || candidate.target.as_ref() != Some(&target) {
            candidate.queries = match render_queries(&g.guard, &target) {
                Ok(q) => Some(q),
                Err(e) => {
                    tracing::warn!(routemap.namespace = %key.namespace, routemap.name = %key.name, version = %name, error = %e, "guard: cannot render the queries; candidate not judged");
                    None
                }
            };
            candidate.target = Some(target);
        }
        if candidate.offset != at {
            candidate.offset = at;
            candidate.due = next_due(now, at, interval);
        }
        next.push(candidate);
    }
    if next.len() > MAX_JUDGED_CANDIDATES && !g.capped_logged {
        g.capped_logged = true;
        tracing::warn!(routemap.namespace = %key.namespace, routemap.name = %key.name, candidates = next.len(), judged = MAX_JUDGED_CANDIDATES, "guard: too many candidates; only the first are judged");
    }
    g.candidates = next;
    reinstated.dedup();
    reinstated
}

/// The judgements due now: a candidate that is available, not withdrawn, and whose last
/// judgement returned.
fn due(
    key: &RouteMapKey,
    g: &mut Guarded,
    now: Duration,
    permits: &Arc<Semaphore>,
    fetch: &Arc<dyn Fetch>,
) -> Vec<BoxFuture<'static, Judged>> {
    let interval = g.guard.interval.get();
    let mut jobs = Vec::new();
    for c in g.candidates.iter_mut().take(MAX_JUDGED_CANDIDATES) {
        if c.due > now {
            continue;
        }
        c.due = next_due(now, c.offset, interval);
        let (Some(queries), Some(base)) = (&c.queries, &g.prometheus) else {
            continue;
        };
        if c.busy || !c.available || !c.state.wants_judging() {
            continue;
        }
        c.busy = true;
        jobs.push(judgement(
            JudgeJob {
                key: key.clone(),
                uid: g.owner.uid.clone(),
                version: c.version.clone(),
                identity: c.state.identity().clone(),
                guard: g.guard.clone(),
                queries: queries.clone(),
                base: base.clone(),
            },
            permits.clone(),
            fetch.clone(),
        ));
    }
    jobs
}

struct JudgeJob {
    key: RouteMapKey,
    uid: String,
    version: String,
    identity: Identity,
    guard: Box<GuardSpec>,
    queries: Queries,
    base: String,
}

/// Asks Prometheus the request count and each objective at one instant, concurrently, then
/// judges.
fn judgement(
    job: JudgeJob,
    permits: Arc<Semaphore>,
    fetch: Arc<dyn Fetch>,
) -> BoxFuture<'static, Judged> {
    Box::pin(async move {
        let at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let timeout = request_timeout(job.guard.interval.get());
        let ask = |query: String| {
            let permits = permits.clone();
            let fetch = fetch.clone();
            let url = query_request(&query, at, timeout).url(&job.base);
            async move {
                let Ok(_permit) = permits.acquire_owned().await else {
                    return Err(QueryError::Unreachable("the guard is stopping".into()));
                };
                match fetch.get(url, timeout).await {
                    Ok((status, body)) => parse_answer(status, &body),
                    Err(why) => Err(QueryError::Unreachable(why)),
                }
            }
        };
        let (requests, answers) = futures::join!(
            ask(job.queries.requests.clone()),
            futures::future::join_all(job.queries.objectives.iter().map(|q| ask(q.query.clone())))
        );
        let unreachable = match &requests {
            Err(QueryError::Unreachable(why))
                if answers
                    .iter()
                    .all(|a| matches!(a, Err(QueryError::Unreachable(_)))) =>
            {
                Some(why.clone())
            }
            _ => None,
        };
        let verdict = judge(&job.guard, &job.queries, &requests, &answers);
        let results = std::iter::once(&requests)
            .chain(&answers)
            .map(|a| match a {
                Ok(Answer::Value(_)) => "value",
                Ok(Answer::NoData) => "no_data",
                Err(e) => e.category(),
            })
            .collect();
        Judged {
            key: job.key,
            uid: job.uid,
            version: job.version,
            identity: job.identity,
            verdict,
            unreachable,
            results,
        }
    })
}

/// Records a judgement; a withdrawal becomes the message for the index.
fn take_judgement(
    guarded: &mut HashMap<RouteMapKey, Guarded>,
    done: Judged,
    events: Option<&GuardEvents>,
    metrics: &Metrics,
) -> Option<IndexMsg> {
    let g = guarded
        .get_mut(&done.key)
        .filter(|g| g.owner.uid == done.uid)?;
    let fail_after = g.guard.fail_after;
    metrics.guard_verdict(done.verdict.kind.as_str());
    for result in &done.results {
        metrics.guard_query(result);
    }
    match &done.unreachable {
        Some(why) => {
            let why = format!(
                "Prometheus {} cannot be reached ({why})",
                g.prometheus.as_deref().unwrap_or("-")
            );
            outage_begins(g, &why);
            tell_outage(g, events);
        }
        None => outage_ends(g, events),
    }
    let c = g
        .candidates
        .iter_mut()
        .find(|c| c.version == done.version)?;
    c.busy = false;
    let span = tracing::debug_span!("guard", routemap.namespace = %done.key.namespace, routemap.name = %done.key.name, version = %done.version);
    let _enter = span.enter();
    match c.state.record(&done.identity, &done.verdict, fail_after) {
        Step::Withdraw(w) => {
            let why = w.to_string();
            metrics.guard_withdrawal();
            tracing::warn!(routemap.namespace = %done.key.namespace, routemap.name = %done.key.name, version = %done.version, why = %why, "guard: candidate withdrawn");
            Some(IndexMsg::Guard {
                key: done.key,
                version: done.version,
                withdrawn: Some(Withdrawn {
                    why,
                    identity: done.identity.key(),
                }),
            })
        }
        Step::Judging { failing } => {
            if done.verdict.kind == VerdictKind::Failing {
                tracing::info!(routemap.namespace = %done.key.namespace, routemap.name = %done.key.name, version = %done.version, failing, fail_after, verdict = %done.verdict.summary(), "guard: failing verdict");
            } else {
                tracing::debug!(failing, verdict = %done.verdict.summary(), "guard: verdict");
            }
            None
        }
        Step::StaysWithdrawn | Step::Stale => None,
    }
}

/// Notes the start of an outage (logged once; the Warning follows from [`tell_outage`]).
fn outage_begins(g: &mut Guarded, why: &str) {
    if g.outage.is_some() {
        return;
    }
    tracing::warn!(routemap.namespace = %g.owner.namespace, routemap.name = %g.owner.name, "guard: {why}");
    g.outage = Some(Outage {
        why: why.to_string(),
        told: false,
    });
}

/// Publishes the outage's one Warning, if it is not out yet and this replica leads.
fn tell_outage(g: &mut Guarded, events: Option<&GuardEvents>) {
    let Some(outage) = g.outage.as_mut().filter(|o| !o.told) else {
        return;
    };
    let note = format!(
        "{}; until it answers, the verdicts of this routemap's candidates are unknown and none is withdrawn for it{}; routing goes on by readiness",
        outage.why,
        if g.guard.unknown_fails {
            " (except that unknownFails counts each unknown verdict as failing)"
        } else {
            ""
        }
    );
    outage.told = publish(
        events,
        &g.owner,
        EventNote {
            warning: true,
            reason: "GuardPrometheusUnreachable",
            note,
        },
    );
}

/// Prometheus answered: the outage, if any, is over (told with a Normal Event if its Warning
/// was out).
fn outage_ends(g: &mut Guarded, events: Option<&GuardEvents>) {
    let Some(outage) = g.outage.take() else {
        return;
    };
    let note = format!(
        "Prometheus {} answers again; candidates are judged again",
        g.prometheus.as_deref().unwrap_or("-")
    );
    tracing::info!(routemap.namespace = %g.owner.namespace, routemap.name = %g.owner.name, "guard: {note}");
    if outage.told {
        publish(
            events,
            &g.owner,
            EventNote {
                warning: false,
                reason: "GuardPrometheusReachable",
                note,
            },
        );
    }
}

/// Publishes an Event in the background (the guard never waits on the API server), as the
/// leader only. Returns whether it is sent: false on a follower.
fn publish(events: Option<&GuardEvents>, owner: &RouteMapRef, event: EventNote) -> bool {
    let Some(events) = events else {
        return true;
    };
    if !*events.leader.borrow() {
        return false;
    }
    let status = events.status.clone();
    let owner = owner.clone();
    tokio::spawn(async move { status.publish_event(&owner, &event).await });
    true
}
