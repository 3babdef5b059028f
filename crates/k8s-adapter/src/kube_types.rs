//! The one module that names external Kubernetes and Gateway API types.
//!
//! Everything else in the crate uses the aliases and helpers here, so a bump of `kube`,
//! `k8s-openapi` or `gateway-api` (which move together in `[workspace.dependencies]`) touches one
//! file. It also converts `routing-core`'s canonical [`routing_core::HttpRoute`] into the
//! `gateway-api` crate's generated type; a test checks that the conversion loses no field.

use routemap_index::config::ResourceType;

/// A ConfigMap (routemaps are ConfigMaps).
pub type ConfigMap = k8s_openapi::api::core::v1::ConfigMap;
/// A reference to an object, as Events name the object they are about.
pub type ObjectReference = k8s_openapi::api::core::v1::ObjectReference;
/// The `gateway.networking.k8s.io/v1` HTTPRoute as generated from the Gateway API CRDs.
pub type GatewayHttpRoute = gateway_api::apis::standard::httproutes::HttpRoute;
/// An object of a type known only at run time (the configured resource types).
pub type DynamicObject = kube::core::DynamicObject;
/// The API coordinates of a run-time type.
pub type ApiResource = kube::core::ApiResource;
/// Object metadata.
pub type ObjectMeta = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// A core/v1 Event (what `kubectl describe` and `kubectl get events` show).
pub type CoreEvent = k8s_openapi::api::core::v1::Event;

/// An instant, as Kubernetes timestamps hold it.
pub type Timestamp = k8s_openapi::jiff::Timestamp;

/// A `coordination.k8s.io/v1` Lease (leader election).
pub type Lease = k8s_openapi::api::coordination::v1::Lease;

/// When `identity`'s hold on the Lease ends: its last renewal plus the lease duration, or `None`
/// when someone else (or nobody) holds it. The holder writes `renewTime` with its own clock, so
/// the holder may compare it with its own clock.
pub fn lease_held_until(lease: &Lease, identity: &str) -> Option<std::time::SystemTime> {
    let spec = lease.spec.as_ref()?;
    if spec.holder_identity.as_deref() != Some(identity) {
        return None;
    }
    let renewed = spec.renew_time.as_ref()?.0;
    let seconds = u64::try_from(spec.lease_duration_seconds?).ok()?;
    let renewed = std::time::SystemTime::from(renewed);
    Some(renewed + std::time::Duration::from_secs(seconds))
}

/// A Go-style duration (`90s`, `15m`, `1h30m`, `1.5h`, `500ms`), as Kubernetes and Iter8 write
/// them, read by kube's own parser; a negative one is refused.
pub fn go_duration(text: &str) -> Result<std::time::Duration, String> {
    let parsed: kube::core::Duration = text
        .parse()
        .map_err(|e| format!("{text:?} is not a duration like 30s, 15m or 1h30m ({e})"))?;
    if parsed.is_negative() {
        return Err(format!("{text:?} is negative"));
    }
    Ok(parsed.into())
}

/// An Event's name: the object's name and the time in hex, within the 253 characters a name
/// may have (a routemap may be named up to 253 itself), the object's name cut to fit and ending
/// in a letter or digit, as a DNS subdomain must.
fn event_name(object: &str, now: k8s_openapi::jiff::Timestamp) -> String {
    let suffix = format!(".{:x}", now.as_nanosecond());
    let mut prefix = object;
    let room = 253 - suffix.len();
    if prefix.len() > room {
        // Names are ASCII (a DNS subdomain), so any byte index is a char boundary.
        prefix = prefix.get(..room).unwrap_or(prefix);
    }
    let prefix = prefix.trim_end_matches(|c: char| !c.is_ascii_alphanumeric());
    format!("{prefix}{suffix}")
}

/// A new core/v1 Event about `regarding`, named uniquely by the time it happened.
pub fn core_event(
    regarding: &ObjectReference,
    warning: bool,
    reason: &str,
    message: &str,
    component: &str,
    instance: Option<&str>,
    now: k8s_openapi::jiff::Timestamp,
) -> CoreEvent {
    use k8s_openapi::api::core::v1::EventSource;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
    CoreEvent {
        metadata: ObjectMeta {
            name: Some(event_name(
                regarding.name.as_deref().unwrap_or(component),
                now,
            )),
            namespace: regarding.namespace.clone(),
            ..Default::default()
        },
        involved_object: regarding.clone(),
        type_: Some(if warning { "Warning" } else { "Normal" }.into()),
        reason: Some(reason.into()),
        message: Some(message.into()),
        action: Some("Reconcile".into()),
        count: Some(1),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        event_time: Some(MicroTime(now)),
        reporting_component: Some(component.into()),
        reporting_instance: Some(instance.unwrap_or(component).into()),
        source: Some(EventSource {
            component: Some(component.into()),
            host: None,
        }),
        ..Default::default()
    }
}

/// The current time, as Kubernetes timestamps want it.
pub fn now() -> Timestamp {
    k8s_openapi::jiff::Timestamp::now()
}

/// The API coordinates of `gateway.networking.k8s.io/v1` HTTPRoutes.
pub fn httproute_resource() -> ApiResource {
    ApiResource::erase::<GatewayHttpRoute>(&())
}

/// The API coordinates of ConfigMaps.
pub fn configmap_resource() -> ApiResource {
    ApiResource::erase::<ConfigMap>(&())
}

