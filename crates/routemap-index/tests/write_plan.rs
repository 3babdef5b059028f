//! The write planner, tested by calling it: decisions, live routes and answers in, the exact
//! next step out. No API server, no clock: every call is given the time.

use std::time::{Duration, Instant};

use routemap_index::config::Config;
use routemap_index::error::WriteError;
use routemap_index::index::{Change, Index};
use routemap_index::live::{KeptRoute, LiveRoute, RouteId};
use routemap_index::report::RouteMapStatus;
use routemap_index::routemap::RouteMapKey;
use routemap_index::write_plan::{Idle, LiveEvent, Next, Step, WritePlanner, retry_delay};
use serde_json::{Value, json};
use test_builders::{RouteMap, canary_spec, watched};

const NS: &str = "test";

fn key() -> RouteMapKey {
    RouteMapKey::new(NS, "app-routemap")
}

/// The index's decision for the canary routemap of `app` (routes named `route`), all ready.
fn decided(route: &str) -> Change {
    let spec = canary_spec("app").replacen("name: app\n", &format!("name: {route}\n"), 1);
    let mut index = Index::new(&Config::default());
    index.upsert_routemap(RouteMap::new(NS, "app-routemap", spec).object());
    index.upsert_resource("svc", NS, "app-1", watched());
    index.upsert_resource("deploy", NS, "app-1", test_builders::deployment(true));
    index.upsert_resource("deploy", NS, "app-0", test_builders::deployment(true));
    let mut changes = index.upsert_resource("svc", NS, "app-0", watched());
    assert_eq!(changes.len(), 1, "one decision");
    changes.pop().expect("a decision")
}

/// The route decided for the canary routemap of `app` (routes named `route`), as kept.
fn decided_route(route: &str) -> KeptRoute {
    match decided(route) {
        Change::Decided {
            decision: routemap_index::index::Decision::Desired { route: Some(r), .. },
            ..
        } => KeptRoute::new(&r),
        other => panic!("expected a route, got {other:?}"),
    }
}

/// A leader with a synced live view (holding `live`).
fn planner(live: &[LiveRoute]) -> WritePlanner {
    let mut p = WritePlanner::new();
    p.set_leader(true);
    p.live_event(LiveEvent::Relisting);
    for l in live {
        p.live_event(LiveEvent::Upsert(l.clone()));
    }
    p.live_event(LiveEvent::Synced);
    p
}

/// The route the API server would answer for `route` written as `kept`.
fn stored(kept: &KeptRoute, rv: &str, uid: &str) -> LiveRoute {
    let mut obj: Value = kept.to_json().expect("json");
    obj["metadata"]["resourceVersion"] = json!(rv);
    obj["metadata"]["generation"] = json!(1);
    obj["metadata"]["ownerReferences"][0]["uid"] = json!(uid);
    LiveRoute::from_json(&obj).expect("a route")
}

/// The first write of a route the live view lacks: a look (answered: no such route), then the
/// apply.
fn create_step(p: &mut WritePlanner, k: &RouteMapKey, now: Instant) -> KeptRoute {
    match p.next(k, now) {
        Next::Write(Step::Look { .. }) => {}
        other => panic!("expected a look before the first create, got {other:?}"),
    }
    assert!(p.looked(k, Ok(None), now, 0.0));
    match p.next(k, now) {
        Next::Write(Step::Apply { route, .. }) => route,
        other => panic!("expected an apply, got {other:?}"),
    }
}

fn report_reason(next: &Next) -> &'static str {
    match next {
        Next::Write(Step::Report { report, .. }) => report.event.as_ref().expect("an Event").reason,
        other => panic!("expected a report, got {other:?}"),
    }
}

fn report_done(p: &mut WritePlanner, next: &Next, now: Instant) {
    let Next::Write(Step::Report { report, .. }) = next else {
        panic!("expected a report, got {next:?}");
    };
    assert!(!p.reported(&key(), &report.status, Ok(()), now, 0.0));
}

fn unavailable() -> WriteError {
    WriteError::Unavailable {
        code: 503,
        message: "etcd is slow".into(),
    }
}

fn throttled(seconds: u64) -> WriteError {
    WriteError::Throttled {
        code: 429,
        retry_after: Duration::from_secs(seconds),
        message: "too many requests".into(),
    }
}

