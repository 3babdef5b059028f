//! A candidate's guard state: withdrawn after `failAfter` failing verdicts in a row, never on
//! unknown alone, and judged afresh whenever its identity changes.

use std::time::Duration;

use iter8_guard::{
    CandidateGuard, Finding, Identity, Objective, Outcome, Phase, Refresh, Step, Unknown, Verdict,
    VerdictKind,
};
use proptest::prelude::*;

fn id(fingerprint: &str, retry: Option<&str>) -> Identity {
    Identity {
        fingerprint: fingerprint.into(),
        retry: retry.map(str::to_string),
    }
}

/// A verdict of `kind`, with findings as `judge` would give them.
fn verdict(kind: VerdictKind) -> Verdict {
    let outcome = match kind {
        VerdictKind::Healthy => Outcome::Healthy(0.001),
        VerdictKind::Failing => Outcome::Failing(0.042),
        VerdictKind::Unknown => Outcome::Unknown(Unknown::NotEnoughTraffic {
            requests: 3.0,
            min: 20,
        }),
    };
    Verdict {
        kind,
        requests: Some(340.0),
        window: Duration::from_secs(60),
        findings: vec![Finding {
            objective: Objective::ErrorRate,
            limit: 0.01,
            query: "the errorRate query".into(),
            outcome,
        }],
    }
}

use VerdictKind::{Failing, Healthy, Unknown as Unk};

#[test]
fn withdrawn_at_fail_after_with_what_the_event_names() {
    let me = id("1:app:v2", None);
    let mut g = CandidateGuard::new(me.clone());
    assert_eq!(
        g.record(&me, &verdict(Failing), 2),
        Step::Judging { failing: 1 }
    );
    let Step::Withdraw(w) = g.record(&me, &verdict(Failing), 2) else {
        panic!("withdrawn at the second failure: {g:?}")
    };
    assert_eq!(w.objective, Objective::ErrorRate);
    assert_eq!(
        (w.value, w.limit, w.requests),
        (Some(0.042), 0.01, Some(340.0))
    );
    assert_eq!(w.window, Duration::from_secs(60));
    assert_eq!(w.query, "the errorRate query");
    assert_eq!(
        w.to_string(),
        "errorRate 0.042 is over the limit 0.01 over 1m (340 requests), 2 failing verdicts in a row; query: the errorRate query"
    );
    assert!(g.is_withdrawn() && !g.wants_judging());
    // Stays withdrawn, even when healthy (it gets no traffic), and says so only once.
    assert_eq!(g.record(&me, &verdict(Healthy), 2), Step::StaysWithdrawn);
    assert_eq!(g.record(&me, &verdict(Failing), 2), Step::StaysWithdrawn);
}

#[test]
fn healthy_resets_and_unknown_neither_counts_nor_resets() {
    let me = id("1", None);
    let mut g = CandidateGuard::new(me.clone());
    g.record(&me, &verdict(Failing), 3);
    assert_eq!(
        g.record(&me, &verdict(Unk), 3),
        Step::Judging { failing: 1 }
    );
    assert_eq!(
        g.record(&me, &verdict(Failing), 3),
        Step::Judging { failing: 2 }
    );
    assert_eq!(
        g.record(&me, &verdict(Healthy), 3),
        Step::Judging { failing: 0 }
    );
    assert_eq!(*g.phase(), Phase::Judging { failing: 0 });
}

#[test]
fn an_unknown_counted_as_failing_names_why_it_was_unknown() {
    // With unknownFails, judge() gives a failing verdict whose deciding finding is unknown.
    let mut v = verdict(Unk);
    v.kind = Failing;
    let me = id("1", None);
    let mut g = CandidateGuard::new(me.clone());
    let Step::Withdraw(w) = g.record(&me, &v, 1) else {
        panic!("withdrawn")
    };
    assert_eq!(w.value, None);
    assert_eq!(
        w.to_string(),
        "errorRate could not be judged (not enough traffic: 3 requests, fewer than minRequests 20) and unknownFails is set (limit 0.01) over 1m (340 requests), 1 failing verdict in a row; query: the errorRate query"
    );
}

#[test]
fn a_new_version_or_retry_token_reinstates_and_judges_afresh() {
    let old = id("1:app:v2", None);
    let mut g = CandidateGuard::new(old.clone());
    g.record(&old, &verdict(Failing), 1);
    assert!(g.is_withdrawn());
    assert_eq!(g.refresh(&old), Refresh::Unchanged);
    let retried = id("1:app:v2", Some("2026-12-06T19:00"));
    assert_eq!(g.refresh(&retried), Refresh::Reinstated);
    assert_eq!(*g.phase(), Phase::Judging { failing: 0 });
    g.record(&retried, &verdict(Failing), 2);
    let rebuilt = id("2:app:v3", Some("2026-12-06T19:00"));
    assert_eq!(g.refresh(&rebuilt), Refresh::Restarted);
    assert_eq!(
        g.record(&rebuilt, &verdict(Failing), 2),
        Step::Judging { failing: 1 }
    );
}