/// Converts a planned route into the `gateway-api` type (for typed API calls and for users of
/// the crate). Fails only if the two models disagree, which the round-trip test rules out.
pub fn to_gateway(route: &routing_core::HttpRoute) -> Result<GatewayHttpRoute, serde_json::Error> {
    serde_json::from_value(route.to_json())
}

/// The API coordinates of a configured resource type, for a dynamic watch.
pub fn api_resource(t: &ResourceType) -> ApiResource {
    ApiResource {
        group: t.group.clone(),
        version: t.version.clone(),
        api_version: t.api_version(),
        kind: t.kind(),
        plural: t.resource.clone(),
    }
}

/// A reference to a routemap ConfigMap, the object our Events are about.
pub fn configmap_reference(namespace: &str, name: &str, uid: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("ConfigMap".into()),
        namespace: Some(namespace.into()),
        name: Some(name.into()),
        uid: (!uid.is_empty()).then(|| uid.to_string()),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_are_read_as_go_writes_them() {
        use std::time::Duration;
        assert_eq!(super::go_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(super::go_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(super::go_duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(super::go_duration("m").is_err());
        assert!(super::go_duration("5x").is_err());
        assert!(super::go_duration("soon").is_err());
        assert!(super::go_duration("-1s").is_err());
    }

    #[test]
    fn event_names_fit_for_the_longest_object_names() {
        let now = k8s_openapi::jiff::Timestamp::from_second(1_800_000_000).expect("a time");
        assert_eq!(
            super::event_name("httpbin-routemap", now),
            "httpbin-routemap.18fae27693b40000"
        );
        // A routemap named with 253 characters, the cut landing on a dot.
        let long = format!("{}.{}", "a".repeat(235), "b".repeat(17));
        let name = super::event_name(&long, now);
        assert!(name.len() <= 253, "{} characters", name.len());
        assert!(name.starts_with(&"a".repeat(235)) && name.ends_with(".18fae27693b40000"));
        assert!(!name.contains("..") && !name.contains("a.a"), "{name}");
    }

    use super::*;
    use routing_core::{RouteMapRef, RouteMapSpec, VersionState, plan};

    fn planned(yaml: &str, states: Vec<VersionState>) -> routing_core::HttpRoute {
        let spec = RouteMapSpec::from_yaml(yaml).expect("valid spec");
        let owner = RouteMapRef {
            namespace: "test".into(),
            name: "app-routemap".into(),
            uid: "uid-1".into(),
        };
        plan(&owner, &spec, &states)
            .expect("plans")
            .expect("a route")
    }

    /// Every strategy and every optional field the planner can write.
    fn routes() -> Vec<routing_core::HttpRoute> {
        let route = r#"
route:
  name: app
  parentRefs:
  - {group: "", kind: Service, name: app, port: 80}
  - {name: gw, namespace: infra, sectionName: http}
  hostnames: [app.example.com]
versions:
- name: app-0
  port: 8080
  resources: [{gvrShort: svc, name: app-0}]
- name: app-1
  weight: 30
  resources: [{gvrShort: svc, name: app-1}]
"#;
        let matches = r#"
  matches:
  - headers: [{name: traffic, value: test}, {name: x-user, value: "^a.*", type: RegularExpression}]
    queryParams: [{name: beta, value: "1"}]
    method: GET
  - path: {type: Exact, value: /v2}
    headers: [{name: traffic, value: v2}]
"#;
        let both = || vec![VersionState::available(), VersionState::available()];
        vec![
            planned(&format!("strategy: canary\n{route}{matches}"), both()),
            planned(&format!("strategy: blue-green\n{route}"), both()),
            planned(&format!("strategy: mirror\n{route}"), both()),
        ]
    }

    #[test]
    fn conversion_to_gateway_api_loses_no_field() {
        for route in routes() {
            let ours = route.to_json();
            let theirs = to_gateway(&route).expect("gateway-api accepts the route");
            let back = serde_json::to_value(&theirs).expect("serializes");
            // Any field the generated type drops or renames would show up as a difference here,
            // and would then silently never reach the API server.
            assert_eq!(back, ours, "round trip changed the route");
        }
    }

    #[test]
    fn conversion_covers_filters_mirrors_and_matches() {
        // Guard the fixture itself: the round trip above is only as strong as what it carries.
        let text: String = routes().iter().map(|r| r.to_json().to_string()).collect();
        for needle in [
            "RequestMirror",
            "ResponseHeaderModifier",
            "queryParams",
            "RegularExpression",
            "\"method\":\"GET\"",
            "sectionName",
            "hostnames",
            "ownerReferences",
            "\"weight\":30",
        ] {
            assert!(text.contains(needle), "fixture lacks {needle}");
        }
    }

    #[test]
    fn api_resource_comes_from_config() {
        let config = routemap_index::config::Config::default();
        let deploy = api_resource(&config.resource_types["deploy"]);
        assert_eq!(
            (
                deploy.group.as_str(),
                deploy.api_version.as_str(),
                deploy.kind.as_str(),
                deploy.plural.as_str()
            ),
            ("apps", "apps/v1", "Deployment", "deployments")
        );
        let svc = api_resource(&config.resource_types["svc"]);
        assert_eq!(
            (svc.api_version.as_str(), svc.kind.as_str()),
            ("v1", "Service")
        );
    }
}
