//! The write planner acting only within its authority: a route name held by someone else is
//! never written, two routemaps claiming one name settle on one writer, a contested route is
//! repaired with backoff, and the status lives on our own route. Called directly, time given.

use std::time::{Duration, Instant};

use routemap_index::config::Config;
use routemap_index::index::{Change, Index};
use routemap_index::live::{KeptRoute, LiveRoute};
use routemap_index::report::RouteMapStatus;
use routemap_index::routemap::RouteMapKey;
use routemap_index::write_plan::{Idle, LiveEvent, Next, Step, WritePlanner};
use serde_json::{Value, json};
use test_builders::{RouteMap, canary_spec, watched};

const NS: &str = "test";

/// The decision of routemap `name` (uid `uid`) writing route `route`, all versions ready.
fn decided(name: &str, uid: &str, route: &str) -> Change {
    let spec = canary_spec("app").replacen("name: app\n", &format!("name: {route}\n"), 1);
    let mut index = Index::new(&Config::default());
    index.upsert_routemap(RouteMap::new(NS, name, spec).uid(uid).object());
    index.upsert_resource("svc", NS, "app-1", watched());
    index.upsert_resource("deploy", NS, "app-1", test_builders::deployment(true));
    index.upsert_resource("deploy", NS, "app-0", test_builders::deployment(true));
    let mut changes = index.upsert_resource("svc", NS, "app-0", watched());
    changes.pop().expect("a decision")
}

fn planner() -> WritePlanner {
    let mut p = WritePlanner::new();
    p.set_leader(true);
    p.live_event(LiveEvent::Relisting);
    p.live_event(LiveEvent::Synced);
    p
}

/// A route as the API server stores it: `kept` with this resourceVersion, uid and managers.
fn stored(kept: &KeptRoute, rv: &str, managers: &[&str]) -> LiveRoute {
    let mut obj: Value = kept.to_json().expect("json");
    obj["metadata"]["resourceVersion"] = json!(rv);
    obj["metadata"]["uid"] = json!("route-uid");
    obj["metadata"]["generation"] = json!(1);
    obj["metadata"]["managedFields"] = managers
        .iter()
        .map(|m| json!({"manager": m, "operation": "Apply"}))
        .collect();
    LiveRoute::from_json(&obj).expect("a route")
}

/// A route someone else made under the name `victim`: other parent, other rules, no owner.
fn foreign() -> LiveRoute {
    LiveRoute::from_json(&json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "victim", "namespace": NS, "resourceVersion": "3", "uid": "v-uid",
                     "managedFields": [{"manager": "platform-team", "operation": "Apply"}]},
        "spec": {"parentRefs": [{"name": "prod-gateway"}],
                 "rules": [{"backendRefs": [{"name": "payments", "port": 80}]}]},
    }))
    .expect("a route")
}

fn reason(next: &Next) -> &'static str {
    match next {
        Next::Write(Step::Report { report, .. }) => report.event.as_ref().expect("an Event").reason,
        Next::Write(Step::Event { event, .. }) => event.reason,
        other => panic!("expected an Event, got {other:?}"),
    }
}

fn report_done(p: &mut WritePlanner, k: &RouteMapKey, next: &Next, now: Instant) {
    let Next::Write(Step::Report { report, .. }) = next else {
        panic!("expected a report, got {next:?}");
    };
    p.reported(k, &report.status, Ok(()), now, 0.0);
}

/// Looks (answered: absent), applies (answered as stored) and reports a route.
fn create(p: &mut WritePlanner, k: &RouteMapKey, now: Instant) -> KeptRoute {
    assert!(matches!(p.next(k, now), Next::Write(Step::Look { .. })));
    assert!(p.looked(k, Ok(None), now, 0.0));
    let Next::Write(Step::Apply { route, .. }) = p.next(k, now) else {
        panic!("expected an apply");
    };
    assert!(p.applied(k, Ok(stored(&route, "7", &["iter8-controller"])), now, 0.0));
    let next = p.next(k, now);
    assert_eq!(reason(&next), "RouteApplied");
    report_done(p, k, &next, now);
    // The watch's echo of our write.
    p.live_event(LiveEvent::Upsert(stored(
        &route,
        "7",
        &["iter8-controller"],
    )));
    assert_eq!(p.next(k, now), Next::Idle(Idle::Settled));
    route
}

