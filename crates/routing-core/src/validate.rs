//! Validation of a routemap spec against the planner's rules, the Gateway API CRD (v1.6.1: its
//! patterns, lengths and CEL rules) and what gateways accept of regular expressions.
//!
//! Limits are checked over *all* declared versions, not just the available ones, so whether a
//! spec is valid never depends on readiness: a release that is accepted now cannot start failing
//! when a candidate becomes ready. Counts are checked before anything is looked at per item, so
//! the work of judging a spec is bounded by the limits, not by its size; regular expressions are
//! compiled once here and kept ([`crate::regex::Regexes`]).

use std::collections::{HashMap, HashSet};
use std::fmt::Display;

use crate::error::SpecError;
use crate::names::{
    check_dns_label, check_dns_subdomain, check_group, check_header_name, check_hostname,
    check_kind, check_port, shown,
};
use crate::regex::{MAX_ROUTEMAP_PROGRAM_SIZE, Regexes};
use crate::route::GATEWAY_GROUP;
use crate::spec::{
    MatchSpec, ParentRefSpec, PathMatchType, RouteMapSpec, Strategy, ValueMatchSpec,
    ValueMatchType, VersionSpec,
};

/// Gateway API: rules per route.
pub const MAX_RULES: usize = 16;
/// Gateway API: matches per rule.
pub const MAX_MATCHES_PER_RULE: usize = 64;
/// Gateway API: matches across all rules.
pub const MAX_MATCHES_TOTAL: usize = 128;
/// Gateway API: headers (or query params) per match.
pub const MAX_HEADERS_PER_MATCH: usize = 16;
/// Gateway API: backendRefs per rule.
pub const MAX_BACKENDS: usize = 16;
/// Gateway API: filters per rule.
pub const MAX_FILTERS: usize = 16;
/// Gateway API: parentRefs per route.
pub const MAX_PARENT_REFS: usize = 32;
/// Gateway API: hostnames per route.
pub const MAX_HOSTNAMES: usize = 16;
/// Gateway API: largest backend weight.
pub const MAX_WEIGHT: u32 = 1_000_000;
/// Versions per routemap under any strategy: the most any strategy can route (`mirror`: the
/// primary and 16 mirrors), so `none` cannot hold an unbounded list either.
pub const MAX_VERSIONS: usize = MAX_FILTERS + 1;
/// Resources per version: every resource event re-judges its versions, so the list is bounded.
pub const MAX_RESOURCES: usize = 16;

type Result<T = ()> = std::result::Result<T, SpecError>;

pub mod guard;

/// Validates a whole spec.
pub fn validate(spec: &RouteMapSpec) -> Result {
    validate_and_compile(spec).map(|_| ())
}

/// Validates a whole spec and returns its compiled regular expressions. Those the spec already
/// holds (a spec validated before) are reused, not compiled again.
pub fn validate_and_compile(spec: &RouteMapSpec) -> Result<Regexes> {
    validate_route(spec)?;
    validate_limits(spec)?;
    let mut regexes = RegexChecker::new(&spec.regexes);
    let mut names = HashSet::new();
    for (i, v) in spec.versions.iter().enumerate() {
        validate_version(spec.strategy, i, v, &mut regexes)?;
        if !names.insert(v.name.as_str()) {
            return Err(SpecError::field(
                format!("versions[{i}].name"),
                format!("duplicate version name {}", shown(&v.name)),
            ));
        }
    }
    guard::validate_guard(spec)?;
    Ok(regexes.finish().validated())
}

/// Compiles each regex once, reusing those already compiled, and keeps the routemap's budget.
struct RegexChecker<'a> {
    known: &'a Regexes,
    compiled: HashMap<Box<str>, (regex_lite::Regex, usize)>,
    /// Sum of the estimated program sizes, counting each occurrence (a gateway compiles each).
    total: usize,
}

impl<'a> RegexChecker<'a> {
    fn new(known: &'a Regexes) -> Self {
        RegexChecker {
            known,
            compiled: HashMap::new(),
            total: 0,
        }
    }

    fn check(&mut self, at: &dyn Display, pattern: &str) -> Result {
        let size = if let Some((_, size)) = self.known.get(pattern) {
            *size
        } else if let Some((_, size)) = self.compiled.get(pattern) {
            *size
        } else {
            let (regex, size) =
                crate::regex::compile(pattern).map_err(|e| SpecError::field(at.to_string(), e))?;
            self.compiled.insert(pattern.into(), (regex, size));
            size
        };
        self.total += size;
        if self.total > MAX_ROUTEMAP_PROGRAM_SIZE {
            return Err(SpecError::field(
                at.to_string(),
                format!(
                    "the routemap's regular expressions add up to an RE2 program size of over {MAX_ROUTEMAP_PROGRAM_SIZE} (the budget of one routemap); use fewer or simpler ones, or Exact matches"
                ),
            ));
        }
        Ok(())
    }

