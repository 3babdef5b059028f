//! Prometheus metrics of the controller, registered once and shared by every component.
//!
//! Label values are bounded: results and error categories are fixed words, resource types come
//! from the controller's configuration. No label carries a namespace or an object name.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

/// Every metric of the controller. Cloning shares the same series.
#[derive(Debug, Clone)]
pub struct Metrics {
    reconciles: Counter,
    applies: Family<Labels, Counter>,
    errors: Family<Labels, Counter>,
    invalid_routemaps: Family<Labels, Counter>,
    throttled: Family<Labels, Counter>,
    gateway_answers: Family<Labels, Counter>,
    route_deletes: Counter,
    events: Family<Labels, Counter>,
    apply_latency: Histogram,
    routemaps: Gauge,
    versions: Gauge,
    leader: Gauge,
    write_limit: Gauge,
    missing_types: Family<Labels, Gauge>,
    observed: Family<Labels, Gauge>,
    watch_failing: Family<Labels, Gauge>,
    guard_queries: Family<Labels, Counter>,
    guard_verdicts: Family<Labels, Counter>,
    guard_withdrawals: Counter,
    guard_candidates: Gauge,
    guard_withdrawn: Gauge,
    guard_unreachable: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            reconciles: Counter::default(),
            applies: Family::default(),
            errors: Family::default(),
            invalid_routemaps: Family::default(),
            throttled: Family::default(),
            gateway_answers: Family::default(),
            route_deletes: Counter::default(),
            events: Family::default(),
            // 1 ms .. ~16 s.
            apply_latency: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
            routemaps: Gauge::default(),
            versions: Gauge::default(),
            leader: Gauge::default(),
            write_limit: Gauge::default(),
            missing_types: Family::default(),
            observed: Family::default(),
            watch_failing: Family::default(),
            guard_queries: Family::default(),
            guard_verdicts: Family::default(),
            guard_withdrawals: Counter::default(),
            guard_candidates: Gauge::default(),
            guard_withdrawn: Gauge::default(),
            guard_unreachable: Gauge::default(),
        }
    }
}