#[test]
fn a_new_decision_is_one_apply_then_one_report_then_nothing() {
    let now = Instant::now();
    let mut p = planner(&[]);
    let k = p.change(decided("app")).expect("to settle");
    let route = create_step(&mut p, &k, now);
    assert!(p.applied(&k, Ok(stored(&route, "7", "uid-1")), now, 0.0));
    let next = p.next(&k, now);
    assert_eq!(report_reason(&next), "RouteApplied");
    report_done(&mut p, &next, now);
    // The echo of our own write changes nothing.
    assert_eq!(
        p.live_event(LiveEvent::Upsert(stored(&route, "7", "uid-1"))),
        [key()]
    );
    assert_eq!(p.next(&k, now), Next::Idle(Idle::Settled));
}

#[test]
fn a_follower_plans_no_write_and_catches_up_when_elected() {
    let now = Instant::now();
    let mut p = planner(&[]);
    p.set_leader(false);
    let k = p.change(decided("app")).expect("to settle");
    assert_eq!(p.next(&k, now), Next::Idle(Idle::Follower));
    assert_eq!(p.take_tally().skipped_follower, 1);
    assert_eq!(p.set_leader(true), [key()]);
    create_step(&mut p, &k, now);
}

#[test]
fn a_live_route_as_decided_is_not_written_again() {
    let now = Instant::now();
    let change = decided("app");
    let Change::Decided {
        decision: routemap_index::index::Decision::Desired { route: Some(r), .. },
        ..
    } = &change
    else {
        panic!("a route")
    };
    let live = stored(&KeptRoute::new(r), "3", "uid-1");
    let mut p = planner(&[live]);
    let k = p.change(change).expect("to settle");
    // Reported (this run has not told users yet), but not written.
    let next = p.next(&k, now);
    assert_eq!(report_reason(&next), "VersionsChanged");
    assert_eq!(p.take_tally().unchanged, 1);
}

#[test]
fn a_throttled_apply_waits_the_servers_delay_and_is_reported_to_nobody() {
    let now = Instant::now();
    let mut p = planner(&[]);
    let k = p.change(decided("app")).expect("to settle");
    create_step(&mut p, &k, now);
    assert!(
        !p.applied(&k, Err(throttled(3)), now, 0.5),
        "no report follows"
    );
    let at = now + Duration::from_millis(3750);
    assert_eq!(p.next(&k, now), Next::Idle(Idle::Waiting(at)));
    assert_eq!(p.next_retry(), Some(at));
    assert!(p.due(at - Duration::from_millis(1)).is_empty());
    assert_eq!(p.due(at), [key()]);
    // Retried as it was, and only its success is reported.
    let route = create_step(&mut p, &k, at);
    assert!(p.applied(&k, Ok(stored(&route, "9", "uid-1")), at, 0.0));
    assert_eq!(report_reason(&p.next(&k, at)), "RouteApplied");
}

#[test]
fn a_failed_apply_is_reported_at_once_and_retried_after_its_backoff() {
    let now = Instant::now();
    let mut p = planner(&[]);
    let k = p.change(decided("app")).expect("to settle");
    create_step(&mut p, &k, now);
    assert!(p.applied(&k, Err(unavailable()), now, 0.0));
    let next = p.next(&k, now);
    assert_eq!(report_reason(&next), "ApplyFailed");
    report_done(&mut p, &next, now);
    let at = now + Duration::from_millis(200);
    assert_eq!(p.next(&k, now), Next::Idle(Idle::Waiting(at)));
    create_step(&mut p, &k, at);
    // Failing again doubles the delay; the same failure is not reported twice.
    assert!(p.applied(&k, Err(unavailable()), at, 0.0));
    assert_eq!(p.next(&k, at), Next::Idle(Idle::Settled));
    assert_eq!(p.next_retry(), Some(at + Duration::from_millis(400)));
}

#[test]
fn a_renamed_route_is_deleted_once_the_new_one_is_in_place() {
    let now = Instant::now();
    let old = stored(&decided_route("app"), "5", "uid-1");
    let mut p = planner(&[old]);
    let k = p.change(decided("app-v2")).expect("to settle");
    // First the new route: traffic is never left without one.
    let route = create_step(&mut p, &k, now);
    assert_eq!(route.id.name, "app-v2");
    assert!(p.applied(&k, Ok(stored(&route, "6", "uid-1")), now, 0.0));
    let Next::Write(Step::Delete {
        id,
        resource_version,
        event,
        ..
    }) = p.next(&k, now)
    else {
        panic!("expected the old route's delete");
    };
    assert_eq!(
        id,
        RouteId {
            namespace: NS.into(),
            name: "app".into()
        }
    );
    assert_eq!(resource_version, "5", "only the route as last seen");
    assert_eq!(event.reason, "RouteRemoved");
    assert!(
        event.note.contains("HTTPRoute app removed"),
        "{}",
        event.note
    );
    assert!(p.deleted(&k, &id, Ok(()), now, 0.0));
    assert_eq!(report_reason(&p.next(&k, now)), "RouteApplied");
}

