//! One Event to publish: what both the decision reports ([`crate::report`]) and the gateway's
//! answers ([`crate::gateway`]) hand the writer, in a module of its own so that neither of
//! those imports the other's.

/// One Event to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventNote {
    /// Warning (true) or Normal.
    pub warning: bool,
    /// The reason (`RouteApplied`, `InvalidRouteMap`, `RouteAccepted`, ...; README lists them).
    pub reason: &'static str,
    /// The message users read.
    pub note: String,
}
