//! Gating never stops (issue 20), the index side: with [`Index::keep_last_good`], a routemap that
//! becomes invalid keeps its last good spec in force, and readiness changes are still decided
//! from it; each such decision is `Desired` with `traffic.invalid` naming the error.

use routemap_index::config::Config;
use routemap_index::index::{Change, Decision, Index, Traffic};
use routemap_index::routemap::RouteMapObject;
use test_builders::{RouteMap, canary_spec, deployment, watched};

fn routemap(spec: &str, uid: &str) -> RouteMapObject {
    RouteMap::new("test", "app-routemap", spec)
        .uid(uid)
        .object()
}

/// An invalid version of the canary spec: its candidate's match lost its header.
fn broken() -> String {
    canary_spec("app").replace(
        "matches: [{headers: [{name: traffic, value: test}]}]",
        "matches: [{path: {type: RegularExpression, value: /.*}}]",
    )
}

fn index(keep: bool) -> Index {
    let mut index = Index::new(&Config::default());
    index.keep_last_good(keep);
    for v in 0..2 {
        let name = format!("app-{v}");
        index.upsert_resource("svc", "test", &name, watched());
        index.upsert_resource("deploy", "test", &name, deployment(true));
    }
    index
}

/// The single decision in `changes`: its backends per rule, and its traffic.
fn decided(changes: &[Change]) -> (Vec<Vec<String>>, Traffic) {
    assert_eq!(changes.len(), 1, "{changes:#?}");
    match &changes[0] {
        Change::Decided {
            decision:
                Decision::Desired {
                    route: Some(route),
                    traffic,
                },
            ..
        } => (
            route
                .spec
                .rules
                .iter()
                .map(|r| r.backend_refs.iter().map(|b| b.name.clone()).collect())
                .collect(),
            traffic.clone(),
        ),
        other => panic!("not a route: {other:#?}"),
    }
}

fn both() -> Vec<Vec<String>> {
    vec![vec!["app-1".into()], vec!["app-0".into()]]
}

#[test]
fn gating_goes_on_with_the_last_good_spec_while_invalid() {
    let mut index = index(true);
    let (rules, traffic) = decided(&index.upsert_routemap(routemap(&canary_spec("app"), "u1")));
    assert_eq!((rules, traffic.invalid), (both(), None));

    // Invalid now: the same route, marked as coming from the last good spec.
    let (rules, traffic) = decided(&index.upsert_routemap(routemap(&broken(), "u1")));
    assert_eq!(rules, both());
    let error = traffic.invalid.expect("marked invalid").to_string();
    assert!(error.contains("versions[1].matches[0]"), "{error}");

    // The candidate becomes unavailable: it leaves the route although the routemap is invalid.
    let (rules, traffic) =
        decided(&index.upsert_resource("deploy", "test", "app-1", deployment(false)));
    assert_eq!(rules, vec![vec!["app-0".to_string()]]);
    assert!(traffic.invalid.is_some());
    assert_eq!(traffic.available(), vec!["app-0"]);

    // Another invalid version keeps the same last good spec in force.
    let other = broken().replace("strategy: canary", "strategy: canary\nbogus: 1");
    let (_, traffic) = decided(&index.upsert_routemap(routemap(&other, "u1")));
    assert!(
        traffic
            .invalid
            .expect("invalid")
            .to_string()
            .contains("bogus")
    );
    let (rules, _) = decided(&index.upsert_resource("deploy", "test", "app-1", deployment(true)));
    assert_eq!(rules, both());

    // Fixed: its own spec again, no mark.
    let (rules, traffic) = decided(&index.upsert_routemap(routemap(&canary_spec("app"), "u1")));
    assert_eq!((rules, traffic.invalid), (both(), None));
}

#[test]
fn without_it_an_invalid_routemap_decides_nothing_more() {
    let mut index = index(false);
    decided(&index.upsert_routemap(routemap(&canary_spec("app"), "u1")));
    let changes = index.upsert_routemap(routemap(&broken(), "u1"));
    assert!(matches!(
        changes.as_slice(),
        [Change::Decided {
            decision: Decision::Invalid { .. },
            ..
        }]
    ));
    assert!(
        index
            .upsert_resource("deploy", "test", "app-1", deployment(false))
            .is_empty()
    );
}

#[test]
fn no_last_good_spec_across_owners_or_before_the_first_good_one() {
    let mut index = index(true);
    // Never valid: invalid.
    let changes = index.upsert_routemap(routemap(&broken(), "u1"));
    assert!(matches!(
        changes.as_slice(),
        [Change::Decided {
            decision: Decision::Invalid { .. },
            ..
        }]
    ));
    // Valid, then deleted and created again (another uid) invalid: nothing of the old one.
    decided(&index.upsert_routemap(routemap(&canary_spec("app"), "u1")));
    let changes = index.upsert_routemap(routemap(&broken(), "u2"));
    assert!(matches!(
        changes.as_slice(),
        [Change::Decided {
            decision: Decision::Invalid { .. },
            ..
        }]
    ));
}