/// The answer to a repair, and the watch's echo of it.
fn repaired(p: &mut WritePlanner, k: &RouteMapKey, route: &KeptRoute, rv: &str, now: Instant) {
    let live = stored(route, rv, &["iter8-controller"]);
    p.applied(k, Ok(live.clone()), now, 0.0);
    p.live_event(LiveEvent::Upsert(live));
    assert_eq!(p.next(k, now), Next::Idle(Idle::Settled));
}

#[test]
fn a_route_someone_else_made_is_never_written_and_is_looked_at_until_it_is_gone() {
    let now = Instant::now();
    let mut p = planner();
    let k = p
        .change(decided("attacker-routemap", "uid-a", "victim"))
        .expect("to settle");
    let Next::Write(Step::Look { id }) = p.next(&k, now) else {
        panic!("a route name the owned-route watch does not show is looked at first");
    };
    assert_eq!(id.name, "victim");
    assert!(p.looked(&k, Ok(Some(foreign())), now, 0.0));
    let next = p.next(&k, now);
    assert_eq!(reason(&next), "RouteNotOwned");
    let Next::Write(Step::Report { report, route, .. }) = &next else {
        unreachable!()
    };
    let note = &report.event.as_ref().expect("event").note;
    assert!(note.contains("platform-team"), "names who holds it: {note}");
    assert_eq!(route, &None, "no status on a route that is not ours");
    report_done(&mut p, &k, &next, now);
    assert_eq!(p.next(&k, now), Next::Idle(Idle::Settled));
    // A resync writes nothing and repeats no Event.
    p.resync();
    assert_eq!(p.next(&k, now), Next::Idle(Idle::Settled));
    // Looked at again after 5 s: still there, nothing said again.
    let at = p.next_retry().expect("a look is scheduled");
    assert_eq!(at, now + Duration::from_secs(5));
    assert_eq!(p.due(at), std::slice::from_ref(&k));
    assert!(matches!(p.next(&k, at), Next::Write(Step::Look { .. })));
    assert!(p.looked(&k, Ok(Some(foreign())), at, 0.0));
    assert_eq!(p.next(&k, at), Next::Idle(Idle::Settled));
    assert_eq!(
        p.next_retry(),
        Some(at + Duration::from_secs(10)),
        "looks back off"
    );
    // Gone: the name is ours to create.
    let later = at + Duration::from_secs(10);
    assert_eq!(p.due(later), std::slice::from_ref(&k));
    assert!(matches!(p.next(&k, later), Next::Write(Step::Look { .. })));
    assert!(p.looked(&k, Ok(None), later, 0.0));
    assert!(matches!(p.next(&k, later), Next::Write(Step::Apply { .. })));
}

#[test]
fn renaming_away_from_a_foreign_route_looks_at_the_new_name_at_once() {
    let now = Instant::now();
    let mut p = planner();
    let k = p
        .change(decided("attacker-routemap", "uid-a", "victim"))
        .expect("to settle");
    assert!(matches!(p.next(&k, now), Next::Write(Step::Look { .. })));
    p.looked(&k, Ok(Some(foreign())), now, 0.0);
    let next = p.next(&k, now);
    assert_eq!(reason(&next), "RouteNotOwned");
    report_done(&mut p, &k, &next, now);
    p.change(decided("attacker-routemap", "uid-a", "attacker-route"));
    let Next::Write(Step::Look { id }) = p.next(&k, now) else {
        panic!("the new name is looked at, not judged by the old name's look");
    };
    assert_eq!(id.name, "attacker-route");
    p.looked(&k, Ok(None), now, 0.0);
    let Next::Write(Step::Apply { id, .. }) = p.next(&k, now) else {
        panic!("an apply of the new name");
    };
    assert_eq!(id.name, "attacker-route");
}