    fn finish(self) -> Regexes {
        if self.compiled.is_empty() {
            return self.known.clone();
        }
        let mut all = self.compiled;
        for (p, c) in self.known.entries() {
            all.entry(p.clone()).or_insert_with(|| c.clone());
        }
        Regexes::from_map(all)
    }
}

fn validate_route(spec: &RouteMapSpec) -> Result {
    let r = &spec.route;
    check_dns_subdomain(&"route.name", &r.name)?;
    if r.parent_refs.is_empty() {
        return Err(SpecError::field(
            "route.parentRefs",
            "at least one parentRef is required (a Gateway, or the app Service for mesh routing)",
        ));
    }
    if r.parent_refs.len() > MAX_PARENT_REFS {
        return Err(SpecError::field(
            "route.parentRefs",
            format!(
                "{} parentRefs; Gateway API allows at most {MAX_PARENT_REFS}",
                r.parent_refs.len()
            ),
        ));
    }
    for (i, p) in r.parent_refs.iter().enumerate() {
        // Field paths are formatted only for an error: judging a valid spec allocates nothing.
        let at = |field: &'static str| Field("route.parentRefs", i, field);
        if let Some(group) = &p.group {
            check_group(&at("group"), group)?;
        }
        if let Some(kind) = &p.kind {
            check_kind(&at("kind"), kind)?;
        }
        check_dns_subdomain(&at("name"), &p.name)?;
        if let Some(ns) = &p.namespace {
            check_dns_label(&at("namespace"), ns)?;
        }
        if let Some(section) = &p.section_name {
            check_dns_subdomain(&at("sectionName"), section)?;
        }
        if let Some(port) = p.port {
            check_port(&at("port"), port)?;
        }
        // The CRD's CEL rules: references to one parent must each name a distinct section
        // (at most 32 references, so comparing each with those before it is cheap).
        let clash = r.parent_refs[..i].iter().any(|q| {
            parent_of(q) == parent_of(p)
                && (section(p).is_none() || section(q).is_none() || section(q) == section(p))
        });
        if clash {
            return Err(SpecError::field(
                at("sectionName").to_string(),
                format!(
                    "parentRef {} is listed more than once: each reference to one parent needs its own, distinct sectionName (Gateway API)",
                    shown(&p.name)
                ),
            ));
        }
    }
    if r.hostnames.len() > MAX_HOSTNAMES {
        return Err(SpecError::field(
            "route.hostnames",
            format!(
                "{} hostnames; Gateway API allows at most {MAX_HOSTNAMES}",
                r.hostnames.len()
            ),
        ));
    }
    for (i, h) in r.hostnames.iter().enumerate() {
        check_hostname(&format_args!("route.hostnames[{i}]"), h)?;
    }
    Ok(())
}

/// `list[index].field`, formatted only when shown.
struct Field(&'static str, usize, &'static str);

impl Display for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}[{}].{}", self.0, self.1, self.2)
    }
}

/// A parentRef's section, empty the same as none.
fn section(p: &ParentRefSpec) -> Option<&str> {
    p.section_name.as_deref().filter(|s| !s.is_empty())
}

/// A parentRef's parent as the CRD's CEL rules compare them (defaults filled in, an empty
/// namespace the same as none).
fn parent_of(p: &ParentRefSpec) -> (&str, &str, &str, &str) {
    (
        p.group.as_deref().unwrap_or(GATEWAY_GROUP),
        p.kind.as_deref().unwrap_or("Gateway"),
        p.namespace.as_deref().unwrap_or(""),
        p.name.as_str(),
    )
}

