//! Validation of a spec's `guard`: bounds of its durations and counts, its objectives, and its
//! query templates (every variable known, so rendering them can never fail later).

use std::time::Duration;

use crate::duration::format_duration;
use crate::error::SpecError;
use crate::guard::{GuardSpec, MetricsPreset, parse_template};
use crate::names::shown;
use crate::spec::{RouteMapSpec, Strategy};

type Result<T = ()> = std::result::Result<T, SpecError>;

/// Bounds of `guard.interval`: under a second would load Prometheus for no gain (scrapes are
/// seldom more often), over ten minutes leaves a bad candidate serving too long.
pub const INTERVAL_BOUNDS: (Duration, Duration) =
    (Duration::from_secs(1), Duration::from_secs(600));
/// Bounds of `guard.window` (and it must be at least `interval`, so no request goes unjudged):
/// `increase`/`rate` need two samples in the window, which a shorter one seldom holds at common
/// scrape intervals; a longer one than an hour reacts too slowly to be a guard.
pub const WINDOW_BOUNDS: (Duration, Duration) =
    (Duration::from_secs(10), Duration::from_secs(3600));
/// Bounds of `guard.objectives.latencyP99`.
pub const LATENCY_BOUNDS: (Duration, Duration) =
    (Duration::from_millis(1), Duration::from_secs(600));
/// Bounds of `guard.failAfter`.
pub const FAIL_AFTER_BOUNDS: (u32, u32) = (1, 100);
/// Largest `guard.minRequests`.
pub const MAX_MIN_REQUESTS: u64 = 1_000_000_000;
/// Longest query template, and longest Prometheus URL (both end up in a request line).
pub const MAX_QUERY_LEN: usize = 4096;
/// Longest `guard.prometheus`.
pub const MAX_URL_LEN: usize = 2048;

pub(super) fn validate_guard(spec: &RouteMapSpec) -> Result {
    let Some(g) = &spec.guard else {
        return Ok(());
    };
    if spec.strategy == Strategy::None {
        return Err(SpecError::field(
            "guard",
            "only with strategy canary, blue-green or mirror (strategy none writes no route to withdraw a candidate from)",
        ));
    }
    if let Some(url) = &g.prometheus {
        check_prometheus_url("guard.prometheus", url)?;
    }
    check_duration("guard.interval", g.interval.get(), INTERVAL_BOUNDS)?;
    check_duration("guard.window", g.window.get(), WINDOW_BOUNDS)?;
    if g.window < g.interval {
        return Err(SpecError::field(
            "guard.window",
            format!(
                "{} is shorter than guard.interval {}: requests between two judgements would go unjudged",
                g.window, g.interval
            ),
        ));
    }
    if g.min_requests > MAX_MIN_REQUESTS {
        return Err(SpecError::field(
            "guard.minRequests",
            format!("{} is out of range 0-{MAX_MIN_REQUESTS}", g.min_requests),
        ));
    }
    let (lo, hi) = FAIL_AFTER_BOUNDS;
    if !(lo..=hi).contains(&g.fail_after) {
        return Err(SpecError::field(
            "guard.failAfter",
            format!("{} is out of range {lo}-{hi}", g.fail_after),
        ));
    }
    check_objectives(g)?;
    check_queries(g)
}

/// Checks a Prometheus base URL (`http://` or `https://`, a host, an optional path), the
/// error naming `at`.
pub fn check_prometheus_url(at: &str, url: &str) -> Result {
    if url.len() > MAX_URL_LEN {
        return Err(SpecError::field(
            at,
            format!("longer than {MAX_URL_LEN} characters"),
        ));
    }
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    let ok = rest.is_some_and(|r| {
        // A host is needed; the query string and fragment are ours to write.
        !r.is_empty()
            && !r.starts_with('/')
            && r.bytes()
                .all(|b| b.is_ascii_graphic() && b != b'?' && b != b'#')
    });
    if ok {
        Ok(())
    } else {
        Err(SpecError::field(
            at,
            format!(
                "{} is not a Prometheus base URL (http:// or https://, a host, an optional path; no query or fragment)",
                shown(url)
            ),
        ))
    }
}

fn check_duration(at: &str, d: Duration, (lo, hi): (Duration, Duration)) -> Result {
    if (lo..=hi).contains(&d) {
        Ok(())
    } else {
        Err(SpecError::field(
            at,
            format!(
                "{} is out of range {}-{}",
                format_duration(d),
                format_duration(lo),
                format_duration(hi)
            ),
        ))
    }
}

fn check_objectives(g: &GuardSpec) -> Result {
    let o = &g.objectives;
    if o.error_rate.is_none() && o.latency_p99.is_none() {
        return Err(SpecError::field(
            "guard.objectives",
            "needs at least one objective (errorRate, latencyP99)",
        ));
    }
    if let Some(r) = o.error_rate {
        // `contains` is false for NaN too.
        if !(0.0..=1.0).contains(&r.0) {
            return Err(SpecError::field(
                "guard.objectives.errorRate",
                format!("{} is out of range 0-1 (a share: 0.01 is 1%)", r.0),
            ));
        }
    }
    if let Some(l) = o.latency_p99 {
        check_duration("guard.objectives.latencyP99", l.get(), LATENCY_BOUNDS)?;
    }
    Ok(())
}

fn check_queries(g: &GuardSpec) -> Result {
    let Some(q) = &g.queries else {
        if g.metrics == MetricsPreset::Custom {
            return Err(SpecError::field(
                "guard.queries",
                "metrics: custom needs queries (requests, and one per objective)",
            ));
        }
        return Ok(());
    };
    if g.metrics != MetricsPreset::Custom {
        return Err(SpecError::field(
            "guard.queries",
            format!(
                "only with metrics: custom (metrics: {} has its own queries)",
                g.metrics.as_str()
            ),
        ));
    }
    let o = &g.objectives;
    let fields = [
        ("requests", &q.requests, true),
        ("errorRate", &q.error_rate, o.error_rate.is_some()),
        ("latencyP99", &q.latency_p99, o.latency_p99.is_some()),
    ];
    for (name, query, wanted) in fields {
        let at = || format!("guard.queries.{name}");
        match (query, wanted) {
            (None, false) => {}
            (None, true) if name == "requests" => {
                return Err(SpecError::field(
                    at(),
                    "is required: it counts the requests in the window (see minRequests)",
                ));
            }
            (None, true) => {
                return Err(SpecError::field(
                    at(),
                    format!("is required: objectives.{name} is set"),
                ));
            }
            (Some(_), false) => {
                return Err(SpecError::field(
                    at(),
                    format!("objectives.{name} is not set, so nothing would judge this query"),
                ));
            }
            (Some(text), true) => {
                if text.len() > MAX_QUERY_LEN {
                    return Err(SpecError::field(
                        at(),
                        format!("longer than {MAX_QUERY_LEN} characters"),
                    ));
                }
                parse_template(text).map_err(|e| SpecError::field(at(), e.to_string()))?;
            }
        }
    }
    Ok(())
}