#[test]
fn two_routemaps_claiming_one_route_settle_on_the_older_without_a_write_loop() {
    let now = Instant::now();
    let mut p = planner();
    let older = RouteMapKey::new(NS, "b-routemap");
    let newer = RouteMapKey::new(NS, "a-routemap");
    p.seen(older.clone(), None, Some("2026-12-06T05:00:00Z".into()));
    p.seen(newer.clone(), None, Some("2026-12-06T06:00:00Z".into()));
    let a = p
        .change(decided("a-routemap", "uid-a", "shared"))
        .expect("a");
    let b = p
        .change(decided("b-routemap", "uid-b", "shared"))
        .expect("b");
    assert_eq!((a.clone(), b.clone()), (newer.clone(), older.clone()));
    // The newer routemap (first by name) loses to the older: one Warning, no write.
    let next = p.next(&newer, now);
    assert_eq!(reason(&next), "RouteClaimed");
    let Next::Write(Step::Report { report, .. }) = &next else {
        unreachable!()
    };
    assert!(
        report
            .event
            .as_ref()
            .expect("event")
            .note
            .contains("test/b-routemap")
    );
    report_done(&mut p, &newer, &next, now);
    let route = create(&mut p, &older, now);
    // The winner's route in the live view, resyncs and echoes: the loser never writes, the
    // winner never writes again.
    for i in 0..7 {
        let live = stored(&route, &format!("{}", 8 + i), &["iter8-controller"]);
        let woken = p.live_event(LiveEvent::Upsert(live));
        assert!(
            woken.contains(&newer) && woken.contains(&older),
            "{woken:?}"
        );
        p.resync();
        assert_eq!(p.next(&newer, now), Next::Idle(Idle::Settled));
        assert_eq!(p.next(&older, now), Next::Idle(Idle::Settled));
    }
    // The winner goes: its route is garbage-collected, and the loser takes the name up.
    p.take_woken();
    assert_eq!(p.change(Change::Removed { key: older.clone() }), None);
    assert_eq!(p.take_woken(), std::slice::from_ref(&newer));
    p.live_event(LiveEvent::Delete(route.id.clone()));
    assert!(matches!(
        p.next(&newer, now),
        Next::Write(Step::Look { .. })
    ));
}

#[test]
fn another_writer_of_our_fields_is_repaired_with_backoff_and_named_once() {
    let t0 = Instant::now();
    let mut p = planner();
    let k = p
        .change(decided("app-routemap", "uid-1", "app"))
        .expect("k");
    let route = create(&mut p, &k, t0);
    let edited = |rv: &str| {
        let mut obj = route.to_json().expect("json");
        obj["metadata"]["resourceVersion"] = json!(rv);
        obj["metadata"]["uid"] = json!("route-uid");
        obj["metadata"]["managedFields"] =
            json!([{"manager": "iter8-controller"}, {"manager": "weights-bot"}]);
        obj["spec"]["rules"][1]["backendRefs"][0]["weight"] = json!(7);
        LiveRoute::from_json(&obj).expect("a route")
    };
    // First change: repaired at once.
    assert_eq!(
        p.live_event(LiveEvent::Upsert(edited("10"))),
        std::slice::from_ref(&k)
    );
    let Next::Write(Step::Apply { .. }) = p.next(&k, t0) else {
        panic!("the first repair is at once");
    };
    repaired(&mut p, &k, &route, "11", t0);
    // Again 100 ms later: waits 1 s, then names the other manager once, then repairs.
    let t1 = t0 + Duration::from_millis(100);
    p.live_event(LiveEvent::Upsert(edited("12")));
    assert_eq!(
        p.next(&k, t1),
        Next::Idle(Idle::Waiting(t0 + Duration::from_secs(1)))
    );
    let t2 = t0 + Duration::from_secs(1);
    assert_eq!(p.due(t2), std::slice::from_ref(&k));
    let next = p.next(&k, t2);
    assert_eq!(reason(&next), "RouteContested");
    let Next::Write(Step::Event { event, .. }) = &next else {
        unreachable!()
    };
    assert!(event.note.contains("weights-bot"), "{}", event.note);
    assert!(p.evented(&k));
    assert!(matches!(p.next(&k, t2), Next::Write(Step::Apply { .. })));
    repaired(&mut p, &k, &route, "13", t2);
    // A third time: 2 s after the last repair, and no second Warning.
    p.live_event(LiveEvent::Upsert(edited("14")));
    let t3 = t2 + Duration::from_secs(2);
    assert_eq!(p.next(&k, t2), Next::Idle(Idle::Waiting(t3)));
    p.due(t3);
    assert!(matches!(p.next(&k, t3), Next::Write(Step::Apply { .. })));
}

