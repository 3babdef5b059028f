//! What can go wrong, and the exit code of each (documented in `docs/kubectl.md` and `--help`).

/// Exit codes.
pub mod exit {
    /// Everything shown, every routemap valid.
    pub const OK: u8 = 0;
    /// No such release, or a routemap shown is invalid.
    pub const NOT_FOUND_OR_INVALID: u8 = 1;
    /// Bad command line, or a kubeconfig/context that cannot be used.
    pub const USAGE: u8 = 2;
    /// The API server refused a read (403).
    pub const FORBIDDEN: u8 = 3;
    /// The API server cannot be reached.
    pub const UNREACHABLE: u8 = 4;
    /// The Gateway API HTTPRoute CRD is not installed.
    pub const CRD_MISSING: u8 = 5;
}

/// An error that ends the command, with what the user can do about it.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// No routemap for the release in the namespace(s) looked at.
    #[error(
        "no release {release:?} in {scope}: no ConfigMap {release}-routemap or {release} labelled iter8.tools/kind=routemap"
    )]
    NotFound {
        /// The release asked for.
        release: String,
        /// `namespace "test"` or `any namespace`.
        scope: String,
    },
    /// The kubeconfig, context or controller config cannot be used.
    #[error("{0}")]
    Config(String),
    /// A 403: names the verb and resource the user lacks.
    #[error(
        "forbidden: you may not {verb} {resource}{where_}: {message}\n  kubectl-iter8 only reads; docs/kubectl.md has a Role granting what it needs"
    )]
    Forbidden {
        /// `list`, `watch`, `get`.
        verb: String,
        /// `configmaps`, `httproutes.gateway.networking.k8s.io`, ...
        resource: String,
        /// ` in namespace "test"` or empty.
        where_: String,
        /// The API server's message.
        message: String,
    },
    /// HTTPRoutes are not served: the Gateway API CRDs are not installed.
    #[error(
        "the API server does not serve httproutes.gateway.networking.k8s.io (404): install the Gateway API CRDs (standard channel)"
    )]
    CrdMissing,
    /// No answer from the API server.
    #[error("cannot reach the API server of {context}: {message}")]
    Unreachable {
        /// Context name and server URL.
        context: String,
        /// The client's error.
        message: String,
    },
    /// Any other API error.
    #[error("{0}")]
    Api(String),
}

impl CliError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::NotFound { .. } => exit::NOT_FOUND_OR_INVALID,
            CliError::Config(_) => exit::USAGE,
            CliError::Forbidden { .. } => exit::FORBIDDEN,
            CliError::CrdMissing => exit::CRD_MISSING,
            CliError::Unreachable { .. } => exit::UNREACHABLE,
            CliError::Api(_) => exit::NOT_FOUND_OR_INVALID,
        }
    }
}

/// The verb and resource a 403 message names: `... cannot list resource "configmaps" in API
/// group "" in the namespace "test"` -> (`list`, `configmaps`, ` in namespace "test"`).
pub fn forbidden_parts(message: &str) -> Option<(String, String, String)> {
    let rest = &message[message.find("cannot ")? + "cannot ".len()..];
    let (verb, rest) = rest.split_once(' ')?;
    let rest = rest.strip_prefix("resource \"")?;
    let (resource, rest) = rest.split_once('"')?;
    let group = rest
        .strip_prefix(" in API group \"")
        .and_then(|r| r.split_once('"'))
        .map(|(g, _)| g)
        .unwrap_or_default();
    let resource = if group.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}.{group}")
    };
    let where_ = rest
        .split_once("in the namespace \"")
        .and_then(|(_, r)| r.split_once('"'))
        .map(|(ns, _)| format!(" in namespace {ns:?}"))
        .unwrap_or_else(|| {
            if rest.contains("at the cluster scope") {
                " at the cluster scope".into()
            } else {
                String::new()
            }
        });
    Some((verb.to_string(), resource, where_))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_403_message_names_verb_resource_and_namespace() {
        let m = r#"httproutes.gateway.networking.k8s.io is forbidden: User "alice" cannot list resource "httproutes" in API group "gateway.networking.k8s.io" in the namespace "test""#;
        assert_eq!(
            forbidden_parts(m),
            Some((
                "list".into(),
                "httproutes.gateway.networking.k8s.io".into(),
                r#" in namespace "test""#.into()
            ))
        );
        let m = r#"configmaps is forbidden: User "bob" cannot watch resource "configmaps" in API group "" at the cluster scope"#;
        assert_eq!(
            forbidden_parts(m),
            Some((
                "watch".into(),
                "configmaps".into(),
                " at the cluster scope".into()
            ))
        );
        assert_eq!(forbidden_parts("something else"), None);
    }
}
