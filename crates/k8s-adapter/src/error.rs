//! API errors as the write planner classifies them ([`WriteError`], pure, in `routemap-index`).

pub use routemap_index::error::WriteError;

/// Classifies a kube client error: the status code of an API answer, with the server's
/// `retryAfterSeconds` for a 429 or a 5xx that asks for a later retry.
pub fn write_error(e: kube::Error) -> WriteError {
    match e {
        kube::Error::Api(status) => {
            let retry_after = status.details.as_ref().map(|d| d.retry_after_seconds);
            WriteError::from_status(status.code, status.message.clone(), retry_after)
        }
        other => WriteError::Connection(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// An API answer as the API server sends it.
    fn api(code: u16, retry_after_seconds: u32) -> WriteError {
        let status: kube::core::Status = serde_json::from_value(serde_json::json!({
            "status": "Failure", "message": "m", "code": code,
            "details": {"retryAfterSeconds": retry_after_seconds},
        }))
        .expect("a Status");
        write_error(kube::Error::Api(Box::new(status)))
    }

    #[test]
    fn errors_are_classified_for_retry() {
        assert!(api(503, 0).transient() && api(409, 0).transient());
        assert!(!api(422, 0).transient() && !api(403, 0).transient());
        assert_eq!(api(422, 0).category(), "api_rejected");
        assert_eq!(api(503, 0).category(), "api_transient");
        assert!(WriteError::Timeout(Duration::from_secs(1)).transient());
    }

    #[test]
    fn the_servers_flow_control_is_a_throttle_with_its_delay() {
        assert_eq!(
            api(429, 3),
            WriteError::Throttled {
                code: 429,
                retry_after: Duration::from_secs(3),
                message: "m".into()
            }
        );
        // A 429 without a delay waits the API server's usual second.
        assert!(
            matches!(api(429, 0), WriteError::Throttled { retry_after, .. } if retry_after == Duration::from_secs(1))
        );
        // A 5xx that names a delay is the server asking to come back later.
        assert_eq!(api(504, 2).category(), "throttled");
    }
}
