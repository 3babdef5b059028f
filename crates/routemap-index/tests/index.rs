//! The index, tested by calling it: feed objects made by small builders, assert exactly which
//! decisions come out.

use routemap_index::config::Config;
use routemap_index::index::{Change, Decision, Index, Withdrawn};
use routemap_index::routemap::{RouteMapKey, RouteMapObject};
use test_builders::{RouteMap, deployment, watched, with_weight};

const CANARY: &str = r#"
strategy: canary
route:
  name: httpbin
  parentRefs: [{group: "", kind: Service, name: httpbin, port: 80}]
versions:
- name: httpbin-0
  resources: [{gvrShort: svc, name: httpbin-0}, {gvrShort: deploy, name: httpbin-0}]
- name: httpbin-1
  resources: [{gvrShort: svc, name: httpbin-1}, {gvrShort: deploy, name: httpbin-1}]
  matches: [{headers: [{name: traffic, value: test}]}]
"#;

const BLUE_GREEN: &str = r#"
strategy: blue-green
route:
  name: httpbin
  parentRefs: [{group: "", kind: Service, name: httpbin, port: 80}]
versions:
- name: httpbin-0
  weight: 30
  resources: [{gvrShort: svc, name: httpbin-0}, {gvrShort: cm, name: httpbin-0-weight-config}]
- name: httpbin-1
  weight: 70
  resources: [{gvrShort: service, name: httpbin-1}, {gvrShort: cm, name: httpbin-1-weight-config}]
"#;

fn routemap(spec: &str) -> RouteMapObject {
    RouteMap::new("test", "httpbin-routemap", spec)
        .resource_version("1")
        .object()
}

fn routemap_labeled(spec: &str, version: &str) -> RouteMapObject {
    RouteMap::new("test", "httpbin-routemap", spec)
        .resource_version("1")
        .format_version(version)
        .object()
}

/// Every resource of the BLUE_GREEN versions present (no readiness conditions).
fn blue_green_watched(ix: &mut Index) {
    for (k, n) in [
        ("svc", "httpbin-0"),
        ("cm", "httpbin-0-weight-config"),
        ("svc", "httpbin-1"),
        ("cm", "httpbin-1-weight-config"),
    ] {
        ix.upsert_resource(k, "test", n, watched());
    }
}

fn index() -> Index {
    Index::new(&Config::default())
}

/// Backend names per rule of the single decided route in `changes`.
fn rules(changes: &[Change]) -> Vec<Vec<(String, u32)>> {
    assert_eq!(changes.len(), 1, "expected one change, got {changes:#?}");
    match &changes[0] {
        Change::Decided {
            decision: Decision::Desired { route: Some(r), .. },
            ..
        } => r
            .spec
            .rules
            .iter()
            .map(|rule| {
                rule.backend_refs
                    .iter()
                    .map(|b| (b.name.clone(), b.weight))
                    .collect()
            })
            .collect(),
        other => panic!("expected a route, got {other:#?}"),
    }
}

/// The error of the single invalid decision in `changes`.
fn invalid_error(changes: &[Change]) -> String {
    match changes {
        [
            Change::Decided {
                decision: Decision::Invalid { error },
                ..
            },
        ] => error.to_string(),
        other => panic!("expected one invalid decision, got {other:#?}"),
    }
}

fn ready_version(ix: &mut Index, name: &str) -> Vec<Change> {
    let mut out = ix.upsert_resource("svc", "test", name, watched());
    out.extend(ix.upsert_resource("deploy", "test", name, deployment(true)));
    out
}

#[test]
fn routemap_without_resources_routes_to_the_unavailable_primary() {
    let mut ix = index();
    // Default traffic always has a backend: the declared primary.
    let changes = ix.upsert_routemap(routemap(CANARY));
    assert_eq!(rules(&changes), vec![vec![("httpbin-0".to_string(), 1)]]);
}

