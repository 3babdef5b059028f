//! `explain`: which backend of a route serves a request, under Gateway API precedence.
//!
//! Among all matches of all rules that the request satisfies, the winner is the one with, in
//! order: an `Exact` path; the longest `PathPrefix`; a method condition; the most header
//! conditions; the most query conditions; then the first rule in list order. (Across routes,
//! creation time and name would come next; one route is explained at a time.)
//!
//! Gateway API leaves the precedence of `RegularExpression` path matches to each implementation,
//! and the regex dialect of header and query matches too. Where the answer depends on either,
//! the [`Explanation`] says so ([`Explanation::implementation_specific`]) instead of claiming
//! one gateway's order: the rule it names is then only what this crate's order gives.

use crate::keys::APP_VERSION_HEADER;
use crate::regex::Regexes;
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
    /// Why a gateway may answer otherwise, where Gateway API leaves the answer to it.
    pub implementation_specific: Option<String>,
}

/// Explains a request against one route; `None` means no rule matches (a 404). Compiles the
/// route's regexes for this one call: to explain many requests, or with a validated spec's
/// regexes at hand, use [`explain_with`].
pub fn explain(route: &HttpRoute, req: &Request) -> Option<Explanation> {
    explain_with(route, req, &Regexes::for_route(route))
}

/// Explains a request with regexes compiled beforehand (the spec's, or
/// [`Regexes::for_route`]); a regex they do not hold matches nothing.
pub fn explain_with(route: &HttpRoute, req: &Request, regexes: &Regexes) -> Option<Explanation> {
    let (path, query) = req.split();
    let mut best: Option<(Precedence, usize, &Match)> = None;
    let mut all: Vec<(usize, &Match)> = Vec::new();
    for (i, rule) in route.spec.rules.iter().enumerate() {
        for m in &rule.matches {
            if !matches(m, req, path, &query, regexes) {
                continue;
            }
            all.push((i, m));
            let key = precedence(m);
            // Strictly greater wins; equal keeps the earlier rule.
            if best.as_ref().is_none_or(|(k, _, _)| key > *k) {
                best = Some((key, i, m));
            }
        }
    }
    let (_, i, m) = best?;
    let implementation_specific = implementation_specific(i, m, &all);
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
        implementation_specific,
    })
}

fn regex_path(m: &Match) -> bool {
    m.path.kind == PathMatchType::RegularExpression
}

fn regex_value(m: &Match) -> bool {
    m.headers
        .iter()
        .chain(&m.query_params)
        .any(|v| v.kind == ValueMatchType::RegularExpression)
}

/// The note for a decision that rests on what Gateway API leaves to implementations: another
/// rule also matches and a `RegularExpression` path is in the comparison, or the winning match
/// holds only through a regex value (whose dialect is the gateway's).
fn implementation_specific(winner: usize, m: &Match, all: &[(usize, &Match)]) -> Option<String> {
    let mut others: Vec<usize> = all
        .iter()
        .filter(|(i, o)| *i != winner && (regex_path(m) || regex_path(o)))
        .map(|(i, _)| *i)
        .collect();
    others.dedup();
    let mut notes = Vec::new();
    if !others.is_empty() {
        let list: Vec<String> = others.iter().map(|i| format!("rule {i}")).collect();
        notes.push(format!(
            "{} also match{}; Gateway API leaves the precedence of RegularExpression path matches to each gateway, so rule {winner} is this tool's order, not a promise",
            list.join(", "),
            if others.len() == 1 { "es" } else { "" }
        ));
    }
    if regex_value(m) {
        notes.push(
            "the match holds through a RegularExpression header or query value, whose dialect each gateway chooses (this tool reads RE2 syntax)"
                .to_string(),
        );
    }
    (!notes.is_empty()).then(|| format!("implementation-specific: {}", notes.join("; ")))
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

/// Whether a request satisfies one match: the matcher `explain` uses, with `regexes` holding the
/// match's regexes.
pub fn match_applies(m: &Match, req: &Request, regexes: &Regexes) -> bool {
    let (path, query) = req.split();
    matches(m, req, path, &query, regexes)
}

fn matches(
    m: &Match,
    req: &Request,
    path: &str,
    query: &[(&str, &str)],
    regexes: &Regexes,
) -> bool {
    let path_ok = match m.path.kind {
        PathMatchType::Exact => path == m.path.value,
        PathMatchType::PathPrefix => prefix_matches(&m.path.value, path),
        PathMatchType::RegularExpression => regexes.full_match(&m.path.value, path),
    };
    path_ok
        && m.method
            .is_none_or(|meth| meth.as_str().eq_ignore_ascii_case(&req.method))
        && m.headers.iter().all(|h| {
            req.header_value(&h.name)
                .is_some_and(|v| value_matches(h.kind, &h.value, v, regexes))
        })
        && m.query_params.iter().all(|q| {
            query
                .iter()
                .find(|(n, _)| *n == q.name)
                .is_some_and(|(_, v)| value_matches(q.kind, &q.value, v, regexes))
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

fn value_matches(kind: ValueMatchType, want: &str, got: &str, regexes: &Regexes) -> bool {
    match kind {
        ValueMatchType::Exact => want == got,
        ValueMatchType::RegularExpression => regexes.full_match(want, got),
    }
}
