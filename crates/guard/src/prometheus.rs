//! The Prometheus HTTP API, as data: the instant query to send, and what its answer means.
//!
//! Request: `GET <base>/api/v1/query?query=<PromQL>&time=<unix seconds>`. The time is given
//! (not left to the server's clock) so that all of a candidate's queries judge the same instant.
//!
//! Answer (Prometheus docs, `docs/querying/api.md`): a JSON envelope
//! `{"status": "success"|"error", "data": {"resultType": ..., "result": ...}, "errorType",
//! "error", "warnings", "infos"}`, with 400/422/503 (and others) carrying `status: error`
//! bodies. An instant query's `result` is a `vector` (`[{"metric": {...}, "value": [<ts>,
//! "<float>"]}]`, or `"histogram"` instead of `"value"` for a native histogram) or a `scalar`
//! (`[<ts>, "<float>"]`). Sample values are strings because they may be `NaN`, `+Inf`, `-Inf`.
//!
//! Decisions: an empty vector is [`Answer::NoData`]; more than one series is an error, not a sum,
//! because our queries are shares and quantiles, whose sum means nothing (a custom query must
//! aggregate itself, e.g. `sum(...)`); `NaN` and infinities are kept as numbers for the verdict
//! to judge; `matrix`, `string` and native histograms are errors (not a single number).

use std::time::Duration;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;

/// The instant query endpoint.
pub const QUERY_PATH: &str = "/api/v1/query";

/// Largest answer read: a single-series answer is a few hundred bytes, so anything near this
/// is a query that selects far too much, and parsing it would cost every other candidate.
pub const MAX_ANSWER_BYTES: usize = 1 << 20;

/// Characters left as they are in a query string: RFC 3986 unreserved. Everything else,
/// PromQL's braces, quotes, `=`, `+`, `&` and spaces included, is percent-encoded.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// One HTTP request to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryRequest {
    /// Path and query string, to append to the Prometheus base URL.
    pub path_and_query: String,
    /// How long to wait for the whole answer before the verdict is unknown (unreachable).
    pub timeout: Duration,
}

impl QueryRequest {
    /// The full URL under `base` (e.g. `http://prometheus.monitoring:9090` or one with a path
    /// prefix such as `https://host/prometheus/`).
    pub fn url(&self, base: &str) -> String {
        format!("{}{}", base.trim_end_matches('/'), self.path_and_query)
    }
}

/// Per-query timeout for a guard judging every `interval`: half the interval, so that a
/// candidate's three queries (made concurrently) end before its next turn, within 0.5-5 s: a
/// Prometheus that needs longer than 5 s for one candidate's query is overloaded, and waiting
/// would only hold back the next judgement.
pub fn request_timeout(interval: Duration) -> Duration {
    (interval / 2).clamp(Duration::from_millis(500), Duration::from_secs(5))
}

/// The request evaluating `query` at `at` (time since the Unix epoch; millisecond precision,
/// Prometheus' own).
pub fn query_request(query: &str, at: Duration, timeout: Duration) -> QueryRequest {
    QueryRequest {
        path_and_query: format!(
            "{QUERY_PATH}?query={}&time={}.{:03}",
            utf8_percent_encode(query, QUERY_VALUE),
            at.as_secs(),
            at.subsec_millis()
        ),
        timeout,
    }
}

/// A usable answer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Answer {
    /// One number (possibly NaN or infinite).
    Value(f64),
    /// An empty vector: no series matched (no traffic, or wrong metric names).
    NoData,
}

/// Why an answer is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// No answer: connection refused, DNS, timeout (built by the caller from its HTTP error).
    #[error("Prometheus unreachable: {0}")]
    Unreachable(String),
    /// Prometheus answered `status: error`.
    #[error("Prometheus error ({error_type}): {error}")]
    Prometheus {
        /// `bad_data`, `execution`, `timeout`, `canceled`, `unavailable`, ...
        error_type: String,
        /// Prometheus' message.
        error: String,
    },
    /// A non-success HTTP status without a Prometheus error body (a proxy in between, say).
    #[error("HTTP {status} from Prometheus: {body}")]
    Http {
        /// The status code.
        status: u16,
        /// The start of the body.
        body: String,
    },
    /// Not the API's JSON.
    #[error("malformed answer: {0}")]
    Malformed(String),
    /// More than one series: the query must aggregate to one.
    #[error("the query returned {0} series; it must return one (aggregate it, e.g. sum(...))")]
    ManySeries(usize),
    /// A result that is not one number.
    #[error("the query returned {0}, not a single number")]
    NotANumber(&'static str),
}

