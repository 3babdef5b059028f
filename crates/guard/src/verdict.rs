//! One judgement of one candidate: each objective healthy, failing or unknown, and the
//! candidate's verdict from them.
//!
//! Rules:
//! - The request count comes first. Fewer than `minRequests` in the window (an empty answer
//!   counts as 0: no series means no requests yet) makes every objective unknown, "not enough
//!   traffic": a share of five requests says nothing. A count that cannot be had (error, NaN)
//!   makes every objective unknown too.
//! - An objective is failing when its value is above its limit (the limit itself passes: it is
//!   the largest value allowed), healthy when at or below, unknown when the query failed, found
//!   no series, or gave NaN (0/0, or a quantile of empty buckets) or -Inf. `+Inf` is a value:
//!   a p99 in the histogram's `+Inf` bucket is slower than any limit, so it fails.
//! - The verdict is failing if any objective fails; else unknown if any is unknown (failing
//!   instead with `unknownFails`); else healthy.

use std::fmt;
use std::time::Duration;

use routing_core::duration::format_duration;
use routing_core::guard::GuardSpec;

use crate::prometheus::{Answer, QueryError};
use crate::query::{Objective, Queries};

/// Why an objective could not be judged.
#[derive(Debug, Clone, PartialEq)]
pub enum Unknown {
    /// Fewer requests in the window than `minRequests`.
    NotEnoughTraffic {
        /// Requests counted.
        requests: f64,
        /// `minRequests`.
        min: u64,
    },
    /// The request count could not be had.
    RequestCount(Box<Unknown>),
    /// The query matched no series.
    NoData,
    /// The query gave NaN or -Inf.
    NotANumber(f64),
    /// The query failed.
    Query(QueryError),
}

impl fmt::Display for Unknown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unknown::NotEnoughTraffic { requests, min } => write!(
                f,
                "not enough traffic: {} requests, fewer than minRequests {min}",
                Number(*requests)
            ),
            Unknown::RequestCount(why) => write!(f, "request count unknown: {why}"),
            Unknown::NoData => f.write_str("no data (the query matched no series)"),
            Unknown::NotANumber(v) => write!(f, "the query gave {}", Number(*v)),
            Unknown::Query(e) => e.fmt(f),
        }
    }
}

/// A number as Events show it: Prometheus' spelling of the special values, else short.
#[derive(Debug, Clone, Copy)]
pub struct Number(pub f64);

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        if v.is_nan() {
            f.write_str("NaN")
        } else if v.is_infinite() {
            f.write_str(if v > 0.0 { "+Inf" } else { "-Inf" })
        } else if v == v.trunc() && v.abs() < 1e15 {
            write!(f, "{v:.0}")
        } else {
            // Four significant digits are plenty for a share or a latency, and stay readable.
            let digits = (3 - v.abs().log10().floor() as i32).clamp(0, 12) as usize;
            let s = format!("{v:.digits$}");
            let s = s.trim_end_matches('0').trim_end_matches('.');
            f.write_str(s)
        }
    }
}

/// How one objective fared.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// At or below the limit.
    Healthy(f64),
    /// Above the limit.
    Failing(f64),
    /// Not judged.
    Unknown(Unknown),
}

/// One objective's judgement, with what an Event needs to explain it.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// Which objective.
    pub objective: Objective,
    /// Its limit (a share, or seconds).
    pub limit: f64,
    /// The query that measured it.
    pub query: String,
    /// How it fared.
    pub outcome: Outcome,
}

impl Finding {
    /// The measured value, when there is one.
    pub fn value(&self) -> Option<f64> {
        match &self.outcome {
            Outcome::Healthy(v) | Outcome::Failing(v) => Some(*v),
            Outcome::Unknown(_) => None,
        }
    }
}

/// The candidate's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VerdictKind {
    /// Every objective met.
    Healthy,
    /// An objective failed (or, with `unknownFails`, could not be judged).
    Failing,
    /// None failed, some could not be judged.
    Unknown,
}

impl VerdictKind {
    /// A bounded label for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            VerdictKind::Healthy => "healthy",
            VerdictKind::Failing => "failing",
            VerdictKind::Unknown => "unknown",
        }
    }
}

/// One judgement of a candidate.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// The verdict.
    pub kind: VerdictKind,
    /// Requests counted in the window, when the count could be had.
    pub requests: Option<f64>,
    /// The window judged.
    pub window: Duration,
    /// One per objective, in the spec's order (`errorRate`, `latencyP99`).
    pub findings: Vec<Finding>,
}

