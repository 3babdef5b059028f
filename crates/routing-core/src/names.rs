//! The name syntaxes of Kubernetes and the Gateway API CRD (v1.6.1 standard channel), each a
//! check that names the field path, so that whatever the API server or the CRD would refuse in
//! the route we write is refused first, in validation, with a message a user can act on.

use std::fmt::Display;

use crate::error::SpecError;

type Result<T = ()> = std::result::Result<T, SpecError>;

/// Longest label value (Kubernetes).
pub const MAX_LABEL_VALUE: usize = 63;

/// A value as shown in an error: quoted, and cut after 64 characters (with its length), so an
/// error about a huge value stays small enough for an Event and the status.
pub fn shown(s: &str) -> String {
    if s.chars().count() <= 64 {
        format!("{s:?}")
    } else {
        let head: String = s.chars().take(64).collect();
        format!("{head:?}... ({} bytes)", s.len())
    }
}

/// RFC 1123 label: lowercase alphanumerics and '-', 1-63, alphanumeric at both ends.
pub fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// RFC 1123 subdomain: dot-separated labels, 1-253 characters.
pub fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// A Kubernetes label value: empty, or 1-63 of `A-Z a-z 0-9 - _ .`, alphanumeric at both ends.
pub fn is_label_value(s: &str) -> bool {
    let b = s.as_bytes();
    b.is_empty()
        || (b.len() <= MAX_LABEL_VALUE
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(c))
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric())
}

pub(crate) fn check_dns_label(at: &dyn Display, s: &str) -> Result {
    if is_dns_label(s) {
        Ok(())
    } else {
        Err(SpecError::field(
            at.to_string(),
            format!(
                "{} is not a valid name (lowercase letters, digits and '-', 1-63 characters, alphanumeric at both ends)",
                shown(s)
            ),
        ))
    }
}

pub(crate) fn check_dns_subdomain(at: &dyn Display, s: &str) -> Result {
    if is_dns_subdomain(s) {
        Ok(())
    } else {
        Err(SpecError::field(
            at.to_string(),
            format!(
                "{} is not a valid name (lowercase RFC 1123 subdomain: letters, digits, '-' and '.', 1-253 characters)",
                shown(s)
            ),
        ))
    }
}

/// Gateway API Hostname: an RFC 1123 subdomain, optionally `*.`-prefixed, at most 253
/// characters, and not an IP address (the CRD's pattern lets a dotted quad through; the spec
/// forbids IPs).
pub(crate) fn check_hostname(at: &dyn Display, s: &str) -> Result {
    let rest = s.strip_prefix("*.").unwrap_or(s);
    if s.len() > 253 || !rest.split('.').all(is_dns_label) {
        return Err(SpecError::field(
            at.to_string(),
            format!(
                "{} is not a valid hostname (lowercase DNS name, optional leading '*.')",
                shown(s)
            ),
        ));
    }
    if rest.parse::<std::net::Ipv4Addr>().is_ok() {
        return Err(SpecError::field(
            at.to_string(),
            format!("{s:?} is an IP address; Gateway API hostnames must be DNS names"),
        ));
    }
    Ok(())
}

/// Gateway API Group: empty (the core group) or an RFC 1123 subdomain.
pub(crate) fn check_group(at: &dyn Display, s: &str) -> Result {
    if s.is_empty() || is_dns_subdomain(s) {
        Ok(())
    } else {
        Err(SpecError::field(
            at.to_string(),
            format!(
                "{} is not a valid API group (empty for the core group, else a lowercase DNS subdomain of at most 253 characters)",
                shown(s)
            ),
        ))
    }
}

/// Gateway API Kind: 1-63, a letter then letters, digits and '-', alphanumeric at the end.
pub(crate) fn check_kind(at: &dyn Display, s: &str) -> Result {
    let b = s.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphabetic()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-');
    if ok {
        Ok(())
    } else {
        Err(SpecError::field(
            at.to_string(),
            format!(
                "{} is not a valid kind (1-63 letters, digits and '-', starting with a letter, e.g. Gateway or Service)",
                shown(s)
            ),
        ))
    }
}

/// Gateway API HeaderName (also the query parameter names): 1-256 token characters.
pub(crate) fn check_header_name(at: &dyn Display, name: &str) -> Result {
    let ok = !name.is_empty()
        && name.len() <= 256
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(SpecError::field(
            at.to_string(),
            format!(
                "{} is not a valid header name (1-256 of A-Z a-z 0-9 !#$%&'*+-.^_`|~)",
                shown(name)
            ),
        ))
    }
}

pub(crate) fn check_port(at: &dyn Display, port: u32) -> Result {
    if (1..=65535).contains(&port) {
        Ok(())
    } else {
        Err(SpecError::field(
            at.to_string(),
            format!("{port} is not a port (1-65535)"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values() {
        for ok in ["", "a", "httpbin-routemap", "A_b.c-9", &"x".repeat(63)] {
            assert!(is_label_value(ok), "{ok}");
        }
        for bad in ["-a", "a-", "a/b", "a b", &"x".repeat(64), "é"] {
            assert!(!is_label_value(bad), "{bad}");
        }
    }

    #[test]
    fn hostnames() {
        for ok in [
            "httpbin",
            "a.example.com",
            "*.example.com",
            "1a.example",
            "10.0.0.1a",
        ] {
            assert!(check_hostname(&"h", ok).is_ok(), "{ok}");
        }
        for bad in [
            "10.0.0.1",
            "*.10.0.0.1",
            "::1",
            "*",
            "a.*.com",
            "Upper.com",
            "",
            &format!("{}.com", "a.".repeat(127)),
        ] {
            assert!(check_hostname(&"h", bad).is_err(), "{bad}");
        }
        let e = check_hostname(&"route.hostnames[0]", "192.168.1.1").expect_err("an IP");
        assert_eq!(
            e.to_string(),
            "route.hostnames[0]: \"192.168.1.1\" is an IP address; Gateway API hostnames must be DNS names"
        );
    }

    #[test]
    fn groups_and_kinds() {
        for ok in ["", "gateway.networking.k8s.io", "example.com"] {
            assert!(check_group(&"g", ok).is_ok(), "{ok}");
        }
        for bad in ["Gateway.Networking", "a..b", "-a", &"a".repeat(254)] {
            assert!(check_group(&"g", bad).is_err(), "{bad}");
        }
        for ok in ["Gateway", "Service", "My-Kind2"] {
            assert!(check_kind(&"k", ok).is_ok(), "{ok}");
        }
        for bad in ["", "1Gateway", "Gate_way", "Gateway-", &"K".repeat(64)] {
            assert!(check_kind(&"k", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn header_names_are_shown_shortened() {
        let long = format!("{}\u{7f}", "x".repeat(300_000));
        let e = check_header_name(&"h", &long).expect_err("invalid");
        assert!(e.to_string().len() < 300, "{e}");
        assert!(check_header_name(&"h", "traffic").is_ok());
        assert!(check_header_name(&"h", &"x".repeat(257)).is_err());
    }
}