#[test]
fn withdrawn_by_an_earlier_process_stays_out_while_the_same() {
    let same = id("svc/app-1:-;deploy/app-1:3;", None);
    let mut g = CandidateGuard::withdrawn_earlier(same.clone());
    assert!(g.is_withdrawn() && !g.wants_judging());
    assert_eq!(g.refresh(&same), Refresh::Unchanged);
    assert_eq!(g.record(&same, &verdict(Healthy), 2), Step::StaysWithdrawn);
    // The user asks for a retry: back in, judged from nothing.
    let retried = id("svc/app-1:-;deploy/app-1:3;", Some("1"));
    assert_eq!(g.refresh(&retried), Refresh::Reinstated);
    assert_eq!(*g.phase(), Phase::Judging { failing: 0 });
}

#[test]
fn an_identity_is_kept_as_one_string() {
    assert_eq!(id("deploy/a:2;", None).key(), "deploy/a:2;");
    assert_eq!(id("deploy/a:2;", Some("x")).key(), "deploy/a:2; retry=x");
}

#[test]
fn a_verdict_for_an_older_identity_is_stale() {
    let old = id("1", None);
    let new = id("2", None);
    let mut g = CandidateGuard::new(old.clone());
    g.refresh(&new);
    // Queries made before the rollout must not count against the new version.
    assert_eq!(g.record(&old, &verdict(Failing), 1), Step::Stale);
    assert!(!g.is_withdrawn());
}

fn kind() -> impl Strategy<Value = VerdictKind> {
    prop_oneof![Just(Healthy), Just(Failing), Just(Unk)]
}

proptest! {
    /// Withdrawal happens exactly when `failAfter` failing verdicts have come with no healthy
    /// one between them (unknowns skipped), and never earlier.
    #[test]
    fn withdrawn_exactly_after_fail_after_failures_in_a_row(
        kinds in prop::collection::vec(kind(), 0..60),
        fail_after in 1u32..6,
    ) {
        let me = id("f", None);
        let mut g = CandidateGuard::new(me.clone());
        let mut run = 0u32;
        let mut expect_withdrawn = false;
        for k in kinds {
            let step = g.record(&me, &verdict(k), fail_after);
            if !expect_withdrawn {
                run = match k { Healthy => 0, Unk => run, Failing => run + 1 };
                if run >= fail_after {
                    expect_withdrawn = true;
                    prop_assert!(matches!(step, Step::Withdraw(_)), "{step:?}");
                } else {
                    prop_assert_eq!(step, Step::Judging { failing: run });
                }
            } else {
                prop_assert_eq!(step, Step::StaysWithdrawn);
            }
            prop_assert_eq!(g.is_withdrawn(), expect_withdrawn);
        }
    }

    /// Unknown alone (without unknownFails, which makes it failing before it gets here) never
    /// withdraws, however long it lasts.
    #[test]
    fn never_withdrawn_on_unknown_or_healthy_alone(
        kinds in prop::collection::vec(prop_oneof![Just(Healthy), Just(Unk)], 0..200),
        fail_after in 1u32..100,
    ) {
        let me = id("f", None);
        let mut g = CandidateGuard::new(me.clone());
        for k in kinds {
            g.record(&me, &verdict(k), fail_after);
            prop_assert!(!g.is_withdrawn());
        }
    }

    /// Whatever happened before, a new identity starts from nothing.
    #[test]
    fn a_new_identity_always_clears(
        kinds in prop::collection::vec(kind(), 0..40),
        fail_after in 1u32..4,
        fingerprint_changes in any::<bool>(),
    ) {
        let me = id("f", None);
        let mut g = CandidateGuard::new(me.clone());
        for k in kinds {
            g.record(&me, &verdict(k), fail_after);
        }
        let was_withdrawn = g.is_withdrawn();
        let next = if fingerprint_changes { id("g", None) } else { id("f", Some("retry")) };
        let r = g.refresh(&next);
        prop_assert_eq!(r, if was_withdrawn { Refresh::Reinstated } else { Refresh::Restarted });
        prop_assert_eq!(g.phase(), &Phase::Judging { failing: 0 });
    }
}
