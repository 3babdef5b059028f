//! Where a routemap's round of writes stands ([`Phase`]), and the only ways it moves.
//!
//! A round starts with the route step: a look (GET) and an apply, or nothing to write (the
//! route is as decided, held by someone else, or there is none). Its result is then told to
//! users: a report (Event and status), after a delete when a route of an old name is due to go.
//! One call at a time per routemap: the executor starts the step the planner hands out and hands
//! its answer back before the next.

use crate::report::RouteResult;

/// Where a routemap's round stands.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) enum Phase {
    /// No round under way: the next step starts one (a decision waiting in `next` is taken up).
    #[default]
    Idle,
    /// A call in flight before the route step has a result: a look or an apply, or a call
    /// outside a round (a report of the gateway's answer, a status written alone, an Event).
    Calling,
    /// The route step is over with this result, still to be told (or a delete is due first).
    RouteDone(RouteResult),
    /// A call in flight after the route step (a report, a delete, an Event); the result waits.
    CallingAfter(RouteResult),
}

impl Phase {
    /// A round is under way: a call in flight, or a route step whose report is still to make.
    pub(super) fn in_round(&self) -> bool {
        !matches!(self, Phase::Idle)
    }

    /// The route step's result, once there is one.
    pub(super) fn result(&self) -> Option<&RouteResult> {
        match self {
            Phase::RouteDone(r) | Phase::CallingAfter(r) => Some(r),
            Phase::Idle | Phase::Calling => None,
        }
    }

    /// The executor took a step: a call is in flight.
    pub(super) fn started(&mut self) {
        *self = match std::mem::take(self) {
            Phase::Idle | Phase::Calling => Phase::Calling,
            Phase::RouteDone(r) | Phase::CallingAfter(r) => Phase::CallingAfter(r),
        };
    }

    /// The call in flight returned (its answer is handled next).
    pub(super) fn returned(&mut self) {
        *self = match std::mem::take(self) {
            Phase::Idle | Phase::Calling => Phase::Idle,
            Phase::RouteDone(r) | Phase::CallingAfter(r) => Phase::RouteDone(r),
        };
    }

    /// The route step ended with `result` (decided without a call, or an apply's answer).
    pub(super) fn route_done(&mut self, result: RouteResult) {
        *self = Phase::RouteDone(result);
    }

    /// The round is over: told, or nothing left to tell.
    pub(super) fn round_over(&mut self) {
        *self = Phase::Idle;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied() -> RouteResult {
        RouteResult::Applied {
            generation: Some(2),
        }
    }

    #[test]
    fn a_round_with_an_apply_then_its_report() {
        let mut p = Phase::Idle;
        assert!(!p.in_round());
        // The look, then the apply: calls before any result.
        p.started();
        assert_eq!((p.clone(), p.in_round()), (Phase::Calling, true));
        p.returned();
        assert_eq!(p, Phase::Idle);
        p.started();
        p.returned();
        p.route_done(applied());
        assert_eq!(p.result(), Some(&applied()));
        // The report keeps the result while in flight, and after it returns until told.
        p.started();
        assert_eq!(p, Phase::CallingAfter(applied()));
        p.returned();
        assert_eq!(p, Phase::RouteDone(applied()));
        p.round_over();
        assert_eq!(
            (p.clone(), p.in_round(), p.result()),
            (Phase::Idle, false, None)
        );
    }

    #[test]
    fn a_round_with_nothing_to_write_has_a_result_without_a_call() {
        let mut p = Phase::Idle;
        p.route_done(RouteResult::Unchanged { generation: None });
        assert!(p.in_round());
        p.round_over();
        assert!(!p.in_round());
    }

    #[test]
    fn a_call_outside_a_round_ends_where_it_began() {
        // A report of the gateway's answer, or a status written alone: no route step.
        let mut p = Phase::Idle;
        p.started();
        assert!(p.in_round(), "a decision that comes now waits for it");
        assert_eq!(p.result(), None);
        p.returned();
        assert_eq!(p, Phase::Idle);
    }

    #[test]
    fn a_failed_apply_is_a_result_to_tell() {
        let mut p = Phase::Idle;
        p.started();
        p.returned();
        let failed = RouteResult::Failed {
            category: "api_transient",
            message: "etcd is slow".into(),
        };
        p.route_done(failed.clone());
        assert_eq!(p.result(), Some(&failed));
    }
}