#[test]
fn the_status_goes_on_our_route_and_is_read_back_from_it_after_a_restart() {
    let now = Instant::now();
    let mut p = planner();
    let k = p
        .change(decided("app-routemap", "uid-1", "app"))
        .expect("k");
    assert!(matches!(p.next(&k, now), Next::Write(Step::Look { .. })));
    p.looked(&k, Ok(None), now, 0.0);
    let Next::Write(Step::Apply { route, .. }) = p.next(&k, now) else {
        panic!("an apply");
    };
    p.applied(&k, Ok(stored(&route, "7", &["iter8-controller"])), now, 0.0);
    let next = p.next(&k, now);
    let Next::Write(Step::Report {
        report,
        route: target,
        ..
    }) = &next
    else {
        panic!("a report");
    };
    let (id, uid) = target.clone().expect("the status goes on the route");
    assert_eq!((id.name.as_str(), uid.as_str()), ("app", "route-uid"));
    // The route as the watch shows it after the status write: never drift, nothing to do.
    let mut live = stored(
        &route,
        "8",
        &["iter8-controller", "iter8-controller-status"],
    );
    live.status = Some(serde_json::to_string(&report.status).expect("json"));
    let status = report.status.clone();
    p.reported(&k, &status, Ok(()), now, 0.0);
    p.live_event(LiveEvent::Upsert(live.clone()));
    assert_eq!(p.next(&k, now), Next::Idle(Idle::Settled));
    // A restart: the route (with its annotation) is listed before the decision comes.
    let mut q = WritePlanner::new();
    q.set_leader(true);
    q.live_event(LiveEvent::Relisting);
    q.live_event(LiveEvent::Upsert(live));
    q.live_event(LiveEvent::Synced);
    let k = q
        .change(decided("app-routemap", "uid-1", "app"))
        .expect("k");
    assert_eq!(q.next(&k, now), Next::Idle(Idle::Settled), "nothing again");
    assert_eq!(
        RouteMapStatus::parse(&serde_json::to_string(&status).expect("json")),
        Some(status)
    );
}

#[test]
fn a_label_edited_on_our_route_is_repaired_at_once() {
    let now = Instant::now();
    let mut p = planner();
    let k = p
        .change(decided("app-routemap", "uid-1", "app"))
        .expect("k");
    let route = create(&mut p, &k, now);
    let mut obj = route.to_json().expect("json");
    obj["metadata"]["resourceVersion"] = json!("9");
    obj["metadata"]["uid"] = json!("route-uid");
    obj["metadata"]["labels"]["iter8.tools/routemap"] = json!("someone-else");
    let edited = LiveRoute::from_json(&obj).expect("a route");
    assert_eq!(
        p.live_event(LiveEvent::Upsert(edited)),
        std::slice::from_ref(&k),
        "settled at once, not at resync"
    );
    assert!(matches!(p.next(&k, now), Next::Write(Step::Apply { .. })));
}