#[test]
fn a_route_owned_by_another_routemap_is_never_deleted() {
    let now = Instant::now();
    // Same label, but another owner (a routemap of the same name, deleted and created again).
    let theirs = stored(&decided_route("app"), "5", "uid-of-someone-else");
    let mut p = planner(&[theirs]);
    let k = p.change(decided("app-v2")).expect("to settle");
    let route = create_step(&mut p, &k, now);
    assert!(p.applied(&k, Ok(stored(&route, "6", "uid-1")), now, 0.0));
    assert_eq!(report_reason(&p.next(&k, now)), "RouteApplied");
}

#[test]
fn an_invalid_routemap_is_reported_and_its_route_left_alone() {
    let now = Instant::now();
    let mut p = planner(&[]);
    let mut index = Index::new(&Config::default());
    let bad =
        canary_spec("app").replace("matches: [{headers: [{name: traffic, value: test}]}]", "");
    let changes = index.upsert_routemap(RouteMap::new(NS, "app-routemap", bad).object());
    let k = p
        .change(changes.into_iter().next().expect("a decision"))
        .expect("to settle");
    assert_eq!(report_reason(&p.next(&k, now)), "InvalidRouteMap");
    assert_eq!(p.take_tally().invalid, ["spec"]);
}

#[test]
fn retry_delays_double_to_a_minute_and_follow_the_servers_ask() {
    let e = unavailable();
    assert_eq!(retry_delay(1, &e, 0.0), Duration::from_millis(200));
    assert_eq!(retry_delay(2, &e, 0.0), Duration::from_millis(400));
    assert_eq!(retry_delay(30, &e, 0.0), Duration::from_secs(60));
    assert_eq!(retry_delay(1, &e, 1.0), Duration::from_millis(300));
    assert_eq!(retry_delay(9, &throttled(2), 0.0), Duration::from_secs(2));
}

/// The route as a gateway has answered for it: `Accepted` and `ResolvedRefs` as given.
fn answered(live: &LiveRoute, kept: &KeptRoute, accepted: &str, resolved: &str) -> LiveRoute {
    let mut obj: Value = kept.to_json().expect("json");
    obj["metadata"]["resourceVersion"] = json!(format!("{}1", live.resource_version));
    obj["metadata"]["generation"] = json!(live.generation);
    obj["metadata"]["ownerReferences"][0]["uid"] = json!("uid-1");
    obj["status"] = json!({"parents": [{
        "parentRef": {"group": "", "kind": "Service", "name": "app", "port": 80},
        "controllerName": "example.com/translator",
        "conditions": [
            {"type": "Accepted", "status": accepted, "reason": "Accepted", "observedGeneration": live.generation},
            {"type": "ResolvedRefs", "status": resolved, "reason": if resolved == "True" { "ResolvedRefs" } else { "BackendNotFound" },
             "message": "service test/app-1 not found", "observedGeneration": live.generation},
        ],
    }]});
    LiveRoute::from_json(&obj).expect("a route")
}

#[test]
fn the_gateways_answer_is_reported_when_it_changes_and_is_never_drift() {
    let now = Instant::now();
    let mut p = planner(&[]);
    let k = p.change(decided("app")).expect("to settle");
    let route = create_step(&mut p, &k, now);
    let live = stored(&route, "7", "uid-1");
    assert!(p.applied(&k, Ok(live.clone()), now, 0.0));
    let next = p.next(&k, now);
    assert_eq!(report_reason(&next), "RouteApplied");
    report_done(&mut p, &next, now);
    // No answer yet: the status already says so, nothing more to write.
    assert_eq!(p.next(&k, now), Next::Idle(Idle::Settled));

    // The gateway accepts: one report, no route write (status is not drift).
    assert_eq!(
        p.live_event(LiveEvent::Upsert(answered(&live, &route, "True", "True"))),
        [key()]
    );
    let next = p.next(&k, now);
    assert_eq!(report_reason(&next), "RouteAccepted");
    let Next::Write(Step::Report { report, .. }) = &next else {
        unreachable!()
    };
    let gateway = report
        .status
        .gateway
        .as_ref()
        .expect("the gateway's answer");
    assert_eq!(gateway.parents[0].controller, "example.com/translator");
    report_done(&mut p, &next, now);
    assert_eq!(p.take_tally().gateway, ["accepted"]);
    assert_eq!(p.next(&k, now), Next::Idle(Idle::Settled));

    // A backend goes missing: a Warning with the gateway's words.
    p.live_event(LiveEvent::Upsert(answered(&live, &route, "True", "False")));
    let next = p.next(&k, now);
    assert_eq!(report_reason(&next), "BackendNotResolved");
    let Next::Write(Step::Report { report, .. }) = &next else {
        unreachable!()
    };
    let note = &report.event.as_ref().expect("an Event").note;
    assert!(
        note.contains("BackendNotFound: service test/app-1 not found"),
        "{note}"
    );
}

