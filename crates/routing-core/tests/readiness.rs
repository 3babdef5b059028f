//! Readiness of one resource from its JSON, and version states.

use routing_core::readiness::{NotReady, ObjectSource, ResourceFacts};
use routing_core::{RouteMapSpec, parse_weight, resource_ready, version_states};
use serde_json::{Value, json};

fn deploy(status: &str, generation: i64, observed: Option<i64>) -> Value {
    json!({
        "metadata": {"name": "d", "generation": generation, "labels": {"iter8.tools/watch": "true"}},
        "status": {
            "observedGeneration": observed,
            "conditions": [
                {"type": "Progressing", "status": "True"},
                {"type": "Available", "status": status}
            ]
        }
    })
}

fn available() -> Vec<String> {
    vec!["Available".to_string()]
}

#[test]
fn available_deployment_is_ready() {
    assert_eq!(
        resource_ready(&deploy("True", 2, Some(2)), &available()),
        Ok(())
    );
}

#[test]
fn condition_false_is_not_ready() {
    assert_eq!(
        resource_ready(&deploy("False", 1, Some(1)), &available()),
        Err(NotReady::ConditionNotTrue(
            "Available".into(),
            "False".into()
        ))
    );
}

#[test]
fn stale_status_is_not_ready_even_if_true() {
    // A new spec (generation 3) not yet observed: the old Available=True says nothing about it.
    assert_eq!(
        resource_ready(&deploy("True", 3, Some(2)), &available()),
        Err(NotReady::Stale {
            condition: "Available".into(),
            observed: 2,
            generation: 3
        })
    );
}

#[test]
fn condition_observed_generation_takes_precedence() {
    let mut obj = deploy("True", 3, Some(2));
    obj["status"]["conditions"][1]["observedGeneration"] = json!(3);
    assert_eq!(resource_ready(&obj, &available()), Ok(()));
}

#[test]
fn condition_names_and_status_compare_case_insensitively() {
    let obj = deploy("true", 1, None);
    assert_eq!(resource_ready(&obj, &["available".to_string()]), Ok(()));
}

#[test]
fn missing_conditions_are_not_ready() {
    let obj = json!({"metadata": {"labels": {"iter8.tools/watch": "true"}}});
    assert_eq!(
        resource_ready(&obj, &available()),
        Err(NotReady::ConditionMissing("Available".into()))
    );
    // Types without configured conditions are ready as soon as they exist.
    assert_eq!(resource_ready(&obj, &[]), Ok(()));
}

#[test]
fn deleting_or_unlabelled_objects_are_not_ready() {
    let mut obj = deploy("True", 1, Some(1));
    obj["metadata"]["deletionTimestamp"] = json!("2026-11-26T00:00:00Z");
    assert_eq!(resource_ready(&obj, &available()), Err(NotReady::Deleting));
    let obj = json!({"metadata": {"labels": {"iter8.tools/watch": "false"}}});
    assert_eq!(resource_ready(&obj, &[]), Err(NotReady::NotWatched));
}

#[test]
fn weight_annotation_parsing() {
    assert_eq!(parse_weight(" 70 "), Ok(70));
    assert!(parse_weight("-1").is_err());
    assert!(parse_weight("1000001").is_err());
    assert!(parse_weight("half").is_err());
}

struct Objects(Vec<(&'static str, &'static str, ResourceFacts)>);

impl ObjectSource for Objects {
    fn conditions(&self, gvr_short: &str) -> Option<&[String]> {
        static DEPLOY: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
        match gvr_short {
            "deploy" => Some(DEPLOY.get_or_init(|| vec!["Available".into()])),
            "svc" | "cm" => Some(&[]),
            _ => None,
        }
    }
    fn facts(&self, gvr_short: &str, _ns: &str, name: &str) -> Option<&ResourceFacts> {
        self.0
            .iter()
            .find(|(k, n, _)| *k == gvr_short && *n == name)
            .map(|(_, _, f)| f)
    }
}

