//! The guard's part of the spec: how often and over what window each candidate is judged from
//! Prometheus, the objectives it must meet, and which metric names to ask for.
//!
//! This module holds the data and the query template language (its variables, parsing and
//! substitution), so that validation here and rendering in the `iter8-guard` crate share one
//! list of variables. Judging, the Prometheus API and the per-candidate state live in
//! `iter8-guard`; validation rules are in [`crate::validate`].

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::duration::PromDuration;

/// Default of `guard.interval`.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
/// Default of `guard.window`.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(60);
/// Default of `guard.minRequests`.
pub const DEFAULT_MIN_REQUESTS: u64 = 20;
/// Default of `guard.failAfter`.
pub const DEFAULT_FAIL_AFTER: u32 = 2;

/// `guard` in a routemap spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GuardSpec {
    /// Base URL of the Prometheus HTTP API; the controller's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<String>,
    /// How often each candidate is judged.
    #[serde(default = "default_interval")]
    pub interval: PromDuration,
    /// The range every query covers.
    #[serde(default = "default_window")]
    pub window: PromDuration,
    /// Fewer requests than this in the window: the verdict is unknown (not enough traffic).
    #[serde(default = "default_min_requests")]
    pub min_requests: u64,
    /// Failing verdicts in a row before the candidate is withdrawn.
    #[serde(default = "default_fail_after")]
    pub fail_after: u32,
    /// Count an unknown verdict as failing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unknown_fails: bool,
    /// What a candidate must meet; at least one.
    pub objectives: Objectives,
    /// Which metric names the queries use.
    pub metrics: MetricsPreset,
    /// The queries, with `metrics: custom` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queries: Option<CustomQueries>,
}

fn default_interval() -> PromDuration {
    PromDuration(DEFAULT_INTERVAL)
}
fn default_window() -> PromDuration {
    PromDuration(DEFAULT_WINDOW)
}
fn default_min_requests() -> u64 {
    DEFAULT_MIN_REQUESTS
}
fn default_fail_after() -> u32 {
    DEFAULT_FAIL_AFTER
}

/// The limits a candidate is held to. Each is optional; validation asks for at least one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Objectives {
    /// Largest share of 5xx answers in the window, 0-1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_rate: Option<Ratio>,
    /// Largest 99th percentile latency in the window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_p99: Option<PromDuration>,
}

/// A number the spec holds as a share (0-1 once validated).
///
/// Compared by bits so that the spec can stay `Eq` (the controller compares specs to see what
/// changed); `0.0` and `-0.0` differ, which only means a spec edit is seen as a change.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Ratio(pub f64);

impl PartialEq for Ratio {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}
impl Eq for Ratio {}

/// Where the queries' metric names come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MetricsPreset {
    /// Envoy cluster statistics (`envoy_cluster_upstream_rq_*`).
    Envoy,
    /// Istio standard metrics (`istio_requests_total`, ...).
    Istio,
    /// Linkerd proxy metrics (`response_total`, ...).
    Linkerd,
    /// The user's own templates in `queries`.
    Custom,
}

impl MetricsPreset {
    /// The name used in the spec.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricsPreset::Envoy => "envoy",
            MetricsPreset::Istio => "istio",
            MetricsPreset::Linkerd => "linkerd",
            MetricsPreset::Custom => "custom",
        }
    }
}

/// PromQL templates of `metrics: custom`: `requests` always, one per objective set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CustomQueries {
    /// Requests the candidate answered in the window (a count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<String>,
    /// Share of 5xx answers in the window (0-1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_rate: Option<String>,
    /// 99th percentile latency in the window, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_p99: Option<String>,
}

/// A variable of the query templates, written `{{ name }}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Variable {
    /// The candidate's namespace.
    Namespace,
    /// The candidate's backend Service name.
    Service,
    /// The candidate's version name (its `app-version` value).
    Version,
    /// The candidate's Deployment name (its `deploy` resource; the version name when none).
    Deployment,
    /// The candidate's backend Service port.
    Port,
    /// The query window as Prometheus duration text (`1m`).
    Window,
}