#[test]
fn candidate_rule_appears_only_when_candidate_is_ready() {
    let mut ix = index();
    ix.upsert_routemap(routemap(CANARY));
    // The primary's Service, then its Deployment: two decisions (a new reason, then available),
    // the route unchanged.
    assert_eq!(ready_version(&mut ix, "httpbin-0").len(), 2);
    // Service alone is not enough: the Deployment has to be Available too. The route stays;
    // only the reason changes (from the Service missing to the Deployment missing).
    let changes = ix.upsert_resource("svc", "test", "httpbin-1", watched());
    assert_eq!(rules(&changes), vec![vec![("httpbin-0".to_string(), 1)]]);
    let Change::Decided {
        decision: Decision::Desired { traffic, .. },
        ..
    } = &changes[0]
    else {
        panic!("expected a decision");
    };
    assert_eq!(
        traffic.versions[1].reason.as_deref(),
        Some("deploy/httpbin-1 not found")
    );
    let changes = ix.upsert_resource("deploy", "test", "httpbin-1", deployment(true));
    assert_eq!(
        rules(&changes),
        vec![
            vec![("httpbin-1".to_string(), 1)],
            vec![("httpbin-0".to_string(), 1)]
        ]
    );
}

#[test]
fn readiness_flip_removes_and_restores_the_candidate_rule() {
    let mut ix = index();
    ix.upsert_routemap(routemap(CANARY));
    ready_version(&mut ix, "httpbin-0");
    ready_version(&mut ix, "httpbin-1");
    let down = ix.upsert_resource("deploy", "test", "httpbin-1", deployment(false));
    assert_eq!(rules(&down), vec![vec![("httpbin-0".to_string(), 1)]]);
    let up = ix.upsert_resource("deploy", "test", "httpbin-1", deployment(true));
    assert_eq!(rules(&up).len(), 2);
}

#[test]
fn an_event_that_changes_no_fact_decides_nothing() {
    let mut ix = index();
    ix.upsert_routemap(routemap(CANARY));
    ready_version(&mut ix, "httpbin-0");
    // Same facts again (e.g. a resync, or an edit of an unrelated annotation).
    assert!(
        ix.upsert_resource("deploy", "test", "httpbin-0", deployment(true))
            .is_empty()
    );
    // A status update that keeps the kept and its reason decides nothing either.
    ix.upsert_resource("deploy", "test", "httpbin-1", deployment(false));
    let mut later = deployment(false);
    later.generation = Some(2);
    later.observed_generation = Some(2);
    assert!(
        ix.upsert_resource("deploy", "test", "httpbin-1", later)
            .is_empty()
    );
}

#[test]
fn objects_nobody_references_decide_nothing_but_are_remembered() {
    let mut ix = index();
    assert!(
        ix.upsert_resource("svc", "test", "httpbin-1", watched())
            .is_empty()
    );
    assert!(
        ix.upsert_resource("deploy", "test", "httpbin-1", deployment(true))
            .is_empty()
    );
    ready_version(&mut ix, "httpbin-0");
    // The routemap arrives last: the facts already known decide it at once.
    let changes = ix.upsert_routemap(routemap(CANARY));
    assert_eq!(rules(&changes).len(), 2);
}

#[test]
fn weight_annotation_overrides_and_aliases_share_facts() {
    let mut ix = index();
    ix.upsert_routemap(routemap(BLUE_GREEN));
    ix.upsert_resource("svc", "test", "httpbin-0", watched());
    ix.upsert_resource("cm", "test", "httpbin-0-weight-config", watched());
    // `service` and `svc` are the same type: the fact arrives once, under either name.
    ix.upsert_resource("svc", "test", "httpbin-1", watched());
    let changes = ix.upsert_resource("cm", "test", "httpbin-1-weight-config", watched());
    assert_eq!(
        rules(&changes),
        vec![vec![
            ("httpbin-0".to_string(), 30),
            ("httpbin-1".to_string(), 70)
        ]]
    );
    let changes = ix.upsert_resource(
        "cm",
        "test",
        "httpbin-1-weight-config",
        with_weight(watched(), "90"),
    );
    assert_eq!(
        rules(&changes),
        vec![vec![
            ("httpbin-0".to_string(), 30),
            ("httpbin-1".to_string(), 90)
        ]]
    );
}

