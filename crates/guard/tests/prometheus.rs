//! The Prometheus HTTP API as data: the exact request, and every shape of answer the
//! documented API (docs/querying/api.md) gives an instant query.

use std::time::Duration;

use iter8_guard::{Answer, QueryError, parse_answer, query_request, request_timeout};

#[test]
fn the_request_is_exact() {
    let q = r#"sum(increase(envoy_cluster_upstream_rq_total{envoy_cluster_name="test/httpbin-1/80"}[1m]))"#;
    let at = Duration::from_millis(1_780_000_000_123);
    let r = query_request(q, at, Duration::from_secs(5));
    // Every reserved character of PromQL is encoded: braces, quotes, `=`, `/`, `[`, `(`.
    assert_eq!(
        r.path_and_query,
        "/api/v1/query?query=sum%28increase%28envoy_cluster_upstream_rq_total%7Benvoy_cluster_name%3D%22test%2Fhttpbin-1%2F80%22%7D%5B1m%5D%29%29&time=1780000000.123"
    );
    assert_eq!(r.timeout, Duration::from_secs(5));
    assert_eq!(
        r.url("http://prometheus.monitoring:9090/"),
        format!("http://prometheus.monitoring:9090{}", r.path_and_query)
    );
    assert!(
        r.url("https://host/prometheus")
            .starts_with("https://host/prometheus/api/v1/query?query=")
    );
}

#[test]
fn spaces_plus_and_ampersands_cannot_break_the_query_string() {
    let r = query_request(
        "a + b & c=~\"5..\" or vector(0)",
        Duration::ZERO,
        Duration::from_secs(1),
    );
    // `+` would read as a space and `&` would end the parameter if they were left as they are.
    assert_eq!(
        r.path_and_query,
        "/api/v1/query?query=a%20%2B%20b%20%26%20c%3D~%225..%22%20or%20vector%280%29&time=0.000"
    );
}

#[test]
fn the_timeout_is_half_the_interval_within_bounds() {
    assert_eq!(
        request_timeout(Duration::from_secs(10)),
        Duration::from_secs(5)
    );
    assert_eq!(
        request_timeout(Duration::from_secs(4)),
        Duration::from_secs(2)
    );
    assert_eq!(
        request_timeout(Duration::from_secs(1)),
        Duration::from_millis(500)
    );
    assert_eq!(
        request_timeout(Duration::from_secs(600)),
        Duration::from_secs(5)
    );
}

fn ok(body: &str) -> Result<Answer, QueryError> {
    parse_answer(200, body.as_bytes())
}

#[test]
fn a_one_series_vector_is_its_value() {
    let body = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1780000000.123,"0.0421"]}]}}"#;
    assert_eq!(ok(body), Ok(Answer::Value(0.0421)));
    let with_labels_and_warnings = r#"{"status":"success","warnings":["w"],"infos":["i"],"data":{"resultType":"vector","result":[{"metric":{"envoy_cluster_name":"a/b/80"},"value":[1,"1e-05"]}]}}"#;
    assert_eq!(ok(with_labels_and_warnings), Ok(Answer::Value(1e-5)));
}

#[test]
fn an_empty_vector_is_no_data() {
    let body = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
    assert_eq!(ok(body), Ok(Answer::NoData));
}

#[test]
fn special_values_are_kept_as_numbers() {
    let v = |s: &str| {
        ok(&format!(
            r#"{{"status":"success","data":{{"resultType":"vector","result":[{{"metric":{{}},"value":[1,"{s}"]}}]}}}}"#
        ))
    };
    assert!(matches!(v("NaN"), Ok(Answer::Value(x)) if x.is_nan()));
    assert_eq!(v("+Inf"), Ok(Answer::Value(f64::INFINITY)));
    assert_eq!(v("-Inf"), Ok(Answer::Value(f64::NEG_INFINITY)));
    // Prometheus never writes these; something else is answering.
    assert!(matches!(v("inf"), Err(QueryError::Malformed(_))));
    assert!(matches!(v("12abc"), Err(QueryError::Malformed(_))));
}

#[test]
fn a_scalar_is_its_value() {
    let body =
        r#"{"status":"success","data":{"resultType":"scalar","result":[1780000000.5,"20"]}}"#;
    assert_eq!(ok(body), Ok(Answer::Value(20.0)));
}

#[test]
fn several_series_are_an_error_not_a_sum() {
    let body = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"a":"1"},"value":[1,"0.5"]},{"metric":{"a":"2"},"value":[1,"0.5"]}]}}"#;
    let e = ok(body).expect_err("two series");
    assert_eq!(e, QueryError::ManySeries(2));
    assert!(e.to_string().contains("aggregate it, e.g. sum(...)"), "{e}");
}

#[test]
fn other_result_types_are_not_a_number() {
    for (body, what) in [
        (
            r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"1"]]}]}}"#,
            "a range vector (matrix)",
        ),
        (
            r#"{"status":"success","data":{"resultType":"string","result":[1,"x"]}}"#,
            "a string",
        ),
        (
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"histogram":[1,{"count":"2","sum":"3","buckets":[]}]}]}}"#,
            "a native histogram",
        ),
    ] {
        assert_eq!(ok(body), Err(QueryError::NotANumber(what)));
    }
}

#[test]
fn error_bodies_carry_their_type_and_message() {
    let body = r#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\": 1:5: parse error: unexpected \"}\""}"#;
    let e = parse_answer(400, body.as_bytes()).expect_err("an error");
    assert_eq!(
        e,
        QueryError::Prometheus {
            error_type: "bad_data".into(),
            error: "invalid parameter \"query\": 1:5: parse error: unexpected \"}\"".into(),
        }
    );
    assert_eq!(e.category(), "prometheus");
    let timeout = r#"{"status":"error","errorType":"timeout","error":"query timed out in expression evaluation"}"#;
    assert!(matches!(
        parse_answer(503, timeout.as_bytes()),
        Err(QueryError::Prometheus { error_type, .. }) if error_type == "timeout"
    ));
}

#[test]
fn what_is_not_the_api_json_is_malformed_or_an_http_error() {
    assert!(matches!(
        ok("{\"status\":\"succ"),
        Err(QueryError::Malformed(_))
    ));
    assert!(matches!(ok("[]"), Err(QueryError::Malformed(_))));
    assert!(
        matches!(ok(r#"{"status":"success"}"#), Err(QueryError::Malformed(m)) if m.contains("without data"))
    );
    assert!(
        matches!(ok(r#"{"status":"pending","data":null}"#), Err(QueryError::Malformed(m)) if m.contains("pending"))
    );
    let e = parse_answer(502, b"<html>Bad Gateway</html>").expect_err("a proxy's page");
    assert_eq!(
        e,
        QueryError::Http {
            status: 502,
            body: "<html>Bad Gateway</html>".into()
        }
    );
    let huge = vec![b' '; iter8_guard::prometheus::MAX_ANSWER_BYTES + 1];
    assert!(matches!(
        ok(std::str::from_utf8(&huge).expect("ascii")),
        Err(QueryError::Malformed(_))
    ));
}