impl Variable {
    /// Every variable, in the order error messages list them.
    pub const ALL: [Variable; 6] = [
        Variable::Namespace,
        Variable::Service,
        Variable::Version,
        Variable::Deployment,
        Variable::Port,
        Variable::Window,
    ];

    /// The name written between the braces.
    pub fn name(self) -> &'static str {
        match self {
            Variable::Namespace => "namespace",
            Variable::Service => "service",
            Variable::Version => "version",
            Variable::Deployment => "deployment",
            Variable::Port => "port",
            Variable::Window => "window",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Variable::ALL.into_iter().find(|v| v.name() == name)
    }
}

/// A template that does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateError {
    /// `{{ x }}` with an `x` that is not a [`Variable`].
    UnknownVariable(String),
    /// `{{` without its `}}`.
    Unclosed,
    /// Nothing but blanks.
    Empty,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TemplateError::UnknownVariable(name) => {
                let known: Vec<&str> = Variable::ALL.iter().map(|v| v.name()).collect();
                // Cut: the name is the user's text, and errors end up in Events.
                let name: String = name.chars().take(64).collect();
                write!(
                    f,
                    "unknown variable {{{{ {name} }}}} (known: {})",
                    known.join(", ")
                )
            }
            TemplateError::Unclosed => f.write_str("\"{{\" without its closing \"}}\""),
            TemplateError::Empty => f.write_str("must not be empty"),
        }
    }
}

/// One piece of a parsed template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece<'a> {
    /// Text copied as it is.
    Text(&'a str),
    /// A variable's value.
    Var(Variable),
}

/// Splits a template into text and variables. `{{ name }}` and `{{name}}` are the same.
pub fn parse_template(template: &str) -> Result<Vec<Piece<'_>>, TemplateError> {
    if template.trim().is_empty() {
        return Err(TemplateError::Empty);
    }
    let mut pieces = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        if open > 0 {
            pieces.push(Piece::Text(&rest[..open]));
        }
        let after = &rest[open + 2..];
        let close = after.find("}}").ok_or(TemplateError::Unclosed)?;
        let name = after[..close].trim();
        let var = Variable::from_name(name)
            .ok_or_else(|| TemplateError::UnknownVariable(name.to_string()))?;
        pieces.push(Piece::Var(var));
        rest = &after[close + 2..];
    }
    if !rest.is_empty() {
        pieces.push(Piece::Text(rest));
    }
    Ok(pieces)
}

/// Fills a template's variables with `value`. Fails only as [`parse_template`] does.
pub fn render_template(
    template: &str,
    value: impl Fn(Variable) -> String,
) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(template.len() + 64);
    for piece in parse_template(template)? {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Var(v) => out.push_str(&value(v)),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_split_into_text_and_variables() {
        let pieces = parse_template("a{{ service }}b{{window}}").expect("parses");
        assert_eq!(
            pieces,
            [
                Piece::Text("a"),
                Piece::Var(Variable::Service),
                Piece::Text("b"),
                Piece::Var(Variable::Window)
            ]
        );
    }

    #[test]
    fn unknown_variables_name_the_known_ones() {
        let e = parse_template("x{{ pod }}").expect_err("pod is unknown");
        assert_eq!(
            e.to_string(),
            "unknown variable {{ pod }} (known: namespace, service, version, deployment, port, window)"
        );
        assert_eq!(parse_template("x{{ pod"), Err(TemplateError::Unclosed));
        assert_eq!(parse_template("  "), Err(TemplateError::Empty));
    }

    #[test]
    fn rendering_fills_every_variable() {
        let out = render_template("{{namespace}}/{{ service }}:{{ port }}", |v| {
            v.name().to_uppercase()
        })
        .expect("renders");
        assert_eq!(out, "NAMESPACE/SERVICE:PORT");
    }
}