/// The same canary routemap decided with `app-0`'s Deployment available or not (the route is
/// the same: the primary keeps the catch-all rule; only what users are told differs).
fn decided_with_primary(available: bool) -> Change {
    let mut index = Index::new(&Config::default());
    index.upsert_routemap(RouteMap::new(NS, "app-routemap", canary_spec("app")).object());
    index.upsert_resource("svc", NS, "app-0", watched());
    index.upsert_resource("svc", NS, "app-1", watched());
    index.upsert_resource("deploy", NS, "app-1", test_builders::deployment(false));
    let mut changes =
        index.upsert_resource("deploy", NS, "app-0", test_builders::deployment(available));
    changes.pop().expect("a decision")
}

fn available_in(next: &Next) -> Vec<String> {
    match next {
        Next::Write(Step::Report { report, .. }) => report.status.available_versions.clone(),
        other => panic!("expected a report, got {other:?}"),
    }
}

#[test]
fn a_decision_that_comes_while_a_write_is_in_flight_gets_its_own_report() {
    let now = Instant::now();
    let mut p = planner(&[]);
    let k = p.change(decided_with_primary(true)).expect("to settle");
    let route = create_step(&mut p, &k, now);
    // While that apply is in flight, the primary's Deployment rolls out (not available).
    assert_eq!(p.change(decided_with_primary(false)), Some(key()));
    assert!(p.applied(&k, Ok(stored(&route, "7", "uid-1")), now, 0.0));
    // The write is reported as the decision it was made for...
    let first = p.next(&k, now);
    assert_eq!(report_reason(&first), "RouteApplied");
    assert_eq!(available_in(&first), ["app-0"]);
    let Next::Write(Step::Report { report, .. }) = &first else {
        unreachable!()
    };
    assert!(
        p.reported(&k, &report.status, Ok(()), now, 0.0),
        "more to do"
    );
    // ...then the newer decision, which needs no write, is reported on its own.
    let second = p.next(&k, now);
    assert_eq!(report_reason(&second), "VersionsChanged");
    assert!(available_in(&second).is_empty());
}

#[test]
fn a_decision_that_comes_while_a_report_is_in_flight_is_not_lost() {
    let now = Instant::now();
    let mut p = planner(&[]);
    let k = p.change(decided_with_primary(true)).expect("to settle");
    let route = create_step(&mut p, &k, now);
    assert!(p.applied(&k, Ok(stored(&route, "7", "uid-1")), now, 0.0));
    let first = p.next(&k, now);
    let Next::Write(Step::Report { report, .. }) = &first else {
        panic!("expected a report, got {first:?}");
    };
    // While the report is in flight, the primary becomes unavailable.
    assert_eq!(p.change(decided_with_primary(false)), Some(key()));
    assert!(
        p.reported(&k, &report.status, Ok(()), now, 0.0),
        "more to do"
    );
    let second = p.next(&k, now);
    assert_eq!(report_reason(&second), "VersionsChanged");
    assert!(available_in(&second).is_empty());
}

/// The canary routemap of `app` switched to strategy `none` (which takes no matches).
fn none_spec() -> String {
    canary_spec("app")
        .replacen("strategy: canary", "strategy: none", 1)
        .replace(
            "  matches: [{headers: [{name: traffic, value: test}]}]\n",
            "",
        )
}

/// The index's decision for [`none_spec`].
fn none_decision() -> Change {
    let mut index = Index::new(&Config::default());
    let changes = index.upsert_routemap(RouteMap::new(NS, "app-routemap", none_spec()).object());
    changes.into_iter().next().expect("a decision")
}

