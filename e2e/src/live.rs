//! A live HTTPRoute read back from the API server, in routing-core's model: its rules and
//! backends, and where a request goes (`routing_core::explain`, Gateway API precedence).

use std::fmt::Write as _;

use anyhow::{Context, Result};
use routing_core::route::FilterType;
use routing_core::{HttpRoute, Request};
use serde_json::Value;

/// A live HTTPRoute: its JSON and routing-core's view of it.
#[derive(Debug, Clone)]
pub struct Live {
    /// As the API server returned it.
    pub json: Value,
    /// In routing-core's model.
    pub route: HttpRoute,
}

impl Live {
    /// Converts the API server's JSON into routing-core's model.
    pub fn from_json(json: Value) -> Result<Live> {
        let route: HttpRoute = serde_json::from_value(json.clone())
            .context("the live HTTPRoute does not fit routing-core's model")?;
        Ok(Live { json, route })
    }

    /// `metadata.resourceVersion`.
    pub fn resource_version(&self) -> String {
        self.json["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// `metadata.generation`: one more per write that changed the spec.
    pub fn generation(&self) -> i64 {
        self.json["metadata"]["generation"].as_i64().unwrap_or(0)
    }

    /// A label's value.
    pub fn label(&self, key: &str) -> Option<String> {
        self.json["metadata"]["labels"][key]
            .as_str()
            .map(str::to_string)
    }

    /// Field managers in `managedFields`.
    pub fn managers(&self) -> Vec<String> {
        self.json["metadata"]["managedFields"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|m| m["manager"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Number of rules.
    pub fn rules(&self) -> usize {
        self.route.spec.rules.len()
    }

    /// `(backend, weight)` of every backend of rule `i`.
    pub fn backends(&self, i: usize) -> Vec<(String, u32)> {
        self.route
            .spec
            .rules
            .get(i)
            .map(|r| {
                r.backend_refs
                    .iter()
                    .map(|b| (b.name.clone(), b.weight))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `(target, percent)` of every RequestMirror filter.
    pub fn mirrors(&self) -> Vec<(String, u32)> {
        self.route
            .spec
            .rules
            .iter()
            .flat_map(|r| &r.filters)
            .filter(|f| f.kind == FilterType::RequestMirror)
            .filter_map(|f| f.request_mirror.as_ref())
            .map(|m| (m.backend_ref.name.clone(), m.percent))
            .collect()
    }

    /// Every backend sets `app-version: <its name>` on responses.
    pub fn app_version_headers_ok(&self) -> bool {
        self.route.spec.rules.iter().all(|r| {
            r.backend_refs.iter().all(|b| {
                b.filters.iter().any(|f| {
                    f.response_header_modifier.as_ref().is_some_and(|h| {
                        h.set
                            .iter()
                            .any(|v| v.name == "app-version" && v.value == b.name)
                    })
                })
            })
        })
    }

    /// Where a request goes: `httpbin-1 (100%, app-version httpbin-1)`, via routing-core's
    /// `explain` (Gateway API precedence).
    pub fn explain(&self, req: &Request) -> String {
        match routing_core::explain(&self.route, req) {
            None => "no rule matches (404)".into(),
            Some(x) => {
                let mut s = x
                    .backends
                    .iter()
                    .map(|b| {
                        format!(
                            "{} ({:.0}%, app-version {})",
                            b.backend,
                            b.percent(),
                            b.app_version.as_deref().unwrap_or("-")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(" + ");
                for (m, p) in &x.mirrors {
                    let _ = write!(s, ", mirrored to {m} ({p}%)");
                }
                let _ = write!(s, " [rule {}]", x.rule);
                s
            }
        }
    }

    /// The backends (name, app-version) a request reaches with a positive weight.
    pub fn serves(&self, req: &Request) -> Vec<(String, Option<String>)> {
        routing_core::explain(&self.route, req)
            .map(|x| {
                x.backends
                    .into_iter()
                    .map(|b| (b.backend, b.app_version))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Fails unless plain and `traffic: test` requests both reach `version` alone (answering
    /// with its own `app-version`); logs where each goes.
    pub fn expect_all_to(&self, version: &str) -> Result<()> {
        for req in [plain_request(), test_request()] {
            anyhow::ensure!(
                self.serves(&req) == [(version.to_string(), Some(version.to_string()))],
                "{req:?} -> {}",
                self.explain(&req)
            );
        }
        crate::out::ok(format!("GET / -> {}", self.explain(&plain_request())));
        crate::out::ok(format!(
            "GET / traffic: test -> {}",
            self.explain(&test_request())
        ));
        Ok(())
    }

    /// One-line traffic: `rule 0 [traffic=test] -> httpbin-1 w1; rule 1 [/] -> httpbin-0 w1`.
    pub fn describe(&self) -> String {
        let rules: Vec<String> = self
            .route
            .spec
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let matches: Vec<String> = r
                    .matches
                    .iter()
                    .map(|m| {
                        let mut parts = vec![m.path.value.clone()];
                        parts.extend(m.headers.iter().map(|h| format!("{}={}", h.name, h.value)));
                        parts.join(" ")
                    })
                    .collect();
                let backends: Vec<String> = r
                    .backend_refs
                    .iter()
                    .map(|b| format!("{} w{}", b.name, b.weight))
                    .collect();
                let mut s = format!(
                    "rule {i} [{}] -> {}",
                    matches.join(" | "),
                    backends.join(", ")
                );
                for f in &r.filters {
                    if let Some(m) = &f.request_mirror {
                        let _ = write!(s, " (mirror {} {}%)", m.backend_ref.name, m.percent);
                    }
                }
                s
            })
            .collect();
        format!(
            "{} (generation {}, rv {})",
            rules.join("; "),
            self.generation(),
            self.resource_version()
        )
    }
}

/// A request with the tutorial's `traffic: test` header.
pub fn test_request() -> Request {
    Request::get("/").header("traffic", "test")
}

/// A plain request.
pub fn plain_request() -> Request {
    Request::get("/")
}

/// A [`crate::objects`] `wait_route` check: one rule, to `backend` alone at weight 1.
pub fn one_rule_to(backend: &str) -> impl Fn(&Live) -> Result<(), String> + use<> {
    let want = vec![(backend.to_string(), 1)];
    move |r: &Live| {
        (r.rules() == 1 && r.backends(0) == want)
            .then_some(())
            .ok_or_else(|| format!("want one rule to {}", want[0].0))
    }
}

/// A `wait_route` check, the tutorial's step 2: two rules; `traffic: test` reaches `candidate`,
/// every other request `primary` (each answering with its own `app-version`).
pub fn canary_split(
    primary: &str,
    candidate: &str,
) -> impl Fn(&Live) -> Result<(), String> + use<> {
    let serves = |v: &str| vec![(v.to_string(), Some(v.to_string()))];
    let (primary, candidate) = (serves(primary), serves(candidate));
    move |r: &Live| {
        (r.rules() == 2
            && r.serves(&test_request()) == candidate
            && r.serves(&plain_request()) == primary)
            .then_some(())
            .ok_or_else(|| {
                format!(
                    "want traffic: test -> {}, others -> {}",
                    candidate[0].0, primary[0].0
                )
            })
    }
}