#[test]
fn invalid_weight_annotation_is_ignored_with_a_warning() {
    let mut ix = index();
    ix.upsert_routemap(routemap(BLUE_GREEN));
    for (k, n) in [
        ("svc", "httpbin-0"),
        ("cm", "httpbin-0-weight-config"),
        ("svc", "httpbin-1"),
    ] {
        ix.upsert_resource(k, "test", n, watched());
    }
    let changes = ix.upsert_resource(
        "cm",
        "test",
        "httpbin-1-weight-config",
        with_weight(watched(), "lots"),
    );
    assert_eq!(
        rules(&changes),
        vec![vec![
            ("httpbin-0".to_string(), 30),
            ("httpbin-1".to_string(), 70)
        ]]
    );
    let Change::Decided {
        decision: Decision::Desired { traffic, .. },
        ..
    } = &changes[0]
    else {
        panic!("expected a decision");
    };
    assert!(
        traffic.warnings[0].contains("\"lots\""),
        "{:?}",
        traffic.warnings
    );
}

#[test]
fn deleting_a_resource_makes_its_version_unavailable() {
    let mut ix = index();
    ix.upsert_routemap(routemap(CANARY));
    ready_version(&mut ix, "httpbin-0");
    ready_version(&mut ix, "httpbin-1");
    let changes = ix.delete_resource("svc", "test", "httpbin-1");
    assert_eq!(rules(&changes), vec![vec![("httpbin-0".to_string(), 1)]]);
    assert!(
        ix.delete_resource("svc", "test", "httpbin-1").is_empty(),
        "second delete is a no-op"
    );
}

#[test]
fn relist_deletes_what_was_not_seen_again() {
    let mut ix = index();
    ix.upsert_routemap(routemap(CANARY));
    ready_version(&mut ix, "httpbin-0");
    ready_version(&mut ix, "httpbin-1");
    // The Deployment watch expired and listed again; httpbin-1's Deployment is gone.
    ix.begin_relist("deploy");
    assert!(
        ix.upsert_resource("deploy", "test", "httpbin-0", deployment(true))
            .is_empty()
    );
    let changes = ix.end_relist("deploy");
    assert_eq!(rules(&changes), vec![vec![("httpbin-0".to_string(), 1)]]);
    assert_eq!(ix.resource_count(), 3);
}

#[test]
fn routemap_relist_removes_deleted_routemaps() {
    let mut ix = index();
    ix.upsert_routemap(routemap(CANARY));
    ix.begin_routemap_relist();
    let changes = ix.end_routemap_relist();
    assert_eq!(
        changes,
        vec![Change::Removed {
            key: RouteMapKey::new("test", "httpbin-routemap")
        }]
    );
    assert_eq!(ix.routemap_count(), 0);
}

#[test]
fn invalid_routemap_reports_the_field_and_keeps_no_route() {
    let mut ix = index();
    let spec = CANARY.replace(
        "  matches: [{headers: [{name: traffic, value: test}]}]\n",
        "",
    );
    let changes = ix.upsert_routemap(routemap(&spec));
    match &changes[..] {
        [
            Change::Decided {
                decision: Decision::Invalid { error },
                ..
            },
        ] => assert_eq!(
            error.to_string(),
            "data[routemap.yaml].versions[1].matches: a canary candidate needs at least one match; without one it would take all traffic"
        ),
        other => panic!("expected invalid, got {other:#?}"),
    }
    // The same invalid routemap again is not a new decision (no repeated Warning Events).
    assert!(ix.upsert_routemap(routemap(&spec)).is_empty());
}

#[test]
fn iter8_1_1_routemaps_are_rejected_with_a_hint() {
    let mut ix = index();
    let changes = ix.upsert_routemap(routemap_labeled(CANARY, "v1.1"));
    let error = invalid_error(&changes);
    assert!(
        error.starts_with("metadata.labels[iter8.tools/version]"),
        "{error}"
    );
    assert!(error.contains("charts/release"), "{error}");
}