#[test]
fn strategy_none_removes_the_route_this_routemap_wrote() {
    let now = Instant::now();
    let ours = stored(&decided_route("app"), "5", "uid-1");
    let mut p = planner(&[ours]);
    let k = p.change(none_decision()).expect("to settle");
    let Next::Write(Step::Delete {
        id,
        resource_version,
        event,
        ..
    }) = p.next(&k, now)
    else {
        panic!("expected the route's delete");
    };
    assert_eq!((id.name.as_str(), resource_version.as_str()), ("app", "5"));
    assert_eq!(event.reason, "RouteRemoved");
    assert!(event.note.contains("strategy none"), "{}", event.note);
    assert!(p.deleted(&k, &id, Ok(()), now, 0.0));
    assert_eq!(report_reason(&p.next(&k, now)), "VersionsChanged");
}

#[test]
fn strategy_none_never_removes_a_route_of_someone_else() {
    let now = Instant::now();
    let theirs = stored(&decided_route("app"), "5", "uid-of-someone-else");
    let mut p = planner(&[theirs]);
    let k = p.change(none_decision()).expect("to settle");
    assert_eq!(report_reason(&p.next(&k, now)), "VersionsChanged");
}

#[test]
fn an_invalid_routemap_with_a_last_good_spec_goes_on_gating_its_route() {
    let now = Instant::now();
    let mut index = Index::new(&Config::default());
    index.keep_last_good(true);
    index.upsert_routemap(RouteMap::new(NS, "app-routemap", canary_spec("app")).object());
    for v in ["app-0", "app-1"] {
        index.upsert_resource("svc", NS, v, watched());
        index.upsert_resource("deploy", NS, v, test_builders::deployment(true));
    }
    let mut p = planner(&[]);
    let good = index.current_decision(&key()).expect("decided");
    let owner = routing_core::RouteMapRef {
        namespace: NS.into(),
        name: "app-routemap".into(),
        uid: "uid-1".into(),
    };
    let decided = |decision| Change::Decided {
        key: key(),
        owner: owner.clone(),
        decision,
    };
    let k = p.change(decided(good)).expect("to settle");
    let route = create_step(&mut p, &k, now);
    assert!(p.applied(&k, Ok(stored(&route, "7", "uid-1")), now, 0.0));
    let next = p.next(&k, now);
    report_done(&mut p, &next, now);
    p.live_event(LiveEvent::Upsert(stored(&route, "7", "uid-1")));
    assert_eq!(p.next(&k, now), Next::Idle(Idle::Settled));

    // The candidate's match loses its header: invalid, the route as it is, told once.
    let broken = canary_spec("app").replace(
        "matches: [{headers: [{name: traffic, value: test}]}]",
        "matches: [{path: {type: RegularExpression, value: /.*}}]",
    );
    let mut changes = index.upsert_routemap(RouteMap::new(NS, "app-routemap", broken).object());
    let k = p
        .change(changes.pop().expect("a decision"))
        .expect("to settle");
    let next = p.next(&k, now);
    let Next::Write(Step::Report { report, .. }) = &next else {
        panic!("expected a report, got {next:?}");
    };
    let event = report.event.as_ref().expect("an Event");
    assert_eq!((event.warning, event.reason), (true, "InvalidRouteMap"));
    assert!(event.note.contains("last good spec"), "{}", event.note);
    assert!(report.status.last_error.is_some());
    report_done(&mut p, &next, now);
    assert_eq!(p.take_tally().invalid, ["spec"]);

    // The candidate goes unavailable while the routemap is invalid: its rule leaves the route.
    let mut changes =
        index.upsert_resource("deploy", NS, "app-1", test_builders::deployment(false));
    let k = p
        .change(changes.pop().expect("a decision"))
        .expect("to settle");
    let Next::Write(Step::Apply { route, .. }) = p.next(&k, now) else {
        panic!("expected the gated route's apply");
    };
    let json = route.to_json().expect("json");
    assert_eq!(json["spec"]["rules"].as_array().map(Vec::len), Some(1));
    assert!(p.applied(&k, Ok(stored(&route, "8", "uid-1")), now, 0.0));
    let next = p.next(&k, now);
    let Next::Write(Step::Report { report, .. }) = &next else {
        panic!("expected a report, got {next:?}");
    };
    let event = report.event.as_ref().expect("an Event");
    assert_eq!(event.reason, "InvalidRouteMap");
    assert!(event.note.contains("unavailable app-1"), "{}", event.note);
    assert_eq!(report.status.available_versions, ["app-0"]);
}

