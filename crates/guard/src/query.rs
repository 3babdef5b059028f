//! The PromQL that judges one candidate: a request count and one query per objective, from a
//! preset (Envoy, Istio, Linkerd) or the user's templates, with the candidate's names filled in.
//!
//! Presets are templates in the same language as `metrics: custom` (variables from
//! [`routing_core::guard::Variable`]), rendered by one function, so a user who needs another
//! selector can start from a preset's text (docs/guard.md lists them) and change only that.
//!
//! Every query returns one series: counts and shares are `sum`s over the candidate's series,
//! latencies a `histogram_quantile` over buckets summed `by (le)`. Variable values are DNS names,
//! a port number and a duration, so they never need escaping inside a PromQL string.

use std::fmt;
use std::time::Duration;

use routing_core::duration::format_duration;
use routing_core::guard::{GuardSpec, MetricsPreset, TemplateError, Variable, render_template};
use routing_core::spec::VersionSpec;

/// A candidate as its queries name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The candidate's namespace.
    pub namespace: String,
    /// The version name (the `app-version` value).
    pub version: String,
    /// The backend Service name.
    pub service: String,
    /// The Deployment whose pods serve the version.
    pub deployment: String,
    /// The backend Service port.
    pub port: u32,
}

impl Target {
    /// The target of a routemap version: its Service is the version name (the planner's
    /// backendRef), its Deployment the `deploy` resource it lists (the version name if none, as
    /// the release chart names them alike).
    pub fn of_version(namespace: &str, version: &VersionSpec) -> Self {
        let deployment = version
            .resources
            .iter()
            .find(|r| r.gvr_short == "deploy")
            .map_or(version.name.as_str(), |r| r.name.as_str());
        Target {
            namespace: namespace.to_string(),
            version: version.name.clone(),
            service: version.name.clone(),
            deployment: deployment.to_string(),
            port: version.port,
        }
    }

    fn value(&self, var: Variable, window: Duration) -> String {
        match var {
            Variable::Namespace => self.namespace.clone(),
            Variable::Service => self.service.clone(),
            Variable::Version => self.version.clone(),
            Variable::Deployment => self.deployment.clone(),
            Variable::Port => self.port.to_string(),
            Variable::Window => format_duration(window),
        }
    }
}

/// What a candidate is held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Objective {
    /// Share of 5xx answers (0-1).
    ErrorRate,
    /// 99th percentile latency, in seconds.
    LatencyP99,
}

impl Objective {
    /// The objective's name in the spec (and in Events).
    pub fn as_str(self) -> &'static str {
        match self {
            Objective::ErrorRate => "errorRate",
            Objective::LatencyP99 => "latencyP99",
        }
    }
}

impl fmt::Display for Objective {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One objective's query and limit.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectiveQuery {
    /// Which objective.
    pub objective: Objective,
    /// Its limit in the query's unit: a share for `errorRate`, seconds for `latencyP99`. A
    /// measured value above it fails.
    pub limit: f64,
    /// The PromQL.
    pub query: String,
}

/// Every query that judges one candidate.
#[derive(Debug, Clone, PartialEq)]
pub struct Queries {
    /// Requests the candidate answered in the window.
    pub requests: String,
    /// One per objective set, `errorRate` first.
    pub objectives: Vec<ObjectiveQuery>,
    /// The window the queries cover.
    pub window: Duration,
}

/// Queries cannot be rendered. Validation refuses every spec that would cause this, so it
/// means a spec that skipped validation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// A template does not parse.
    #[error("guard.queries.{field}: {error}")]
    Template {
        /// Which query.
        field: &'static str,
        /// Why.
        error: TemplateError,
    },
    /// `metrics: custom` without the query an objective needs.
    #[error("guard.queries.{0}: missing")]
    Missing(&'static str),
}

/// A preset's three templates.
struct Preset {
    requests: &'static str,
    error_rate: &'static str,
    latency_p99: &'static str,
}

// Why the error-rate numerators end in `or vector(0)`: Envoy, Istio and Linkerd create the
// series of a response class or code only when the first such response passes, so a candidate
// that never answered 5xx has no numerator series at all. Without the `or`, its share would be
// "no data" (unknown) instead of 0, and a healthy candidate could never be judged healthy. The
// denominator keeps no such fallback: no requests at all is rightly "no data".

/// Envoy cluster statistics (`/stats/prometheus` on the admin port), selected by
/// `envoy_cluster_name`.
///
/// Written for our test data plane's naming, read from its code (e2e
/// `gateway/translate/backends.rs`: one cluster per backend Service and port,
/// `<namespace>/<service>/<port>`), so each version has its own series under every strategy;
/// e2e `tests/guard_presets.rs` checks it against Envoy 1.40 scraped by Prometheus. Envoy Gateway
/// names clusters per route rule instead (`httproute/<namespace>/<route>/rule/<index>`): under
/// canary each candidate has a rule of its own, but under blue-green all versions share one
/// rule and so one cluster, which no selector can split. Users of such a gateway use
/// `metrics: custom` with this text and their own `envoy_cluster_name` selector. Names agree
/// with reference/metrics-guard.md; `upstream_rq_time` is in milliseconds, hence `/ 1000`.
const ENVOY: Preset = Preset {
    requests: r#"sum(increase(envoy_cluster_upstream_rq_total{envoy_cluster_name="{{ namespace }}/{{ service }}/{{ port }}"}[{{ window }}]))"#,
    error_rate: r#"(sum(increase(envoy_cluster_upstream_rq_xx{envoy_cluster_name="{{ namespace }}/{{ service }}/{{ port }}",envoy_response_code_class="5"}[{{ window }}])) or vector(0)) / sum(increase(envoy_cluster_upstream_rq_total{envoy_cluster_name="{{ namespace }}/{{ service }}/{{ port }}"}[{{ window }}]))"#,
    latency_p99: r#"histogram_quantile(0.99, sum by (le) (rate(envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name="{{ namespace }}/{{ service }}/{{ port }}"}[{{ window }}]))) / 1000"#,
};