fn validate_version(
    strategy: Strategy,
    i: usize,
    v: &VersionSpec,
    regexes: &mut RegexChecker,
) -> Result {
    let at = |field: &str| format!("versions[{i}].{field}");
    check_dns_label(&Field("versions", i, "name"), &v.name)?;
    check_port(&Field("versions", i, "port"), v.port)?;
    if v.resources.is_empty() {
        return Err(SpecError::field(
            at("resources"),
            "at least one resource is required to judge whether the version is ready",
        ));
    }
    if v.resources.len() > MAX_RESOURCES {
        return Err(SpecError::field(
            at("resources"),
            format!(
                "{} resources; at most {MAX_RESOURCES} per version",
                v.resources.len()
            ),
        ));
    }
    for (j, r) in v.resources.iter().enumerate() {
        if r.gvr_short.is_empty() {
            return Err(SpecError::field(
                format!("versions[{i}].resources[{j}].gvrShort"),
                "must not be empty",
            ));
        }
        check_dns_subdomain(&format_args!("versions[{i}].resources[{j}].name"), &r.name)?;
        if let Some(ns) = &r.namespace {
            check_dns_label(&format_args!("versions[{i}].resources[{j}].namespace"), ns)?;
        }
    }
    if let Some(w) = v.weight {
        let max = if strategy == Strategy::Mirror {
            100
        } else {
            MAX_WEIGHT
        };
        if w > max {
            let what = if strategy == Strategy::Mirror {
                "under strategy mirror the weight is the percentage of requests mirrored"
            } else {
                "Gateway API weights"
            };
            return Err(SpecError::field(
                at("weight"),
                format!("{w} is out of range 0-{max} ({what})"),
            ));
        }
    }
    match (strategy, i, &v.matches) {
        (Strategy::Canary, 0, None) => Ok(()),
        (Strategy::Canary, 0, Some(_)) => Err(SpecError::field(
            at("matches"),
            "the primary (version 0) is the catch-all and takes no matches",
        )),
        (Strategy::Canary, _, None) => Err(SpecError::field(
            at("matches"),
            "a canary candidate needs at least one match; without one it would take all traffic",
        )),
        (Strategy::Canary, _, Some(ms)) if ms.is_empty() => Err(SpecError::field(
            at("matches"),
            "a canary candidate needs at least one match; without one it would take all traffic",
        )),
        (Strategy::Canary, _, Some(ms)) => {
            if ms.len() > MAX_MATCHES_PER_RULE {
                return Err(SpecError::field(
                    at("matches"),
                    format!(
                        "{} matches; Gateway API allows at most {MAX_MATCHES_PER_RULE} per rule",
                        ms.len()
                    ),
                ));
            }
            for (j, m) in ms.iter().enumerate() {
                validate_match(&format_args!("versions[{i}].matches[{j}]"), m, regexes)?;
            }
            Ok(())
        }
        (_, _, Some(_)) => Err(SpecError::field(
            at("matches"),
            format!(
                "matches only apply to strategy canary, not {}",
                strategy.as_str()
            ),
        )),
        (_, _, None) => Ok(()),
    }
}

/// A candidate's match. It must name at least one header or query parameter: a request that
/// carries none of them can then never reach the candidate, whichever precedence a gateway gives
/// the match's path (Gateway API leaves the precedence of regular-expression paths to each
/// implementation, and a path or method alone would catch requests that never asked for the
/// candidate).
fn validate_match(at: &dyn Display, m: &MatchSpec, regexes: &mut RegexChecker) -> Result {
    check_value_matches(&format_args!("{at}.headers"), &m.headers, true)?;
    check_value_matches(&format_args!("{at}.queryParams"), &m.query_params, false)?;
    if m.headers.is_empty() && m.query_params.is_empty() {
        return Err(SpecError::field(
            at.to_string(),
            "a candidate's match needs at least one header or query parameter condition: a path or method alone (of any type, e.g. RegularExpression \"/.*\") would catch requests that do not ask for the candidate",
        ));
    }
    if let Some(p) = &m.path {
        let kind = p.kind.unwrap_or(PathMatchType::PathPrefix);
        let value = p.value.as_deref().unwrap_or("/");
        let at = format_args!("{at}.path.value");
        check_path(&at, kind, value)?;
        if kind == PathMatchType::RegularExpression {
            regexes.check(&at, value)?;
        }
    }
    for (list, name) in [(&m.headers, "headers"), (&m.query_params, "queryParams")] {
        for (k, h) in list.iter().enumerate() {
            if h.kind == Some(ValueMatchType::RegularExpression) {
                regexes.check(&format_args!("{at}.{name}[{k}].value"), &h.value)?;
            }
        }
    }
    Ok(())
}

