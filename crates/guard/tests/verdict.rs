//! Judging one candidate: objectives against limits, gated on traffic; unknown is never
//! mistaken for healthy.

use std::time::Duration;

use iter8_guard::{
    Answer, Outcome, QueryError, Target, Unknown, VerdictKind, judge, render_queries,
};
use routing_core::RouteMapSpec;
use routing_core::guard::GuardSpec;

fn guard(extra: &str) -> GuardSpec {
    let spec = format!(
        "strategy: canary\nroute: {{name: r, parentRefs: [{{name: gw}}]}}\nversions:\n- {{name: v0, resources: [{{gvrShort: svc, name: v0}}]}}\n- {{name: v1, resources: [{{gvrShort: svc, name: v1}}], matches: [{{headers: [{{name: t, value: x}}]}}]}}\nguard: {{metrics: envoy, objectives: {{errorRate: 0.01, latencyP99: 500ms}}{extra}}}\n"
    );
    RouteMapSpec::from_yaml(&spec)
        .expect("valid")
        .guard
        .map(|g| *g)
        .expect("guard")
}

fn target() -> Target {
    Target {
        namespace: "test".into(),
        version: "v1".into(),
        service: "v1".into(),
        deployment: "v1".into(),
        port: 80,
    }
}

fn v(x: f64) -> Result<Answer, QueryError> {
    Ok(Answer::Value(x))
}

fn verdict(
    g: &GuardSpec,
    requests: Result<Answer, QueryError>,
    answers: &[Result<Answer, QueryError>],
) -> iter8_guard::Verdict {
    let q = render_queries(g, &target()).expect("renders");
    judge(g, &q, &requests, answers)
}

#[test]
fn within_limits_is_healthy_and_the_limit_itself_passes() {
    let g = guard("");
    let out = verdict(&g, v(100.0), &[v(0.01), v(0.2)]);
    assert_eq!(out.kind, VerdictKind::Healthy);
    assert_eq!(out.requests, Some(100.0));
    assert_eq!(out.window, Duration::from_secs(60));
    assert_eq!(
        out.summary(),
        "healthy: errorRate 0.01 <= 0.01, latencyP99 200ms <= 500ms over 1m (100 requests)"
    );
}

#[test]
fn any_objective_over_its_limit_fails() {
    let g = guard("");
    let out = verdict(&g, v(340.0), &[v(0.042), v(0.2)]);
    assert_eq!(out.kind, VerdictKind::Failing);
    assert_eq!(out.findings[0].outcome, Outcome::Failing(0.042));
    // A failure outweighs an unknown objective.
    let out = verdict(&g, v(340.0), &[Ok(Answer::NoData), v(0.75)]);
    assert_eq!(out.kind, VerdictKind::Failing);
    assert_eq!(
        out.decisive().map(|f| f.objective.as_str()),
        Some("latencyP99")
    );
    // p99 in the +Inf bucket: slower than any limit.
    let out = verdict(&g, v(340.0), &[v(0.0), v(f64::INFINITY)]);
    assert_eq!(out.kind, VerdictKind::Failing);
}

#[test]
fn too_few_requests_make_every_objective_unknown() {
    let g = guard("");
    // Even a 100% error rate over 5 requests is not judged.
    let out = verdict(&g, v(5.0), &[v(1.0), v(9.0)]);
    assert_eq!(out.kind, VerdictKind::Unknown);
    for f in &out.findings {
        assert_eq!(
            f.outcome,
            Outcome::Unknown(Unknown::NotEnoughTraffic {
                requests: 5.0,
                min: 20
            })
        );
    }
    // No series at all is no traffic.
    let out = verdict(&g, Ok(Answer::NoData), &[v(0.0), v(0.1)]);
    assert_eq!(out.requests, Some(0.0));
    assert!(
        out.summary()
            .contains("not enough traffic: 0 requests, fewer than minRequests 20"),
        "{}",
        out.summary()
    );
}

#[test]
fn with_min_requests_zero_an_idle_candidate_is_still_unknown_not_healthy() {
    let g = guard(", minRequests: 0");
    // 0/0 is NaN and a quantile of empty buckets is NaN: unknown, never healthy.
    let out = verdict(&g, Ok(Answer::NoData), &[v(f64::NAN), v(f64::NAN)]);
    assert_eq!(out.kind, VerdictKind::Unknown);
    assert!(
        matches!(out.findings[0].outcome, Outcome::Unknown(Unknown::NotANumber(x)) if x.is_nan())
    );
}

#[test]
fn query_failures_and_missing_data_are_unknown() {
    let g = guard("");
    let down = Err(QueryError::Unreachable("connection refused".into()));
    let out = verdict(&g, down.clone(), &[v(0.0), v(0.1)]);
    assert_eq!(out.kind, VerdictKind::Unknown);
    assert_eq!(out.requests, None);
    assert!(
        out.summary()
            .contains("request count unknown: Prometheus unreachable: connection refused"),
        "{}",
        out.summary()
    );
    let out = verdict(&g, v(100.0), &[down, Ok(Answer::NoData)]);
    assert_eq!(out.kind, VerdictKind::Unknown);
    assert_eq!(out.findings[1].outcome, Outcome::Unknown(Unknown::NoData));
    // A missing answer is unknown too, not healthy.
    let out = verdict(&g, v(100.0), &[v(0.0)]);
    assert_eq!(out.kind, VerdictKind::Unknown);
}

#[test]
fn unknown_fails_turns_unknown_into_failing() {
    let g = guard(", unknownFails: true");
    let out = verdict(&g, v(5.0), &[v(0.0), v(0.1)]);
    assert_eq!(out.kind, VerdictKind::Failing);
    assert_eq!(
        out.decisive().map(|f| f.objective.as_str()),
        Some("errorRate")
    );
    let out = verdict(&g, v(100.0), &[v(0.0), v(0.1)]);
    assert_eq!(out.kind, VerdictKind::Healthy);
}