/// Istio standard metrics, as the candidate's own sidecar reports them (`reporter="destination"`):
/// every request to the workload is seen there once, whichever client sent it, while
/// source-reported series miss clients outside the mesh (and both together count each request
/// twice). Selected by
/// workload (the Deployment) and its namespace. The duration histogram is in milliseconds.
const ISTIO: Preset = Preset {
    requests: r#"sum(increase(istio_requests_total{reporter="destination",destination_workload_namespace="{{ namespace }}",destination_workload="{{ deployment }}"}[{{ window }}]))"#,
    error_rate: r#"(sum(increase(istio_requests_total{reporter="destination",destination_workload_namespace="{{ namespace }}",destination_workload="{{ deployment }}",response_code=~"5.."}[{{ window }}])) or vector(0)) / sum(increase(istio_requests_total{reporter="destination",destination_workload_namespace="{{ namespace }}",destination_workload="{{ deployment }}"}[{{ window }}]))"#,
    latency_p99: r#"histogram_quantile(0.99, sum by (le) (rate(istio_request_duration_milliseconds_bucket{reporter="destination",destination_workload_namespace="{{ namespace }}",destination_workload="{{ deployment }}"}[{{ window }}]))) / 1000"#,
};

/// Linkerd proxy metrics on the candidate's inbound side (`direction="inbound"`, for the same
/// reason as Istio's destination reporter), selected by Deployment and namespace. Linkerd's
/// `classification="failure"` is its own response classification (by default 5xx, and gRPC
/// errors), which is the share this objective means. Latency buckets are in milliseconds.
const LINKERD: Preset = Preset {
    requests: r#"sum(increase(response_total{direction="inbound",namespace="{{ namespace }}",deployment="{{ deployment }}"}[{{ window }}]))"#,
    error_rate: r#"(sum(increase(response_total{direction="inbound",namespace="{{ namespace }}",deployment="{{ deployment }}",classification="failure"}[{{ window }}])) or vector(0)) / sum(increase(response_total{direction="inbound",namespace="{{ namespace }}",deployment="{{ deployment }}"}[{{ window }}]))"#,
    latency_p99: r#"histogram_quantile(0.99, sum by (le) (rate(response_latency_ms_bucket{direction="inbound",namespace="{{ namespace }}",deployment="{{ deployment }}"}[{{ window }}]))) / 1000"#,
};

/// The templates of a preset (`None` for `custom`), for docs and tests.
pub fn preset_templates(preset: MetricsPreset) -> Option<[(&'static str, &'static str); 3]> {
    let p = match preset {
        MetricsPreset::Envoy => &ENVOY,
        MetricsPreset::Istio => &ISTIO,
        MetricsPreset::Linkerd => &LINKERD,
        MetricsPreset::Custom => return None,
    };
    Some([
        ("requests", p.requests),
        ("errorRate", p.error_rate),
        ("latencyP99", p.latency_p99),
    ])
}

/// Renders the queries judging `target` under a validated guard.
pub fn render_queries(guard: &GuardSpec, target: &Target) -> Result<Queries, RenderError> {
    let window = guard.window.get();
    let (requests, error_rate, latency_p99) = match preset_templates(guard.metrics) {
        Some([(_, r), (_, e), (_, l)]) => (Some(r), Some(e), Some(l)),
        None => {
            let q = guard.queries.as_ref();
            (
                q.and_then(|q| q.requests.as_deref()),
                q.and_then(|q| q.error_rate.as_deref()),
                q.and_then(|q| q.latency_p99.as_deref()),
            )
        }
    };
    let render = |field: &'static str, template: Option<&str>| {
        let template = template.ok_or(RenderError::Missing(field))?;
        render_template(template, |v| target.value(v, window))
            .map_err(|error| RenderError::Template { field, error })
    };
    let mut objectives = Vec::with_capacity(2);
    if let Some(limit) = guard.objectives.error_rate {
        objectives.push(ObjectiveQuery {
            objective: Objective::ErrorRate,
            limit: limit.0,
            query: render("errorRate", error_rate)?,
        });
    }
    if let Some(limit) = guard.objectives.latency_p99 {
        objectives.push(ObjectiveQuery {
            objective: Objective::LatencyP99,
            limit: limit.get().as_secs_f64(),
            query: render("latencyP99", latency_p99)?,
        });
    }
    Ok(Queries {
        requests: render("requests", requests)?,
        objectives,
        window,
    })
}