fn check_value_matches(at: &dyn Display, list: &[ValueMatchSpec], header: bool) -> Result {
    if list.len() > MAX_HEADERS_PER_MATCH {
        return Err(SpecError::field(
            at.to_string(),
            format!(
                "{} conditions; Gateway API allows at most {MAX_HEADERS_PER_MATCH}",
                list.len()
            ),
        ));
    }
    let mut seen = HashSet::new();
    for (k, h) in list.iter().enumerate() {
        check_header_name(&format_args!("{at}[{k}].name"), &h.name)?;
        let key = if header {
            h.name.to_ascii_lowercase()
        } else {
            h.name.clone()
        };
        if !seen.insert(key) {
            return Err(SpecError::field(
                format!("{at}[{k}].name"),
                format!("{} is listed twice in one match", shown(&h.name)),
            ));
        }
        let max = if header { 4096 } else { 1024 };
        if h.value.is_empty() || h.value.len() > max {
            return Err(SpecError::field(
                format!("{at}[{k}].value"),
                format!("must be 1-{max} characters"),
            ));
        }
        let printable = h
            .value
            .bytes()
            .all(|b| (b' '..=b'~').contains(&b) || b == b'\t');
        if !printable || h.value.starts_with([' ', '\t']) || h.value.ends_with([' ', '\t']) {
            return Err(SpecError::field(
                format!("{at}[{k}].value"),
                format!(
                    "{} must be visible ASCII, without leading or trailing blanks",
                    shown(&h.value)
                ),
            ));
        }
    }
    Ok(())
}

/// Path values: the CRD's CEL rules for `Exact` and `PathPrefix` (absolute, no `//`, `/./`,
/// `/../`, `%2f`, `#`, only URI path characters with `%` followed by two hex digits).
fn check_path(at: &dyn Display, kind: PathMatchType, value: &str) -> Result {
    if value.is_empty() || value.len() > 1024 {
        return Err(SpecError::field(
            at.to_string(),
            "must be 1-1024 characters",
        ));
    }
    if kind == PathMatchType::RegularExpression {
        return Ok(());
    }
    let b = value.as_bytes();
    let hex = |i: usize| b.get(i).is_some_and(u8::is_ascii_hexdigit);
    let escapes_ok = b
        .iter()
        .enumerate()
        .all(|(i, c)| *c != b'%' || (hex(i + 1) && hex(i + 2)));
    let bad = !value.starts_with('/')
        || ["//", "/./", "/../", "%2f", "%2F", "#"]
            .iter()
            .any(|s| value.contains(s))
        || value.ends_with("/..")
        || value.ends_with("/.")
        || !escapes_ok
        || !b
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || b"-/._~!$&'()*+,;=:@%".contains(c));
    if bad {
        Err(SpecError::field(
            at.to_string(),
            format!(
                "{} is not a valid path (must start with '/', no '//', '/./', '/../', '%2f' or '#', '%' only before two hex digits)",
                shown(value)
            ),
        ))
    } else {
        Ok(())
    }
}

/// Counts first: they bound the work of every other check.
fn validate_limits(spec: &RouteMapSpec) -> Result {
    let n = spec.versions.len();
    if n == 0 {
        return Err(SpecError::field(
            "versions",
            "at least one version is required (index 0 is the primary)",
        ));
    }
    match spec.strategy {
        Strategy::None if n > MAX_VERSIONS => Err(SpecError::field(
            "versions",
            format!("{n} versions; at most {MAX_VERSIONS}"),
        )),
        Strategy::None => Ok(()),
        Strategy::Canary => {
            if n > MAX_RULES {
                return Err(SpecError::field(
                    "versions",
                    format!(
                        "{n} versions make {n} rules under canary; Gateway API allows at most {MAX_RULES}"
                    ),
                ));
            }
            let total: usize = 1 + spec
                .versions
                .iter()
                .map(|v| v.matches.as_ref().map_or(0, Vec::len))
                .sum::<usize>();
            if total > MAX_MATCHES_TOTAL {
                return Err(SpecError::field(
                    "versions",
                    format!(
                        "{total} matches in all; Gateway API allows at most {MAX_MATCHES_TOTAL} per route"
                    ),
                ));
            }
            Ok(())
        }
        Strategy::BlueGreen if n > MAX_BACKENDS => Err(SpecError::field(
            "versions",
            format!(
                "{n} versions make {n} backendRefs in one rule under blue-green; Gateway API allows at most {MAX_BACKENDS}"
            ),
        )),
        Strategy::Mirror if n - 1 > MAX_FILTERS => Err(SpecError::field(
            "versions",
            format!(
                "{} candidates make {} mirror filters; Gateway API allows at most {MAX_FILTERS}",
                n - 1,
                n - 1
            ),
        )),
        Strategy::BlueGreen | Strategy::Mirror => Ok(()),
    }
}

impl RouteMapSpec {
    /// Checks everything the planner and the Gateway API rely on. See the module doc.
    pub fn validate(&self) -> Result {
        validate(self)
    }
}
