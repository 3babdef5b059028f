//! Reading a routemap spec: parsed strictly (JSON first, as the release chart writes it, then
//! YAML), then validated ([`crate::validate`]), so a spec that is read can always be planned.

use crate::error::{SpecError, bounded};
use crate::keys::ROUTEMAP_DATA_KEY;
use crate::spec::RouteMapSpec;

/// The first line of a parser message, without its `error: ` prefix (the rest is a snippet).
fn first_line(message: &str) -> String {
    let line = message.lines().next().unwrap_or(message);
    line.strip_prefix("error: ").unwrap_or(line).to_string()
}

impl RouteMapSpec {
    /// Parses a spec from YAML (the routemap's `routemap.yaml` value) and validates it.
    ///
    /// Errors name the field path (`versions[1].port: ...`) or, for YAML syntax, the line.
    pub fn from_yaml(text: &str) -> Result<Self, SpecError> {
        // JSON is YAML, and the release chart writes specs as JSON, which serde_json reads
        // without a YAML parser's work (figures in docs/performance.md). Any JSON parse error
        // falls through to the YAML parse, so errors read the same whichever way the spec is
        // written.
        if text.trim_start().starts_with('{')
            && let Ok(spec) = serde_json::from_str::<Self>(text)
        {
            return spec.checked();
        }
        // YAML 1.2 booleans, and typed parsing: `value: yes` or `name: y` are strings here.
        let mut options = serde_saphyr::Options::default();
        options.strict_booleans = true;
        match serde_saphyr::from_str_with_options::<Option<Self>>(text, options.clone()) {
            Ok(Some(spec)) => spec.checked(),
            Ok(None) => Err(SpecError::field(ROUTEMAP_DATA_KEY, "the spec is empty")),
            // Parse again untyped to name the field path of the problem.
            Err(typed) => {
                match serde_saphyr::from_str_with_options::<serde_json::Value>(text, options) {
                    Err(e) => Err(SpecError::Syntax(bounded(first_line(&e.to_string())))),
                    Ok(value) => match Self::from_json_value(value) {
                        Err(e) => Err(e),
                        Ok(_) => Err(SpecError::Syntax(bounded(first_line(&typed.to_string())))),
                    },
                }
            }
        }
    }

    /// Parses a spec from an already-decoded JSON value and validates it.
    pub fn from_json_value(value: serde_json::Value) -> Result<Self, SpecError> {
        if value.is_null() {
            return Err(SpecError::field(ROUTEMAP_DATA_KEY, "the spec is empty"));
        }
        let spec: Self = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            SpecError::Field {
                path: bounded(if path == "." { "spec".into() } else { path }),
                reason: bounded(e.into_inner().to_string()),
            }
        })?;
        spec.checked()
    }

    /// A parsed spec, validated, with its regexes compiled, and without spare capacity.
    fn checked(mut self) -> Result<Self, SpecError> {
        self.regexes = crate::validate::validate_and_compile(&self)?;
        self.shrink_to_fit();
        Ok(self)
    }
}
