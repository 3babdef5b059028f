//! From a snapshot of cluster objects to one [`ReleaseView`] per routemap: pure, no IO, no clock.
//!
//! The decisions are the controller's own: the objects go through
//! `routemap_index::offline::render` with `from_status` (the controller's index and decision
//! function, readiness judged from each object's status); the gateway's answer is
//! `routemap_index::gateway`'s reading of `status.parents`; whether the live route is the
//! decided one is `routemap_index::live`'s test, the one the controller's writer uses.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::jiff::Timestamp;
use routemap_index::config::Config;
use routemap_index::decision::WITHDRAWN_REASON;
use routemap_index::gateway::{GatewayStatus, gateway_status};
use routemap_index::index::{Decision, Withdrawals, guarded_states};
use routemap_index::live::{KeptRoute, LiveRoute};
use routemap_index::offline::{self, Availability, Document, InOrder, LoadError};
use routemap_index::report::RouteMapStatus;
use routemap_index::routemap::RouteMapKey;
use routing_core::duration::format_duration;
use routing_core::keys::{ROUTEMAP_LABEL, STATUS_ANNOTATION};
use routing_core::{
    HttpRoute, RouteMapRef, RouteMapSpec, Strategy, VersionState, effective_weights, plan,
};
use serde::Serialize;
use serde_json::Value;

use crate::requests::{Outcome, describe_match_spec, describe_request, sample_request};

/// How many Events a view keeps (the latest).
pub const EVENTS_SHOWN: usize = 5;

/// The objects read from a cluster (or a fixture): routemaps, version resources, HTTPRoutes and
/// Events, as JSON.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Every object, each with `apiVersion` and `kind`.
    pub objects: Vec<Value>,
}

impl Snapshot {
    /// Reads a YAML stream of objects (a `kind: List` is unpacked), as the goldens store them.
    pub fn from_yaml(file: &str, text: &str) -> Result<Self, LoadError> {
        let docs = offline::load_documents(file, text, &InOrder)?;
        Ok(Snapshot {
            objects: docs.into_iter().map(|d| d.object).collect(),
        })
    }

    fn of_kind<'a, 'k>(&'a self, kind: &'k str) -> impl Iterator<Item = &'a Value> + use<'a, 'k> {
        self.objects.iter().filter(move |o| o["kind"] == kind)
    }

    fn find(&self, kind: &str, namespace: &str, name: &str) -> Option<&Value> {
        self.of_kind(kind)
            .find(|o| o["metadata"]["namespace"] == namespace && o["metadata"]["name"] == name)
    }
}

/// Which release(s) to show.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// `None`: every namespace in the snapshot.
    pub namespace: Option<String>,
    /// A release name (`httpbin` selects the routemap `httpbin-routemap`, or one named
    /// `httpbin`); `None`: all.
    pub release: Option<String>,
}

impl Selection {
    fn selects(&self, key: &RouteMapKey) -> bool {
        self.namespace
            .as_ref()
            .is_none_or(|ns| *ns == key.namespace)
            && self
                .release
                .as_ref()
                .is_none_or(|r| key.name == *r || key.name == format!("{r}-routemap"))
    }
}

/// A version's role in the routemap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Role {
    /// Version 0: the catch-all.
    Primary,
    /// Any other version.
    Candidate,
}

/// One version as decided.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionView {
    /// Version name (its Service, and its `app-version`).
    pub name: String,
    /// Primary or candidate.
    pub role: Role,
    /// Its matches, described (canary candidates).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<String>,
    /// Effective weight (0 while unavailable).
    pub weight: u32,
    /// Every resource ready.
    pub available: bool,
    /// Why it is not available.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Problems that did not change the decision (an invalid weight annotation).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// The guard's word on this version (a candidate of a guarded routemap): `withdrawn: why`
    /// as the controller's status says, else what it is judged on.
    pub guard: Option<String>,
}

/// How the live route stands against the decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum RouteState {
    /// The live route carries everything decided.
    AsDecided,
    /// The live route lacks part of the decided route (not yet written, or changed by another
    /// writer).
    Differs,
    /// There is no live route yet.
    NotWritten,
    /// Strategy `none`: no route is written.
    NoRoute,
    /// The routemap is invalid: the live route is left as it is.
    KeptAsIs,
}

/// The route, as it is live.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteView {
    /// Its name (from the spec, else the live route labelled with the routemap).
    pub name: Option<String>,
    /// Against the decision.
    pub state: RouteState,
    /// `metadata.generation` of the live route.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    /// What the implementations programming it say (`status.parents`), if it is live.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway: Option<GatewayStatus>,
}