#[test]
fn unknown_type_and_foreign_namespace_are_invalid_when_namespace_scoped() {
    let mut ix = index();
    let spec = CANARY.replace(
        "{gvrShort: deploy, name: httpbin-1}",
        "{gvrShort: ksvc, name: httpbin-1}",
    );
    let changes = ix.upsert_routemap(routemap(&spec));
    let error = invalid_error(&changes);
    assert!(
        error.contains("versions[1].resources[1].gvrShort: \"ksvc\""),
        "{error}"
    );

    let spec = CANARY.replace(
        "{gvrShort: deploy, name: httpbin-1}",
        "{gvrShort: deploy, name: httpbin-1, namespace: other}",
    );
    let changes = ix.upsert_routemap(routemap(&spec));
    let error = invalid_error(&changes);
    assert!(
        error.contains("versions[1].resources[1].namespace"),
        "{error}"
    );

    assert!(
        error.contains("allowCrossNamespaceReferences=true"),
        "the message says how to allow it: {error}"
    );
}

/// The spec of [`CANARY`] whose candidate Deployment is in namespace `other`.
fn cross_namespace_spec() -> String {
    CANARY.replace(
        "{gvrShort: deploy, name: httpbin-1}",
        "{gvrShort: deploy, name: httpbin-1, namespace: other}",
    )
}

#[test]
fn cross_namespace_references_are_refused_by_default_even_cluster_scoped() {
    let mut cluster = Index::new(&Config {
        cluster_scoped: true,
        ..Config::default()
    });
    let changes = cluster.upsert_routemap(routemap(&cross_namespace_spec()));
    let error = invalid_error(&changes);
    assert!(
        error.contains("versions[1].resources[1].namespace: \"other\""),
        "{error}"
    );
    assert!(
        error.contains("--set clusterScoped=true --set allowCrossNamespaceReferences=true"),
        "{error}"
    );
}

#[test]
fn a_cluster_scoped_controller_allowing_them_reads_other_namespaces() {
    let mut cluster = Index::new(&Config {
        cluster_scoped: true,
        allow_cross_namespace_references: true,
        ..Config::default()
    });
    let changes = cluster.upsert_routemap(routemap(&cross_namespace_spec()));
    assert_eq!(
        rules(&changes).len(),
        1,
        "cluster scope with allowCrossNamespaceReferences reads other namespaces"
    );
}

#[test]
fn allowing_them_has_no_effect_on_a_namespace_scoped_controller() {
    let mut ix = Index::new(&Config {
        allow_cross_namespace_references: true,
        ..Config::default()
    });
    let changes = ix.upsert_routemap(routemap(&cross_namespace_spec()));
    let error = invalid_error(&changes);
    assert!(
        error.contains("versions[1].resources[1].namespace"),
        "{error}"
    );
}

#[test]
fn the_config_key_is_allow_cross_namespace_references() {
    let c = Config::from_yaml("clusterScoped: true\nallowCrossNamespaceReferences: true\n")
        .expect("parses");
    assert!(c.cluster_scoped && c.allow_cross_namespace_references);
    assert!(!Config::default().allow_cross_namespace_references);
}

#[test]
fn fixing_an_invalid_routemap_decides_again() {
    let mut ix = index();
    ix.upsert_routemap(routemap("strategy: canary\n"));
    let changes = ix.upsert_routemap(routemap(CANARY));
    assert_eq!(rules(&changes).len(), 1);
}

#[test]
fn deleting_the_routemap_is_reported_once() {
    let mut ix = index();
    ix.upsert_routemap(routemap(CANARY));
    assert_eq!(ix.delete_routemap("test", "httpbin-routemap").len(), 1);
    assert!(ix.delete_routemap("test", "httpbin-routemap").is_empty());
    // Its resources no longer decide anything.
    assert!(ready_version(&mut ix, "httpbin-0").is_empty());
}

#[test]
fn a_new_invalid_annotation_is_reported_even_if_weights_stay() {
    let mut ix = index();
    ix.upsert_routemap(routemap(BLUE_GREEN));
    blue_green_watched(&mut ix);
    // Same weights as before (the annotation is ignored), but the user must hear about it.
    let changes = ix.upsert_resource("svc", "test", "httpbin-1", with_weight(watched(), "x"));
    assert_eq!(changes.len(), 1, "{changes:#?}");
}

