//! Where requests go: a request that each candidate's match selects, and the answer of
//! `routing_core::explain` (Gateway API precedence) for it, as the views show them.

use routing_core::route::Match;
use routing_core::spec::{MatchSpec, PathMatchType, ValueMatchType};
use routing_core::{HttpRoute, Request, explain};
use serde::Serialize;

/// One backend that serves a request, with its share.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ShareView {
    /// Backend (the version's Service).
    pub backend: String,
    /// The `app-version` header it answers with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_version: Option<String>,
    /// Share of the rule's traffic, in percent.
    pub percent: f64,
}

/// Which rule of a route serves a request, and who answers.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    /// The winning rule; `None` when no rule matches (404).
    pub rule: Option<usize>,
    /// The winning match, described.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matched: Option<String>,
    /// Backends with a positive weight.
    pub backends: Vec<ShareView>,
    /// Mirror targets and their percent.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mirrors: Vec<(String, u32)>,
}

impl Outcome {
    /// `routing_core::explain` of `req` on `route`.
    pub fn of(route: &HttpRoute, req: &Request) -> Self {
        match explain(route, req) {
            None => Outcome {
                rule: None,
                matched: None,
                backends: Vec::new(),
                mirrors: Vec::new(),
            },
            Some(e) => Outcome {
                rule: Some(e.rule),
                matched: Some(describe_match(&e.matched)),
                backends: e
                    .backends
                    .iter()
                    .map(|s| ShareView {
                        backend: s.backend.clone(),
                        app_version: s.app_version.clone(),
                        percent: (s.percent() * 10.0).round() / 10.0,
                    })
                    .collect(),
                mirrors: e.mirrors,
            },
        }
    }

    /// The same backends, shares and mirrors (the rule's index may differ: a route with a
    /// candidate rule more numbers its rules differently).
    pub fn same_answer(&self, other: &Outcome) -> bool {
        self.rule.is_some() == other.rule.is_some()
            && self.backends == other.backends
            && self.mirrors == other.mirrors
    }

    /// The backend that takes all of the request, if one does.
    pub fn single(&self) -> Option<&str> {
        match self.backends.as_slice() {
            [one] => Some(&one.backend),
            _ => None,
        }
    }

    /// `httpbin-1 [rule 0]`, `httpbin-0 30%, httpbin-1 70% [rule 0]`, `no rule matches (404)`.
    pub fn summary(&self) -> String {
        let Some(rule) = self.rule else {
            return "no rule matches (404)".into();
        };
        let single = self.backends.len() == 1;
        let mut parts: Vec<String> = self
            .backends
            .iter()
            .map(|b| {
                if single {
                    b.backend.clone()
                } else {
                    format!("{} {}%", b.backend, b.percent)
                }
            })
            .collect();
        if parts.is_empty() {
            parts.push("no backend with weight (500)".into());
        }
        for (name, percent) in &self.mirrors {
            parts.push(format!("mirrored to {name} at {percent}%"));
        }
        format!("{} [rule {rule}]", parts.join(", "))
    }
}

/// A request shown with its method, path and headers: `GET / [traffic: test]`.
pub fn describe_request(req: &Request) -> String {
    let headers: Vec<String> = req
        .headers
        .iter()
        .map(|(n, v)| format!("{n}: {v}"))
        .collect();
    if headers.is_empty() {
        format!("{} {}", req.method, req.path)
    } else {
        format!("{} {} [{}]", req.method, req.path, headers.join(", "))
    }
}

/// A request that `m` selects, or why none can be made up (a regular expression).
pub fn sample_request(m: &MatchSpec) -> Result<Request, String> {
    let mut path = match &m.path {
        None => "/".to_string(),
        Some(p) => match p.kind.unwrap_or(PathMatchType::PathPrefix) {
            PathMatchType::RegularExpression => {
                return Err("a path regular expression: no request is made up for it".into());
            }
            _ => p.value.clone().unwrap_or_else(|| "/".into()),
        },
    };
    let mut req = Request::get("/");
    if let Some(method) = m.method {
        req.method = method.as_str().into();
    }
    for h in &m.headers {
        if h.kind == Some(ValueMatchType::RegularExpression) {
            return Err(format!(
                "header {} is a regular expression: no request is made up for it",
                h.name
            ));
        }
        req.headers.push((h.name.clone(), h.value.clone()));
    }
    let mut query = Vec::new();
    for q in &m.query_params {
        if q.kind == Some(ValueMatchType::RegularExpression) {
            return Err(format!(
                "query parameter {} is a regular expression: no request is made up for it",
                q.name
            ));
        }
        query.push(format!("{}={}", q.name, q.value));
    }
    if !query.is_empty() {
        path = format!("{path}?{}", query.join("&"));
    }
    req.path = path;
    Ok(req)
}