/// One request and where it goes.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestView {
    /// `GET / [traffic: test]`.
    pub request: String,
    /// The candidate whose match made it up (none for the default request).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub for_version: Option<String>,
    /// On the live route (none when there is no live route).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live: Option<Outcome>,
    /// On the decided route (none for strategy `none` or an invalid routemap).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided: Option<Outcome>,
}

/// An Event about the routemap.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventView {
    /// `Normal` or `Warning`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `RouteApplied`, ...
    pub reason: String,
    /// The note.
    pub message: String,
    /// When it last happened (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
}

/// Everything shown of one release (routemap).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseView {
    /// Namespace.
    pub namespace: String,
    /// The routemap ConfigMap's name.
    pub routemap: String,
    /// The release: the routemap's name without `-routemap`.
    pub release: String,
    /// Strategy, when the spec parses.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strategy: Option<String>,
    /// Why the routemap is invalid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invalid: Option<String>,
    /// The route.
    pub route: RouteView,
    /// The versions, primary first.
    pub versions: Vec<VersionView>,
    /// Where the default request and each candidate's match go.
    pub requests: Vec<RequestView>,
    /// Requests that could not be made up for a match (regular expressions).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_sampled: Vec<String>,
    /// The controller's `iter8.tools/status` (read from the route first, then the routemap).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub controller_status: Option<RouteMapStatus>,
    /// The routemap's current resourceVersion.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    /// The last Events about the routemap, oldest first.
    pub events: Vec<EventView>,
    /// How many Events there are in all.
    pub event_count: usize,
}

impl ReleaseView {
    /// `namespace/release`.
    pub fn title(&self) -> String {
        format!("{}/{}", self.namespace, self.release)
    }
}

/// Every routemap of the snapshot decided as the controller decides: the objects fed to its
/// index (Events are not its input), readiness from their status.
fn render(config: &Config, snapshot: &Snapshot) -> offline::Rendering {
    let documents: Vec<Document> = snapshot
        .objects
        .iter()
        .filter(|o| o["kind"] != "Event")
        .map(|o| Document {
            file: "cluster".into(),
            object: o.clone(),
        })
        .collect();
    let availability = Availability {
        from_status: true,
        unready: BTreeSet::new(),
        withdrawn: withdrawals(snapshot),
    };
    offline::render(config, "default", &documents, &availability, &InOrder)
}

/// The candidates the controller says its guard withdrew: the `withdrawn` of the status
/// annotation on each route it wrote, by the routemap its label names.
fn withdrawals(snapshot: &Snapshot) -> BTreeMap<Option<RouteMapKey>, Withdrawals> {
    snapshot
        .of_kind("HTTPRoute")
        .filter_map(|o| {
            let meta = &o["metadata"];
            let status = RouteMapStatus::parse(meta["annotations"][STATUS_ANNOTATION].as_str()?)?;
            (!status.withdrawn.is_empty()).then(|| {
                let key = RouteMapKey::new(
                    meta["namespace"].as_str().unwrap_or_default(),
                    meta["labels"][ROUTEMAP_LABEL].as_str().unwrap_or_default(),
                );
                (Some(key), status.withdrawn)
            })
        })
        .collect()
}

/// Every selected routemap of the snapshot, decided as the controller decides, in
/// namespace/name order.
pub fn views(config: &Config, snapshot: &Snapshot, selection: &Selection) -> Vec<ReleaseView> {
    let rendering = render(config, snapshot);
    rendering
        .routemaps
        .iter()
        .filter(|r| selection.selects(&r.key))
        .map(|r| {
            let spec = rendering.index.spec(&r.key);
            let states = spec.map(|s| states_of(&rendering, &r.key, s));
            release_view(snapshot, &r.key, &r.decision, spec, states.as_deref())
        })
        .collect()
}

fn release_view(
    snapshot: &Snapshot,
    key: &RouteMapKey,
    decision: &Decision,
    spec: Option<&RouteMapSpec>,
    states: Option<&[VersionState]>,
) -> ReleaseView {
    let routemap = snapshot.find("ConfigMap", &key.namespace, &key.name);
    let live = live_route(snapshot, key, spec);
    let decided = match decision {
        Decision::Desired { route, .. } => route.as_ref(),
        Decision::Invalid { .. } => None,
    };
    let route = route_view(spec, decision, live);
    let live_model: Option<HttpRoute> = live.and_then(|l| serde_json::from_value(l.clone()).ok());
    let (requests, not_sampled) = requests(spec, live_model.as_ref(), decided);
    let status = [live, routemap]
        .into_iter()
        .flatten()
        .find_map(|o| o["metadata"]["annotations"][STATUS_ANNOTATION].as_str())
        .and_then(RouteMapStatus::parse);
    let (events, event_count) = events(snapshot, key);
    ReleaseView {
        namespace: key.namespace.clone(),
        routemap: key.name.clone(),
        release: key
            .name
            .strip_suffix("-routemap")
            .unwrap_or(&key.name)
            .to_string(),
        strategy: spec.map(|s| s.strategy.as_str().to_string()),
        invalid: match decision {
            Decision::Invalid { error } => Some(error.to_string()),
            Decision::Desired { .. } => None,
        },
        route,
        versions: versions(spec, states),
        requests,
        not_sampled,
        controller_status: status,
        resource_version: routemap
            .and_then(|o| o["metadata"]["resourceVersion"].as_str())
            .map(str::to_string),
        events,
        event_count,
    }
}

