//! Typed errors with bounded categories (for metrics labels).

use thiserror::Error;

/// A routemap spec that cannot be used. The message names the field path and the reason.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SpecError {
    /// The YAML itself does not parse; the message carries the line and column.
    #[error("invalid YAML: {0}")]
    Syntax(String),
    /// A field is missing, unknown, of the wrong type, or breaks a rule.
    #[error("{path}: {reason}")]
    Field {
        /// Where, e.g. `versions[1].matches[0].headers[0].name`.
        path: String,
        /// Why, in words a user can act on.
        reason: String,
    },
}

/// Longest path or reason kept in an error: a parser's message may quote the input (an unknown
/// field or variant of 300 KB), and errors end up in Events and the status annotation.
pub const MAX_ERROR_PART: usize = 512;

/// `s` cut to [`MAX_ERROR_PART`] bytes (at a character boundary), saying how long it was.
pub(crate) fn bounded(s: String) -> String {
    if s.len() <= MAX_ERROR_PART {
        return s;
    }
    let mut end = MAX_ERROR_PART;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes in all)", &s[..end], s.len())
}

impl SpecError {
    pub(crate) fn field(path: impl Into<String>, reason: impl Into<String>) -> Self {
        SpecError::Field {
            path: path.into(),
            reason: reason.into(),
        }
    }

    /// The field path, when the error is about one field.
    pub fn path(&self) -> Option<&str> {
        match self {
            SpecError::Syntax(_) => None,
            SpecError::Field { path, .. } => Some(path),
        }
    }

    /// A bounded label for metrics.
    pub fn category(&self) -> &'static str {
        match self {
            SpecError::Syntax(_) => "yaml",
            SpecError::Field { .. } => "spec",
        }
    }
}

/// Planning failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PlanError {
    /// The spec is invalid.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// The caller passed a state list that does not line up with the versions.
    #[error("{versions} versions but {states} version states")]
    StateMismatch {
        /// Number of versions in the spec.
        versions: usize,
        /// Number of states given.
        states: usize,
    },
}

impl PlanError {
    /// A bounded label for metrics.
    pub fn category(&self) -> &'static str {
        match self {
            PlanError::Spec(e) => e.category(),
            PlanError::StateMismatch { .. } => "internal",
        }
    }
}