/// A match as the user wrote it: `traffic: test`, `path /v2*`, `GET`, `?beta=1`; `everything`
/// for a match without conditions.
pub fn describe_match_spec(m: &MatchSpec) -> String {
    let mut parts = Vec::new();
    if let Some(p) = &m.path {
        let value = p.value.as_deref().unwrap_or("/");
        parts.push(path_text(
            p.kind.unwrap_or(PathMatchType::PathPrefix),
            value,
        ));
    }
    if let Some(method) = m.method {
        parts.push(method.as_str().to_string());
    }
    for h in &m.headers {
        parts.push(value_text(
            h.kind.unwrap_or(ValueMatchType::Exact),
            &h.name,
            &h.value,
            ": ",
        ));
    }
    for q in &m.query_params {
        parts.push(format!(
            "?{}",
            value_text(
                q.kind.unwrap_or(ValueMatchType::Exact),
                &q.name,
                &q.value,
                "="
            )
        ));
    }
    parts.retain(|p| !p.is_empty());
    if parts.is_empty() {
        "everything".into()
    } else {
        parts.join(", ")
    }
}

/// A route's match (defaults filled in), in the same words.
pub fn describe_match(m: &Match) -> String {
    let mut parts = vec![path_text(m.path.kind, &m.path.value)];
    if let Some(method) = m.method {
        parts.push(method.as_str().to_string());
    }
    for h in &m.headers {
        parts.push(value_text(h.kind, &h.name, &h.value, ": "));
    }
    for q in &m.query_params {
        parts.push(format!("?{}", value_text(q.kind, &q.name, &q.value, "=")));
    }
    parts.retain(|p| !p.is_empty());
    if parts.is_empty() {
        "everything (path prefix /)".into()
    } else {
        parts.join(", ")
    }
}

fn path_text(kind: PathMatchType, value: &str) -> String {
    match kind {
        PathMatchType::PathPrefix if value == "/" => String::new(),
        PathMatchType::PathPrefix => format!("path {value}*"),
        PathMatchType::Exact => format!("path = {value}"),
        PathMatchType::RegularExpression => format!("path ~ {value}"),
    }
}

fn value_text(kind: ValueMatchType, name: &str, value: &str, sep: &str) -> String {
    match kind {
        ValueMatchType::Exact => format!("{name}{sep}{value}"),
        ValueMatchType::RegularExpression => format!("{name} ~ {value}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use routing_core::spec::{PathMatchSpec, ValueMatchSpec};

    #[test]
    fn a_header_match_makes_a_request_it_selects() {
        let m = MatchSpec {
            headers: vec![ValueMatchSpec {
                kind: None,
                name: "traffic".into(),
                value: "test".into(),
            }],
            path: Some(PathMatchSpec {
                kind: None,
                value: Some("/v2".into()),
            }),
            ..Default::default()
        };
        let req = sample_request(&m).expect("exact values");
        assert_eq!(describe_request(&req), "GET /v2 [traffic: test]");
        assert_eq!(describe_match_spec(&m), "path /v2*, traffic: test");
    }

    #[test]
    fn a_regular_expression_makes_no_request() {
        let m = MatchSpec {
            headers: vec![ValueMatchSpec {
                kind: Some(ValueMatchType::RegularExpression),
                name: "user".into(),
                value: "a.*".into(),
            }],
            ..Default::default()
        };
        assert!(sample_request(&m).is_err());
        assert_eq!(describe_match_spec(&m), "user ~ a.*");
    }
}