#[test]
fn version_state_needs_every_resource_and_takes_the_first_valid_weight() {
    let spec = RouteMapSpec::from_yaml(
        "strategy: blue-green\nroute: {name: a, parentRefs: [{name: gw}]}\nversions:\n- name: a-0\n  resources: [{gvrShort: svc, name: a-0}, {gvrShort: cm, name: a-0-w}, {gvrShort: svc, name: a-0-x}]\n- name: a-1\n  resources: [{gvrShort: svc, name: a-1}, {gvrShort: deploy, name: a-1}]\n",
    )
    .expect("valid");
    let ok = |w: Option<&str>| ResourceFacts {
        watched: true,
        weight_annotation: w.map(str::to_string),
        ..Default::default()
    };
    let objects = Objects(vec![
        ("svc", "a-0", ok(Some("bad"))),
        ("cm", "a-0-w", ok(Some("40"))),
        ("svc", "a-0-x", ok(Some("60"))),
        ("svc", "a-1", ok(None)),
    ]);
    let states = version_states("ns", &spec, &objects);
    assert!(states[0].available);
    assert_eq!(
        states[0].weight_override,
        Some(40),
        "first valid annotation wins"
    );
    assert_eq!(states[0].warnings.len(), 1, "the invalid one is reported");
    assert!(!states[1].available);
    assert_eq!(states[1].reason.as_deref(), Some("deploy/a-1 not found"));
}

/// Services whose EndpointSlices are known: `Some(ready)` per name.
struct WithSlices(Objects, Vec<(&'static str, bool)>);

impl ObjectSource for WithSlices {
    fn conditions(&self, gvr_short: &str) -> Option<&[String]> {
        self.0.conditions(gvr_short)
    }
    fn facts(&self, gvr_short: &str, ns: &str, name: &str) -> Option<&ResourceFacts> {
        self.0.facts(gvr_short, ns, name)
    }
    fn endpoints_ready(&self, gvr_short: &str, _ns: &str, name: &str) -> Option<bool> {
        (gvr_short == "svc")
            .then(|| self.1.iter().find(|(n, _)| *n == name).map(|(_, r)| *r))
            .flatten()
    }
}

/// A version goes as soon as either its Deployment or its Service's slices say so; a Service
/// without any slice is judged by its own facts, as before slices were watched.
#[test]
fn a_service_with_slices_but_no_ready_endpoint_makes_its_version_unavailable() {
    let spec = RouteMapSpec::from_yaml(
        "strategy: canary\nroute: {name: a, parentRefs: [{name: gw}]}\nversions:\n- name: a-0\n  resources: [{gvrShort: svc, name: a-0}, {gvrShort: deploy, name: a-0}]\n- name: a-1\n  resources: [{gvrShort: svc, name: a-1}, {gvrShort: deploy, name: a-1}]\n  matches: [{headers: [{name: traffic, value: test}]}]\n- name: a-2\n  resources: [{gvrShort: svc, name: a-2}, {gvrShort: deploy, name: a-2}]\n  matches: [{headers: [{name: traffic, value: other}]}]\n",
    )
    .expect("valid");
    let svc = ResourceFacts {
        watched: true,
        ..Default::default()
    };
    let available = ResourceFacts {
        watched: true,
        conditions: Some(vec![routing_core::readiness::ConditionFact {
            kind: "Available".into(),
            status: "True".into(),
            observed_generation: None,
        }]),
        ..Default::default()
    };
    let objects = Objects(vec![
        ("svc", "a-0", svc.clone()),
        ("deploy", "a-0", available.clone()),
        ("svc", "a-1", svc.clone()),
        ("deploy", "a-1", available.clone()),
        ("svc", "a-2", svc),
        ("deploy", "a-2", available),
    ]);
    // a-0: slices with a ready endpoint; a-1: slices, none ready; a-2: no slice known.
    let source = WithSlices(objects, vec![("a-0", true), ("a-1", false)]);
    let states = version_states("ns", &spec, &source);
    assert!(states[0].available, "{:?}", states[0]);
    assert!(!states[1].available);
    assert_eq!(
        states[1].reason.as_deref(),
        Some("svc/a-1 has EndpointSlices but no ready endpoint")
    );
    assert!(states[2].available, "no slice: judged as before");
}