fn guarded_index() -> (Index, RouteMapKey) {
    let spec = format!(
        "{}guard:\n  interval: 10s\n  metrics: envoy\n  objectives: {{errorRate: 0.01}}\n",
        test_builders::canary_spec("app")
    );
    let mut index = Index::new(&Config::default());
    index.upsert_routemap(RouteMap::new("test", "app-routemap", spec).object());
    for v in ["app-0", "app-1"] {
        index.upsert_resource("svc", "test", v, watched());
        index.upsert_resource("deploy", "test", v, deployment(true));
    }
    (index, RouteMapKey::new("test", "app-routemap"))
}

fn withdrawn(why: &str) -> Option<Withdrawn> {
    Some(Withdrawn {
        why: why.into(),
        identity: "svc/app-1:-;deploy/app-1:1;".into(),
    })
}

fn candidate_rules(decision: &Decision) -> usize {
    let Decision::Desired {
        route: Some(route), ..
    } = decision
    else {
        panic!("a route: {decision:?}");
    };
    route.spec.rules.len()
}

#[test]
fn a_guarded_routemap_decides_without_warnings() {
    let (index, key) = guarded_index();
    let Some(Decision::Desired { traffic, .. }) = index.current_decision(&key) else {
        panic!("a valid guarded routemap");
    };
    assert!(traffic.warnings.is_empty(), "{:?}", traffic.warnings);
    assert_eq!(traffic.available(), ["app-0", "app-1"]);
}

#[test]
fn a_withdrawn_candidate_leaves_the_route_until_let_back_in() {
    let (mut index, key) = guarded_index();
    let before = index.current_decision(&key).expect("held");
    assert_eq!(candidate_rules(&before), 2);
    let Some(Change::Decided { decision, .. }) = index.set_withdrawn(
        &key,
        "app-1",
        withdrawn("errorRate 20% is over the limit 1%"),
    ) else {
        panic!("a withdrawal decides again");
    };
    assert_eq!(candidate_rules(&decision), 1, "only the primary's rule");
    let Decision::Desired { traffic, .. } = &decision else {
        panic!()
    };
    assert_eq!(traffic.available(), ["app-0"]);
    assert_eq!(
        traffic.versions[1].reason.as_deref(),
        Some("withdrawn by the guard: errorRate 20% is over the limit 1%")
    );
    assert_eq!(
        traffic.withdrawn().collect::<Vec<_>>(),
        [("app-1", "errorRate 20% is over the limit 1%")]
    );
    // Said twice: nothing new.
    assert!(
        index
            .set_withdrawn(&key, "app-1", withdrawn("again"))
            .is_none()
    );
    // Readiness changes are still decided with the candidate withdrawn.
    let flip = index.upsert_resource("deploy", "test", "app-0", deployment(false));
    assert_eq!(flip.len(), 1);
    index.upsert_resource("deploy", "test", "app-0", deployment(true));
    // A routemap edit keeps the withdrawal.
    let spec = index.spec(&key).expect("valid").clone();
    let edited = format!(
        "{}guard:\n  interval: 20s\n  metrics: envoy\n  objectives: {{errorRate: 0.01}}\n",
        test_builders::canary_spec("app")
    );
    index.upsert_routemap(RouteMap::new("test", "app-routemap", edited).object());
    assert_ne!(index.spec(&key), Some(&spec));
    let kept = index.current_decision(&key).expect("held");
    assert_eq!(candidate_rules(&kept), 1);
    // Let back in.
    let Some(Change::Decided { decision, .. }) = index.set_withdrawn(&key, "app-1", None) else {
        panic!("a reinstatement decides again");
    };
    assert_eq!(candidate_rules(&decision), 2);
}

#[test]
fn the_primary_and_unguarded_routemaps_are_never_withdrawn() {
    let (mut index, key) = guarded_index();
    assert!(index.set_withdrawn(&key, "app-0", withdrawn("x")).is_none());
    assert!(index.set_withdrawn(&key, "nope", withdrawn("x")).is_none());
    let mut plain = Index::new(&Config::default());
    plain.upsert_routemap(
        RouteMap::new("test", "app-routemap", test_builders::canary_spec("app")).object(),
    );
    assert!(plain.set_withdrawn(&key, "app-1", withdrawn("x")).is_none());
    assert!(plain.guard_view(&key).is_none());
}

