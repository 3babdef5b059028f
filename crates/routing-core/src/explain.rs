//! `explain`: which backend of a route serves a request, under Gateway API precedence.
//!
//! Among all matches of all rules that the request satisfies, the winner is the one with, in
//! order: an `Exact` path; the longest `PathPrefix`; a method condition; the most header
//! conditions; the most query conditions; then the first rule in list order. (Across routes,
//! creation time and name would come next; one route is explained at a time.)

use regex_lite::Regex;

use crate::keys::APP_VERSION_HEADER;
use crate::route::{FilterType, HttpRoute, Match};
use crate::spec::{PathMatchType, ValueMatchType};

/// A request to explain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// HTTP method, e.g. `GET`.
    pub method: String,
    /// Path, optionally with `?query`.
    pub path: String,
    /// Headers (name, value); names are compared case-insensitively, the first value counts.
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// A `GET` of a path with no headers.
    pub fn get(path: &str) -> Self {
        Request {
            method: "GET".into(),
            path: path.into(),
            headers: Vec::new(),
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    fn header_value(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn split(&self) -> (&str, Vec<(&str, &str)>) {
        match self.path.split_once('?') {
            None => (&self.path, Vec::new()),
            Some((p, q)) => (
                p,
                q.split('&')
                    .filter(|kv| !kv.is_empty())
                    .map(|kv| kv.split_once('=').unwrap_or((kv, "")))
                    .collect(),
            ),
        }
    }
}

/// One backend that may serve the request, with its share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    /// Backend Service name.
    pub backend: String,
    /// The `app-version` response header it returns, if set.
    pub app_version: Option<String>,
    /// Its weight.
    pub weight: u32,
    /// Sum of the rule's weights.
    pub total: u32,
}

impl Share {
    /// Percentage of the rule's traffic.
    pub fn percent(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            f64::from(self.weight) * 100.0 / f64::from(self.total)
        }
    }
}

/// The result of explaining one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    /// Index of the winning rule.
    pub rule: usize,
    /// The winning match.
    pub matched: Match,
    /// Backends with a positive weight.
    pub backends: Vec<Share>,
    /// Mirror targets (name, percent).
    pub mirrors: Vec<(String, u32)>,
}

/// Explains a request against one route; `None` means no rule matches (a 404).
pub fn explain(route: &HttpRoute, req: &Request) -> Option<Explanation> {
    let (path, query) = req.split();
    let mut best: Option<(Precedence, usize, &Match)> = None;
    for (i, rule) in route.spec.rules.iter().enumerate() {
        for m in &rule.matches {
            if !matches(m, req, path, &query) {
                continue;
            }
            let key = precedence(m);
            // Strictly greater wins; equal keeps the earlier rule.
            if best.as_ref().is_none_or(|(k, _, _)| key > *k) {
                best = Some((key, i, m));
            }
        }
    }
    let (_, i, m) = best?;
    let rule = &route.spec.rules[i];
    let total: u32 = rule.backend_refs.iter().map(|b| b.weight).sum();
    Some(Explanation {
        rule: i,
        matched: m.clone(),
        backends: rule
            .backend_refs
            .iter()
            .filter(|b| b.weight > 0)
            .map(|b| Share {
                backend: b.name.clone(),
                app_version: b
                    .filters
                    .iter()
                    .filter_map(|f| f.response_header_modifier.as_ref())
                    .flat_map(|h| h.set.iter())
                    .find(|h| h.name.eq_ignore_ascii_case(APP_VERSION_HEADER))
                    .map(|h| h.value.clone()),
                weight: b.weight,
                total,
            })
            .collect(),
        mirrors: rule
            .filters
            .iter()
            .filter(|f| f.kind == FilterType::RequestMirror)
            .filter_map(|f| f.request_mirror.as_ref())
            .map(|m| (m.backend_ref.name.clone(), m.percent))
            .collect(),
    })
}

/// Exact path, prefix length, has method, header count, query count: greater wins.
type Precedence = (bool, usize, bool, usize, usize);

fn precedence(m: &Match) -> Precedence {
    let (exact, len) = match m.path.kind {
        PathMatchType::Exact => (true, m.path.value.len()),
        PathMatchType::PathPrefix => (false, m.path.value.len()),
        PathMatchType::RegularExpression => (false, 0),
    };
    (
        exact,
        len,
        m.method.is_some(),
        m.headers.len(),
        m.query_params.len(),
    )
}

fn matches(m: &Match, req: &Request, path: &str, query: &[(&str, &str)]) -> bool {
    let path_ok = match m.path.kind {
        PathMatchType::Exact => path == m.path.value,
        PathMatchType::PathPrefix => prefix_matches(&m.path.value, path),
        PathMatchType::RegularExpression => full_regex(&m.path.value, path),
    };
    path_ok
        && m.method
            .is_none_or(|meth| meth.as_str().eq_ignore_ascii_case(&req.method))
        && m.headers.iter().all(|h| {
            req.header_value(&h.name)
                .is_some_and(|v| value_matches(h.kind, &h.value, v))
        })
        && m.query_params.iter().all(|q| {
            query
                .iter()
                .find(|(n, _)| *n == q.name)
                .is_some_and(|(_, v)| value_matches(q.kind, &q.value, v))
        })
}

/// Segment-aware prefix: `/v2` matches `/v2` and `/v2/x`, not `/v2x`; a trailing `/` is ignored.
fn prefix_matches(prefix: &str, path: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    if prefix.is_empty() {
        return true;
    }
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

fn value_matches(kind: ValueMatchType, want: &str, got: &str) -> bool {
    match kind {
        ValueMatchType::Exact => want == got,
        ValueMatchType::RegularExpression => full_regex(want, got),
    }
}

fn full_regex(pattern: &str, text: &str) -> bool {
    Regex::new(&format!("^(?:{pattern})$")).is_ok_and(|r| r.is_match(text))
}