/// The live route of a routemap: the one its spec names, else one labelled with its name.
fn live_route<'a>(
    snapshot: &'a Snapshot,
    key: &RouteMapKey,
    spec: Option<&RouteMapSpec>,
) -> Option<&'a Value> {
    match spec {
        Some(spec) => snapshot.find("HTTPRoute", &key.namespace, &spec.route.name),
        None => snapshot.of_kind("HTTPRoute").find(|o| {
            o["metadata"]["namespace"] == key.namespace.as_str()
                && o["metadata"]["labels"][ROUTEMAP_LABEL] == key.name.as_str()
        }),
    }
}

fn route_view(spec: Option<&RouteMapSpec>, decision: &Decision, live: Option<&Value>) -> RouteView {
    let state = match (decision, live) {
        (Decision::Invalid { .. }, Some(_)) => RouteState::KeptAsIs,
        (Decision::Desired { route: None, .. }, _) => RouteState::NoRoute,
        (_, None) => RouteState::NotWritten,
        (
            Decision::Desired {
                route: Some(want), ..
            },
            Some(live),
        ) => {
            let carries =
                LiveRoute::from_json(live).is_some_and(|l| l.carries(&KeptRoute::new(want)));
            if carries {
                RouteState::AsDecided
            } else {
                RouteState::Differs
            }
        }
    };
    RouteView {
        name: spec.map(|s| s.route.name.clone()).or_else(|| {
            live.and_then(|l| l["metadata"]["name"].as_str())
                .map(str::to_string)
        }),
        state,
        generation: live.and_then(|l| l["metadata"]["generation"].as_i64()),
        gateway: live.map(gateway_status),
    }
}

/// The version states the controller plans with: readiness, then the guard's withdrawals.
fn states_of(
    rendering: &offline::Rendering,
    key: &RouteMapKey,
    spec: &RouteMapSpec,
) -> Vec<VersionState> {
    let withdrawn = match &rendering.decision_of(key) {
        Some(Decision::Desired { traffic, .. }) => traffic
            .versions
            .iter()
            .filter_map(|v| Some((v.name.clone(), v.withdrawn.clone()?)))
            .collect(),
        _ => Withdrawals::new(),
    };
    guarded_states(&key.namespace, spec, &rendering.index, &withdrawn)
}

fn versions(spec: Option<&RouteMapSpec>, states: Option<&[VersionState]>) -> Vec<VersionView> {
    let (Some(spec), Some(states)) = (spec, states) else {
        return Vec::new();
    };
    let weights = effective_weights(spec, states);
    spec.versions
        .iter()
        .zip(states)
        .zip(weights)
        .enumerate()
        .map(|(i, ((v, s), weight))| VersionView {
            name: v.name.clone(),
            role: if i == 0 {
                Role::Primary
            } else {
                Role::Candidate
            },
            matches: v
                .matches
                .iter()
                .flatten()
                .map(describe_match_spec)
                .collect(),
            weight,
            available: s.available,
            reason: s.reason.clone(),
            warnings: s.warnings.clone(),
            guard: spec.guard.as_deref().filter(|_| i > 0).map(|g| {
                match s
                    .reason
                    .as_deref()
                    .and_then(|r| r.strip_prefix(WITHDRAWN_REASON))
                {
                    Some(why) => format!("withdrawn{why}"),
                    None => format!(
                        "judged every {} over {}",
                        format_duration(g.interval.get()),
                        format_duration(g.window.get())
                    ),
                }
            }),
        })
        .collect()
}

/// The default request and one per candidate match, on the live and the decided route.
fn requests(
    spec: Option<&RouteMapSpec>,
    live: Option<&HttpRoute>,
    decided: Option<&HttpRoute>,
) -> (Vec<RequestView>, Vec<String>) {
    let mut asked: Vec<(routing_core::Request, Option<String>)> =
        vec![(routing_core::Request::get("/"), None)];
    let mut not_sampled = Vec::new();
    if let Some(spec) = spec {
        for v in spec.versions.iter().skip(1) {
            for m in v.matches.iter().flatten() {
                match sample_request(m) {
                    Ok(req) if !asked.iter().any(|(r, _)| *r == req) => {
                        asked.push((req, Some(v.name.clone())));
                    }
                    Ok(_) => {}
                    Err(why) => not_sampled.push(format!("{}: {why}", v.name)),
                }
            }
        }
    }
    if live.is_none() && decided.is_none() {
        return (Vec::new(), not_sampled);
    }
    let views = asked
        .iter()
        .map(|(req, version)| RequestView {
            request: describe_request(req),
            for_version: version.clone(),
            live: live.map(|r| Outcome::of(r, req)),
            decided: decided.map(|r| Outcome::of(r, req)),
        })
        .collect();
    (views, not_sampled)
}