#[test]
fn the_guard_view_names_each_candidate_with_its_identity() {
    let (mut index, key) = guarded_index();
    let view = index.guard_view(&key).expect("guarded");
    assert_eq!(view.candidates.len(), 1);
    let c = &view.candidates[0];
    assert_eq!(c.version.name, "app-1");
    assert!(c.available && c.withdrawn.is_none() && c.retry.is_none());
    assert_eq!(c.fingerprint, "svc/app-1:-;deploy/app-1:1;");
    // A new generation and a retry annotation change the identity.
    let mut next = deployment(true);
    next.generation = Some(2);
    next.observed_generation = Some(2);
    next.guard_retry = Some("1".into());
    index.upsert_resource("deploy", "test", "app-1", next);
    let c = &index.guard_view(&key).expect("guarded").candidates[0];
    assert_eq!(c.fingerprint, "svc/app-1:-;deploy/app-1:2;");
    assert_eq!(c.retry.as_deref(), Some("1"));
    assert_eq!(index.referrers("deployment", "test", "app-1").len(), 0);
    assert_eq!(index.referrers("deploy", "test", "app-1"), [key]);
}

#[test]
fn a_withdrawn_blue_green_candidate_gives_its_weight_to_the_others() {
    let spec = format!(
        "{BLUE_GREEN}guard:\n  interval: 10s\n  metrics: envoy\n  objectives: {{errorRate: 0.01}}\n"
    );
    let mut ix = index();
    ix.upsert_routemap(routemap(&spec));
    blue_green_watched(&mut ix);
    let key = RouteMapKey::new("test", "httpbin-routemap");
    let change = ix
        .set_withdrawn(&key, "httpbin-1", withdrawn("latencyP99 2s is over"))
        .expect("decided again");
    assert_eq!(
        rules(&[change]),
        vec![vec![("httpbin-0".to_string(), 30)]],
        "httpbin-1 leaves the rule: all traffic to httpbin-0"
    );
}

#[test]
fn withdrawals_read_back_from_the_route_are_restored_once_before_the_guard_speaks() {
    let spec = format!(
        "{}guard:\n  interval: 10s\n  metrics: envoy\n  objectives: {{errorRate: 0.01}}\n",
        test_builders::canary_spec("app")
    );
    let object = RouteMap::new("test", "app-routemap", spec).object();
    let uid = object.uid.clone();
    let key = RouteMapKey::new("test", "app-routemap");
    let from_status = |names: &[&str]| {
        names
            .iter()
            .map(|n| {
                (
                    n.to_string(),
                    withdrawn("before the restart").expect("some"),
                )
            })
            .collect::<routemap_index::index::Withdrawals>()
    };
    let mut index = Index::new(&Config::default());
    // The route's status arrives before the routemap: held until it comes.
    assert!(
        index
            .restore_withdrawn(&key, &uid, from_status(&["app-1", "app-0", "gone"]))
            .is_none()
    );
    index.upsert_routemap(object);
    for v in ["app-0", "app-1"] {
        index.upsert_resource("svc", "test", v, watched());
        index.upsert_resource("deploy", "test", v, deployment(true));
    }
    let decision = index.current_decision(&key).expect("held");
    assert_eq!(candidate_rules(&decision), 1, "app-1 stays out");
    let view = index.guard_view(&key).expect("guarded");
    assert_eq!(
        view.candidates[0]
            .withdrawn
            .as_ref()
            .map(|w| w.identity.as_str()),
        Some("svc/app-1:-;deploy/app-1:1;"),
        "the guard is told the identity it was withdrawn with"
    );
    // The guard lets it back in; a late read-back of the old status changes nothing.
    index.set_withdrawn(&key, "app-1", None);
    assert!(
        index
            .restore_withdrawn(&key, &uid, from_status(&["app-1"]))
            .is_none()
    );
    let decision = index.current_decision(&key).expect("held");
    assert_eq!(candidate_rules(&decision), 2);
    // Another routemap of the same name (another uid) takes nothing from it.
    let mut fresh = Index::new(&Config::default());
    fresh.upsert_routemap(
        RouteMap::new("test", "app-routemap", test_builders::canary_spec("app")).object(),
    );
    assert!(
        fresh
            .restore_withdrawn(&key, "another-uid", from_status(&["app-1"]))
            .is_none()
    );
}