impl Metrics {
    /// Registers the metrics under the `iter8` prefix.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("iter8");
        r.register(
            "reconciles",
            "Routemap decisions handled by the writer",
            self.reconciles.clone(),
        );
        r.register(
            "applies",
            "HTTPRoute server-side applies by result (applied, unchanged, failed, skipped_follower)",
            self.applies.clone(),
        );
        r.register(
            "errors",
            "Failed API calls by category (route writes: api_transient, api_rejected, timeout, internal; watch; event; status)",
            self.errors.clone(),
        );
        r.register(
            "invalid_routemaps",
            "Decisions that found a routemap invalid, by category (format, yaml, spec, resource_type, namespace, internal)",
            self.invalid_routemaps.clone(),
        );
        r.register(
            "api_throttled",
            "Calls the API server asked to retry later (429, or 5xx with Retry-After), by call (apply, report, delete); retried after its delay, never reported as errors",
            self.throttled.clone(),
        );
        r.register(
            "gateway_answers",
            "Changes of the gateway's answer on our routes reported on their routemaps, by acceptance (accepted, not_accepted, backend_not_resolved, not_yet_accepted)",
            self.gateway_answers.clone(),
        );
        r.register(
            "route_deletes",
            "HTTPRoutes deleted because their routemap now writes a route of another name",
            self.route_deletes.clone(),
        );
        r.register(
            "events",
            "Kubernetes Events published, by type and reason",
            self.events.clone(),
        );
        r.register(
            "apply_duration_seconds",
            "Latency of HTTPRoute server-side apply calls",
            self.apply_latency.clone(),
        );
        r.register("routemaps", "Routemaps known", self.routemaps.clone());
        r.register(
            "versions",
            "Versions declared by valid routemaps",
            self.versions.clone(),
        );
        r.register(
            "leader",
            "1 when this replica holds the leader Lease and writes",
            self.leader.clone(),
        );
        r.register(
            "write_limit",
            "Calls the writer may have in flight now: halved by the API server's 429s, grown back to --max-writes-in-flight as calls go through",
            self.write_limit.clone(),
        );
        r.register(
            "watch_type_missing",
            "1 while a configured resource type cannot be watched (CRD not installed)",
            self.missing_types.clone(),
        );
        r.register(
            "observed_resource_version",
            "Highest metadata.resourceVersion, per watch, of the events fully handled: indexed, decided, and any resulting write done",
            self.observed.clone(),
        );
        r.register(
            "watch_failing",
            "1 while a watch fails (e.g. a type it may not list, or the API server down), by watch; its error is in /readyz and the log",
            self.watch_failing.clone(),
        );
        r.register(
            "guard_queries",
            "Prometheus queries of the guard by result (value, no_data, unreachable, prometheus, http, malformed, shape)",
            self.guard_queries.clone(),
        );
        r.register(
            "guard_verdicts",
            "Judgements of guarded candidates by verdict (healthy, failing, unknown)",
            self.guard_verdicts.clone(),
        );
        r.register(
            "guard_withdrawals",
            "Candidates the guard withdrew from their route",
            self.guard_withdrawals.clone(),
        );
        r.register(
            "guard_candidates",
            "Candidates of guarded routemaps known to the guard",
            self.guard_candidates.clone(),
        );
        r.register(
            "guard_withdrawn_candidates",
            "Candidates withdrawn now, until a new version or a retry",
            self.guard_withdrawn.clone(),
        );
        r.register(
            "guard_prometheus_unreachable",
            "Guarded routemaps whose Prometheus cannot be reached (or is not configured) now",
            self.guard_unreachable.clone(),
        );
    }

    /// One guard query's result.
    pub fn guard_query(&self, result: &str) {
        self.guard_queries
            .get_or_create(&vec![("result", result.to_string())])
            .inc();
    }

    /// One guard verdict.
    pub fn guard_verdict(&self, verdict: &str) {
        self.guard_verdicts
            .get_or_create(&vec![("verdict", verdict.to_string())])
            .inc();
    }

    /// One withdrawal.
    pub fn guard_withdrawal(&self) {
        self.guard_withdrawals.inc();
    }

    /// The guard's candidates, withdrawn candidates, and routemaps without Prometheus now.
    pub fn guard_sizes(&self, candidates: usize, withdrawn: usize, unreachable: usize) {
        let n = |v: usize| i64::try_from(v).unwrap_or(i64::MAX);
        self.guard_candidates.set(n(candidates));
        self.guard_withdrawn.set(n(withdrawn));
        self.guard_unreachable.set(n(unreachable));
    }

    /// One decision handled.
    pub fn reconcile(&self) {
        self.reconciles.inc();
    }

    /// One apply decision.
    pub fn apply(&self, result: &'static str) {
        self.applies
            .get_or_create(&vec![("result", result.into())])
            .inc();
    }

    /// One error of a category.
    pub fn error(&self, category: &'static str) {
        self.errors
            .get_or_create(&vec![("category", category.into())])
            .inc();
    }

    /// A decision found a routemap invalid, for a reason of this category.
    pub fn invalid_routemap(&self, category: &'static str) {
        self.invalid_routemaps
            .get_or_create(&vec![("category", category.into())])
            .inc();
    }

    /// One call the API server throttled.
    pub fn throttled(&self, call: &'static str) {
        self.throttled
            .get_or_create(&vec![("call", call.into())])
            .inc();
    }

    /// A new gateway answer reported.
    pub fn gateway_answer(&self, acceptance: &'static str) {
        self.gateway_answers
            .get_or_create(&vec![("acceptance", acceptance.into())])
            .inc();
    }

    /// One route deleted.
    pub fn route_deleted(&self) {
        self.route_deletes.inc();
    }

    /// One Event published.
    pub fn event(&self, kind: &'static str, reason: &'static str) {
        self.events
            .get_or_create(&vec![("type", kind.into()), ("reason", reason.into())])
            .inc();
    }

    /// Latency of one apply call.
    pub fn apply_latency(&self, seconds: f64) {
        self.apply_latency.observe(seconds);
    }

    /// Sizes of the index.
    pub fn sizes(&self, routemaps: usize, versions: usize) {
        self.routemaps.set(routemaps as i64);
        self.versions.set(versions as i64);
    }

    /// The writer's in-flight limit now.
    pub fn set_write_limit(&self, n: usize) {
        self.write_limit.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Leadership of this replica.
    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    /// Whether a configured resource type is missing from the cluster.
    pub fn set_type_missing(&self, gvr_short: &str, missing: bool) {
        self.missing_types
            .get_or_create(&vec![("type", gvr_short.to_string())])
            .set(i64::from(missing));
    }

    /// A watch started or stopped failing.
    pub fn set_watch_failing(&self, watch: &str, failing: bool) {
        self.watch_failing
            .get_or_create(&vec![("watch", watch.to_string())])
            .set(i64::from(failing));
    }

    /// A watch's events up to `resource_version` are fully handled. Only the writer task calls
    /// this, so the gauge only grows.
    pub fn observed(&self, watch: &str, resource_version: i64) {
        let gauge = self
            .observed
            .get_or_create(&vec![("watch", watch.to_string())]);
        if resource_version > gauge.get() {
            gauge.set(resource_version);
        }
    }
}

/// The registry as Prometheus text.
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut out, registry);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_render_with_bounded_labels() {
        let metrics = Metrics::default();
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        metrics.apply("applied");
        metrics.apply("applied");
        metrics.error("timeout");
        metrics.set_leader(true);
        metrics.apply_latency(0.003);
        metrics.set_type_missing("isvc", true);
        metrics.observed("routemaps", 42);
        // A lower resourceVersion (a relist's older objects) never moves the gauge back.
        metrics.observed("routemaps", 17);
        let text = render(&registry);
        for line in [
            "iter8_applies_total{result=\"applied\"} 2",
            "iter8_errors_total{category=\"timeout\"} 1",
            "iter8_leader 1",
            "iter8_apply_duration_seconds_count 1",
            "iter8_watch_type_missing{type=\"isvc\"} 1",
            "iter8_observed_resource_version{watch=\"routemaps\"} 42",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }
}
