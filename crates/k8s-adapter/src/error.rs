//! Errors of the calls the controller makes to the API server.

use std::time::Duration;

/// A failed API write.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    /// No answer within the per-call timeout.
    #[error("no answer from the API server within {0:?}")]
    Timeout(Duration),
    /// The API server is overloaded or failing (5xx, 429) or the write conflicted (409).
    #[error("API server answered {code}: {message}")]
    Unavailable {
        /// HTTP status.
        code: u16,
        /// Server message.
        message: String,
    },
    /// The API server refused the object (4xx other than 409/429).
    #[error("API server rejected it ({code}): {message}")]
    Rejected {
        /// HTTP status.
        code: u16,
        /// Server message.
        message: String,
    },
    /// The request did not reach the server or the answer was unreadable.
    #[error("cannot reach the API server: {0}")]
    Connection(String),
    /// The planned route does not fit the Gateway API model (a bug: tested against).
    #[error("route does not fit the gateway-api model: {0}")]
    Encode(String),
}

impl WriteError {
    /// Maps a kube client error.
    pub fn from_kube(e: kube::Error) -> Self {
        match e {
            kube::Error::Api(status) => {
                let code = status.code;
                let message = status.message.clone();
                if code >= 500 || code == 429 || code == 409 {
                    WriteError::Unavailable { code, message }
                } else {
                    WriteError::Rejected { code, message }
                }
            }
            other => WriteError::Connection(other.to_string()),
        }
    }

    /// Worth retrying soon.
    pub fn transient(&self) -> bool {
        !matches!(self, WriteError::Rejected { .. } | WriteError::Encode(_))
    }

    /// A bounded label for metrics.
    pub fn category(&self) -> &'static str {
        match self {
            WriteError::Timeout(_) => "timeout",
            WriteError::Unavailable { .. } | WriteError::Connection(_) => "api_transient",
            WriteError::Rejected { .. } => "api_rejected",
            WriteError::Encode(_) => "internal",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_classified_for_retry() {
        let api = |code: u16| {
            WriteError::from_kube(kube::Error::Api(Box::new(kube::core::Status {
                code,
                message: "m".into(),
                ..Default::default()
            })))
        };
        assert!(api(503).transient() && api(429).transient() && api(409).transient());
        assert!(!api(422).transient() && !api(403).transient());
        assert_eq!(api(422).category(), "api_rejected");
        assert!(WriteError::Timeout(Duration::from_secs(1)).transient());
    }
}
