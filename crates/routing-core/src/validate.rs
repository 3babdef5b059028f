//! Validation of a routemap spec against the planner's rules and the Gateway API's limits.
//!
//! Limits are checked over *all* declared versions, not just the available ones, so whether a
//! spec is valid never depends on readiness: a release that is accepted now cannot start failing
//! when a candidate becomes ready.

use std::collections::HashSet;
use std::fmt::Display;

use crate::error::SpecError;
use crate::spec::{MatchSpec, PathMatchType, RouteMapSpec, Strategy, ValueMatchSpec, VersionSpec};

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

type Result<T = ()> = std::result::Result<T, SpecError>;

/// Validates a whole spec.
pub fn validate(spec: &RouteMapSpec) -> Result {
    validate_route(spec)?;
    if spec.versions.is_empty() {
        return Err(SpecError::field(
            "versions",
            "at least one version is required (index 0 is the primary)",
        ));
    }
    let mut names = HashSet::new();
    for (i, v) in spec.versions.iter().enumerate() {
        validate_version(spec.strategy, i, v)?;
        if !names.insert(v.name.as_str()) {
            return Err(SpecError::field(
                format!("versions[{i}].name"),
                format!("duplicate version name {:?}", v.name),
            ));
        }
    }
    validate_limits(spec)
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
        check_dns_subdomain(&format_args!("route.parentRefs[{i}].name"), &p.name)?;
        if let Some(ns) = &p.namespace {
            check_dns_label(&format_args!("route.parentRefs[{i}].namespace"), ns)?;
        }
        if let Some(port) = p.port {
            check_port(&format_args!("route.parentRefs[{i}].port"), port)?;
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

fn validate_version(strategy: Strategy, i: usize, v: &VersionSpec) -> Result {
    let at = |field: &str| format!("versions[{i}].{field}");
    check_dns_label(&format_args!("versions[{i}].name"), &v.name)?;
    check_port(&format_args!("versions[{i}].port"), v.port)?;
    if v.resources.is_empty() {
        return Err(SpecError::field(
            at("resources"),
            "at least one resource is required to judge whether the version is ready",
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
                validate_match(&format_args!("versions[{i}].matches[{j}]"), m)?;
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

fn validate_match(at: &dyn Display, m: &MatchSpec) -> Result {
    if let Some(p) = &m.path {
        let kind = p.kind.unwrap_or(PathMatchType::PathPrefix);
        let value = p.value.as_deref().unwrap_or("/");
        check_path(&format_args!("{at}.path.value"), kind, value)?;
    }
    check_value_matches(&format_args!("{at}.headers"), &m.headers, true)?;
    check_value_matches(&format_args!("{at}.queryParams"), &m.query_params, false)?;
    let catch_all_path = match &m.path {
        None => true,
        Some(p) => {
            p.kind.unwrap_or(PathMatchType::PathPrefix) == PathMatchType::PathPrefix
                && p.value.as_deref().unwrap_or("/") == "/"
        }
    };
    if catch_all_path && m.headers.is_empty() && m.query_params.is_empty() && m.method.is_none() {
        return Err(SpecError::field(
            at.to_string(),
            "matches every request and would take all traffic from the primary; add a header, query parameter, method or path condition",
        ));
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
                format!("{:?} is listed twice in one match", h.name),
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
                    "{:?} must be visible ASCII, without leading or trailing blanks",
                    h.value
                ),
            ));
        }
        if h.kind == Some(crate::spec::ValueMatchType::RegularExpression) {
            regex_lite::Regex::new(&h.value).map_err(|e| {
                SpecError::field(
                    format!("{at}[{k}].value"),
                    format!("invalid regular expression: {e}"),
                )
            })?;
        }
    }
    Ok(())
}

/// Gateway API HeaderName: 1-256 token characters.
fn check_header_name(at: &dyn Display, name: &str) -> Result {
    let ok = !name.is_empty()
        && name.len() <= 256
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(SpecError::field(
            at.to_string(),
            format!("{name:?} is not a valid header name (1-256 of A-Z a-z 0-9 !#$%&'*+-.^_`|~)"),
        ))
    }
}

fn check_path(at: &dyn Display, kind: PathMatchType, value: &str) -> Result {
    if value.is_empty() || value.len() > 1024 {
        return Err(SpecError::field(
            at.to_string(),
            "must be 1-1024 characters",
        ));
    }
    match kind {
        PathMatchType::RegularExpression => {
            regex_lite::Regex::new(value).map(|_| ()).map_err(|e| {
                SpecError::field(at.to_string(), format!("invalid regular expression: {e}"))
            })
        }
        PathMatchType::Exact | PathMatchType::PathPrefix => {
            let bad = !value.starts_with('/')
                || ["//", "/./", "/../", "%2f", "%2F", "#"]
                    .iter()
                    .any(|s| value.contains(s))
                || value.ends_with("/..")
                || value.ends_with("/.")
                || !value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-/._~!$&'()*+,;=:@%".contains(&b));
            if bad {
                Err(SpecError::field(
                    at.to_string(),
                    format!(
                        "{value:?} is not a valid path (must start with '/', no '//', '/./', '/../', '%2f' or '#')"
                    ),
                ))
            } else {
                Ok(())
            }
        }
    }
}

fn validate_limits(spec: &RouteMapSpec) -> Result {
    let n = spec.versions.len();
    match spec.strategy {
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

fn check_port(at: &dyn Display, port: u32) -> Result {
    if (1..=65535).contains(&port) {
        Ok(())
    } else {
        Err(SpecError::field(
            at.to_string(),
            format!("{port} is not a port (1-65535)"),
        ))
    }
}

/// RFC 1123 label: lowercase alphanumerics and '-', 1-63, alphanumeric at both ends.
fn check_dns_label(at: &dyn Display, s: &str) -> Result {
    if is_dns_label(s) {
        Ok(())
    } else {
        Err(SpecError::field(
            at.to_string(),
            format!(
                "{s:?} is not a valid name (lowercase letters, digits and '-', 1-63 characters, alphanumeric at both ends)"
            ),
        ))
    }
}

fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// RFC 1123 subdomain: dot-separated labels, at most 253 characters.
fn check_dns_subdomain(at: &dyn Display, s: &str) -> Result {
    if s.len() <= 253 && s.split('.').all(is_dns_label) {
        Ok(())
    } else {
        Err(SpecError::field(
            at.to_string(),
            format!(
                "{s:?} is not a valid name (lowercase RFC 1123 subdomain, at most 253 characters)"
            ),
        ))
    }
}

fn check_hostname(at: &dyn Display, s: &str) -> Result {
    let rest = s.strip_prefix("*.").unwrap_or(s);
    if s.len() <= 253 && rest.split('.').all(is_dns_label) {
        Ok(())
    } else {
        Err(SpecError::field(
            at.to_string(),
            format!("{s:?} is not a valid hostname (lowercase DNS name, optional leading '*.')"),
        ))
    }
}

impl RouteMapSpec {
    /// Checks everything the planner and the Gateway API rely on. See the module doc.
    pub fn validate(&self) -> Result {
        validate(self)
    }
}