impl QueryError {
    /// A bounded label for metrics.
    pub fn category(&self) -> &'static str {
        match self {
            QueryError::Unreachable(_) => "unreachable",
            QueryError::Prometheus { .. } => "prometheus",
            QueryError::Http { .. } => "http",
            QueryError::Malformed(_) => "malformed",
            QueryError::ManySeries(_) | QueryError::NotANumber(_) => "shape",
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default)]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
enum Data {
    Vector(Vec<VectorSample>),
    Scalar(Sample),
    Matrix(serde::de::IgnoredAny),
    String(serde::de::IgnoredAny),
}

#[derive(Deserialize)]
struct VectorSample {
    #[serde(default)]
    value: Option<Sample>,
    #[serde(default)]
    histogram: Option<serde::de::IgnoredAny>,
}

/// `[<unix time>, "<float>"]`.
#[derive(Deserialize)]
struct Sample(serde::de::IgnoredAny, String);

/// Error text cut to a size an Event can carry.
fn cut(s: &str) -> String {
    const MAX: usize = 256;
    if s.len() <= MAX {
        return s.to_string();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// Reads an answer of `GET /api/v1/query` with its HTTP status.
pub fn parse_answer(http_status: u16, body: &[u8]) -> Result<Answer, QueryError> {
    if body.len() > MAX_ANSWER_BYTES {
        return Err(QueryError::Malformed(format!(
            "{} bytes, over the {MAX_ANSWER_BYTES} read",
            body.len()
        )));
    }
    let envelope: Envelope = match serde_json::from_slice(body) {
        Ok(e) => e,
        // An error page from something in front of Prometheus says more by its status.
        Err(_) if !(200..300).contains(&http_status) => {
            return Err(QueryError::Http {
                status: http_status,
                body: cut(&String::from_utf8_lossy(body)),
            });
        }
        Err(e) => return Err(QueryError::Malformed(cut(&e.to_string()))),
    };
    match envelope.status.as_str() {
        "success" => {}
        "error" => {
            return Err(QueryError::Prometheus {
                error_type: cut(envelope.error_type.as_deref().unwrap_or("unknown")),
                error: cut(envelope.error.as_deref().unwrap_or("")),
            });
        }
        other => {
            return Err(QueryError::Malformed(format!(
                "status {}",
                cut(&format!("{other:?}"))
            )));
        }
    }
    let data = envelope
        .data
        .ok_or_else(|| QueryError::Malformed("status success without data".into()))?;
    let sample = match data {
        Data::Scalar(s) => s,
        Data::Vector(mut series) => match series.len() {
            0 => return Ok(Answer::NoData),
            1 => {
                let one = series.swap_remove(0);
                match (one.value, one.histogram) {
                    (Some(v), _) => v,
                    (None, Some(_)) => return Err(QueryError::NotANumber("a native histogram")),
                    (None, None) => {
                        return Err(QueryError::Malformed("a sample without value".into()));
                    }
                }
            }
            n => return Err(QueryError::ManySeries(n)),
        },
        Data::Matrix(_) => return Err(QueryError::NotANumber("a range vector (matrix)")),
        Data::String(_) => return Err(QueryError::NotANumber("a string")),
    };
    parse_float(&sample.1).map(Answer::Value)
}

/// A sample value as Prometheus writes it (Go's float formatting: `1.5`, `1e-05`, `NaN`,
/// `+Inf`, `-Inf`).
fn parse_float(text: &str) -> Result<f64, QueryError> {
    match text {
        "NaN" => Ok(f64::NAN),
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        _ => text
            .parse::<f64>()
            .ok()
            // Rust would also read `inf` or `nan`, which Prometheus never writes.
            .filter(|v| v.is_finite())
            .ok_or_else(|| {
                QueryError::Malformed(format!("sample value {}", cut(&format!("{text:?}"))))
            }),
    }
}