#[test]
fn a_new_decision_keeps_the_servers_retry_after_and_writes_the_newest_route_then() {
    let now = Instant::now();
    let mut p = planner(&[]);
    let k = p.change(decided_with_primary(true)).expect("to settle");
    create_step(&mut p, &k, now);
    assert!(!p.applied(&k, Err(throttled(3)), now, 0.0));
    let at = now + Duration::from_secs(3);
    // The primary goes unavailable meanwhile: a new decision, which still waits.
    let k = p.change(decided_with_primary(false)).expect("to settle");
    let soon = now + Duration::from_millis(10);
    assert_eq!(p.next(&k, soon), Next::Idle(Idle::Waiting(at)));
    assert_eq!(p.next_retry(), Some(at));
    // At the server's time, one write: the newest decision's route.
    let route = create_step(&mut p, &k, at);
    assert!(p.applied(&k, Ok(stored(&route, "9", "uid-1")), at, 0.0));
    assert_eq!(available_in(&p.next(&k, at)), Vec::<String>::new());
}

#[test]
fn a_new_decision_keeps_a_transient_failures_backoff() {
    let now = Instant::now();
    let mut p = planner(&[]);
    let k = p.change(decided_with_primary(true)).expect("to settle");
    create_step(&mut p, &k, now);
    assert!(p.applied(&k, Err(unavailable()), now, 0.0));
    let next = p.next(&k, now);
    assert_eq!(report_reason(&next), "ApplyFailed");
    report_done(&mut p, &next, now);
    let k = p.change(decided_with_primary(false)).expect("to settle");
    let at = now + Duration::from_millis(200);
    assert_eq!(p.next(&k, now), Next::Idle(Idle::Waiting(at)));
    create_step(&mut p, &k, at);
    // Failing again doubles the delay: the count went on across the decision.
    assert!(p.applied(&k, Err(unavailable()), at, 0.0));
    // A new decision's failure is its own report.
    let next = p.next(&k, at);
    assert_eq!(report_reason(&next), "ApplyFailed");
    report_done(&mut p, &next, at);
    let again = at + Duration::from_millis(400);
    assert_eq!(p.next(&k, at), Next::Idle(Idle::Waiting(again)));
}

/// A new route applied, its report's Event published, and its status write failing with
/// `error`: returns the status that failed.
fn event_out_then_status_fails(
    p: &mut WritePlanner,
    error: WriteError,
    now: Instant,
) -> RouteMapStatus {
    let k = p.change(decided("app")).expect("to settle");
    let route = create_step(p, &k, now);
    let mut answer = stored(&route, "7", "uid-1");
    answer.uid = Some("route-uid".into());
    assert!(p.applied(&k, Ok(answer), now, 0.0));
    let next = p.next(&k, now);
    assert_eq!(report_reason(&next), "RouteApplied");
    let Next::Write(Step::Report { report, .. }) = next else {
        unreachable!()
    };
    p.event_out(&k, &report.status);
    assert!(!p.reported(&k, &report.status, Err(error), now, 0.0));
    report.status
}

#[test]
fn a_failed_status_write_after_its_event_is_written_again_without_the_event() {
    let now = Instant::now();
    let mut p = planner(&[]);
    let status = event_out_then_status_fails(&mut p, unavailable(), now);
    // The next settle (a resync) writes the status alone: no second Event.
    assert!(p.resync().contains(&key()));
    match p.next(&key(), now) {
        Next::Write(Step::Report {
            report: again,
            route,
            ..
        }) => {
            assert_eq!(again.event, None, "the Event is not published twice");
            assert_eq!(again.status, status);
            assert!(route.is_some(), "on our route");
        }
        other => panic!("expected the status alone, got {other:?}"),
    }
    assert!(!p.reported(&key(), &status, Ok(()), now, 0.0));
    assert_eq!(p.next(&key(), now), Next::Idle(Idle::Settled));
}

#[test]
fn a_throttled_status_write_after_its_event_waits_the_servers_delay_then_goes_alone() {
    let now = Instant::now();
    let mut p = planner(&[]);
    let status = event_out_then_status_fails(&mut p, throttled(2), now);
    let at = now + Duration::from_secs(2);
    assert_eq!(p.next(&key(), now), Next::Idle(Idle::Waiting(at)));
    assert_eq!(p.due(at), [key()]);
    match p.next(&key(), at) {
        Next::Write(Step::Report { report: again, .. }) => {
            assert_eq!(again.event, None);
            assert_eq!(again.status, status);
        }
        other => panic!("expected the status alone, got {other:?}"),
    }
}