/// When an Event last happened: the latest of its times (`eventTime` has microseconds,
/// `lastTimestamp` only seconds, so they are compared as times, not as text).
fn event_time(e: &Value) -> Option<(Timestamp, String)> {
    ["eventTime", "lastTimestamp", "firstTimestamp"]
        .iter()
        .filter_map(|k| e[*k].as_str())
        .chain(e["metadata"]["creationTimestamp"].as_str())
        .filter_map(|t| Some((t.parse::<Timestamp>().ok()?, t.to_string())))
        .max_by_key(|(t, _)| *t)
}

/// The last [`EVENTS_SHOWN`] Events about the routemap, oldest first, and how many there are.
fn events(snapshot: &Snapshot, key: &RouteMapKey) -> (Vec<EventView>, usize) {
    let mut all: Vec<(Option<Timestamp>, EventView)> = snapshot
        .of_kind("Event")
        .filter(|e| {
            let o = &e["involvedObject"];
            o["kind"] == "ConfigMap"
                && o["name"] == key.name.as_str()
                && o["namespace"]
                    .as_str()
                    .or(e["metadata"]["namespace"].as_str())
                    == Some(key.namespace.as_str())
        })
        .map(|e| {
            let time = event_time(e);
            (
                time.as_ref().map(|(t, _)| *t),
                EventView {
                    kind: e["type"].as_str().unwrap_or("Normal").to_string(),
                    reason: e["reason"].as_str().unwrap_or_default().to_string(),
                    message: e["message"].as_str().unwrap_or_default().to_string(),
                    time: time.map(|(_, text)| text),
                },
            )
        })
        .collect();
    // Stable: Events at the same time keep the order they were listed in.
    all.sort_by_key(|(t, _)| *t);
    let count = all.len();
    let shown = all
        .split_off(count.saturating_sub(EVENTS_SHOWN))
        .into_iter()
        .map(|(_, e)| e)
        .collect();
    (shown, count)
}

/// What `kubectl iter8 explain` says of one request.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExplainView {
    /// The release.
    pub release: ReleaseView,
    /// The request, described.
    pub request: String,
    /// On the live route.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live: Option<Outcome>,
    /// On the decided route.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided: Option<Outcome>,
    /// On the route the controller would write if every version were available: who the
    /// request is meant for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub if_all_available: Option<Outcome>,
}

/// Explains one request for the first release `selection` selects.
pub fn explain_view(
    config: &Config,
    snapshot: &Snapshot,
    selection: &Selection,
    req: &routing_core::Request,
) -> Option<ExplainView> {
    let rendering = render(config, snapshot);
    let r = rendering
        .routemaps
        .iter()
        .find(|r| selection.selects(&r.key))?;
    let key = &r.key;
    let spec = rendering.index.spec(key);
    let states = spec.map(|s| states_of(&rendering, key, s));
    let release = release_view(snapshot, key, &r.decision, spec, states.as_deref());
    let live: Option<HttpRoute> =
        live_route(snapshot, key, spec).and_then(|l| serde_json::from_value(l.clone()).ok());
    let decided = match &r.decision {
        Decision::Desired { route, .. } => route.as_ref(),
        Decision::Invalid { .. } => None,
    };
    let uid = snapshot
        .find("ConfigMap", &key.namespace, &key.name)
        .and_then(|o| o["metadata"]["uid"].as_str())
        .unwrap_or_default();
    let owner = RouteMapRef {
        namespace: key.namespace.clone(),
        name: key.name.clone(),
        uid: uid.to_string(),
    };
    // Who the request is meant for: the route planned as if every version were available.
    let if_all = spec.filter(|s| s.strategy != Strategy::None).and_then(|s| {
        let all = vec![VersionState::available(); s.versions.len()];
        plan(&owner, s, &all)
            .ok()
            .flatten()
            .map(|route| Outcome::of(&route, req))
    });
    Some(ExplainView {
        request: describe_request(req),
        live: live.as_ref().map(|r| Outcome::of(r, req)),
        decided: decided.map(|r| Outcome::of(r, req)),
        if_all_available: if_all,
        release,
    })
}