impl Verdict {
    /// The finding that decided a failing verdict: the first failing objective, else (with
    /// `unknownFails`) the first unknown one.
    pub fn decisive(&self) -> Option<&Finding> {
        if self.kind != VerdictKind::Failing {
            return None;
        }
        let failing = |f: &&Finding| matches!(f.outcome, Outcome::Failing(_));
        let unknown = |f: &&Finding| matches!(f.outcome, Outcome::Unknown(_));
        self.findings
            .iter()
            .find(failing)
            .or_else(|| self.findings.iter().find(unknown))
    }

    /// One line for logs and Events: each objective's value or why it is unknown.
    pub fn summary(&self) -> String {
        let mut parts = Vec::with_capacity(self.findings.len() + 1);
        for f in &self.findings {
            let limit = shown_value(f.objective, f.limit);
            parts.push(match &f.outcome {
                Outcome::Healthy(v) => {
                    format!(
                        "{} {} <= {limit}",
                        f.objective,
                        shown_value(f.objective, *v)
                    )
                }
                Outcome::Failing(v) => {
                    format!("{} {} > {limit}", f.objective, shown_value(f.objective, *v))
                }
                Outcome::Unknown(why) => format!("{} unknown ({why})", f.objective),
            });
        }
        let requests = self
            .requests
            .map_or_else(|| "?".to_string(), |r| Number(r).to_string());
        format!(
            "{}: {} over {} ({requests} requests)",
            self.kind.as_str(),
            parts.join(", "),
            format_duration(self.window)
        )
    }
}

/// A value in its objective's unit: a share as is, a latency in ms or s.
pub fn shown_value(objective: Objective, v: f64) -> String {
    match objective {
        Objective::ErrorRate => Number(v).to_string(),
        Objective::LatencyP99 if v.is_finite() && v.abs() < 1.0 => {
            format!("{}ms", Number(v * 1000.0))
        }
        Objective::LatencyP99 => format!("{}s", Number(v)),
    }
}

/// Judges one candidate from the answers to its [`Queries`]: `requests` answers
/// `queries.requests`, `answers[i]` answers `queries.objectives[i]` (a missing answer is an
/// unknown objective).
pub fn judge(
    guard: &GuardSpec,
    queries: &Queries,
    requests: &Result<Answer, QueryError>,
    answers: &[Result<Answer, QueryError>],
) -> Verdict {
    let count = match requests {
        Ok(Answer::NoData) => Ok(0.0),
        Ok(Answer::Value(v)) if v.is_nan() || *v == f64::NEG_INFINITY => {
            Err(Unknown::RequestCount(Box::new(Unknown::NotANumber(*v))))
        }
        Ok(Answer::Value(v)) => Ok(*v),
        Err(e) => Err(Unknown::RequestCount(Box::new(Unknown::Query(e.clone())))),
    };
    let gate = match count {
        // `as f64`: minRequests is at most 1e9, exact in an f64.
        Ok(n) if n < guard.min_requests as f64 => Some(Unknown::NotEnoughTraffic {
            requests: n,
            min: guard.min_requests,
        }),
        Ok(_) => None,
        Err(ref why) => Some(why.clone()),
    };
    let findings: Vec<Finding> = queries
        .objectives
        .iter()
        .enumerate()
        .map(|(i, q)| {
            let outcome = match (&gate, answers.get(i)) {
                (Some(why), _) => Outcome::Unknown(why.clone()),
                (None, None) => Outcome::Unknown(Unknown::NoData),
                (None, Some(Err(e))) => Outcome::Unknown(Unknown::Query(e.clone())),
                (None, Some(Ok(Answer::NoData))) => Outcome::Unknown(Unknown::NoData),
                (None, Some(Ok(Answer::Value(v)))) => {
                    if v.is_nan() || *v == f64::NEG_INFINITY {
                        Outcome::Unknown(Unknown::NotANumber(*v))
                    } else if *v > q.limit {
                        Outcome::Failing(*v)
                    } else {
                        Outcome::Healthy(*v)
                    }
                }
            };
            Finding {
                objective: q.objective,
                limit: q.limit,
                query: q.query.clone(),
                outcome,
            }
        })
        .collect();
    let any = |pred: fn(&Outcome) -> bool| findings.iter().any(|f| pred(&f.outcome));
    let kind = if any(|o| matches!(o, Outcome::Failing(_))) {
        VerdictKind::Failing
    } else if any(|o| matches!(o, Outcome::Unknown(_))) {
        if guard.unknown_fails {
            VerdictKind::Failing
        } else {
            VerdictKind::Unknown
        }
    } else {
        VerdictKind::Healthy
    };
    Verdict {
        kind,
        requests: count.ok(),
        window: queries.window,
        findings,
    }
}
