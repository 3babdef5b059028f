//! Unit tests of `leader.rs`: the timings and a candidate's view of the Lease.

use super::*;

fn lease(holder: Option<&str>, rv: &str) -> Lease {
    serde_json::from_value(json!({
        "metadata": {"name": "l", "resourceVersion": rv},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15, "leaseTransitions": 3},
    }))
    .expect("a Lease")
}

#[test]
fn the_default_timings_nest_with_a_margin() {
    let t = Timings::default();
    t.validate().expect("valid");
    // The margin a deposed leader's last write has before anyone may take over.
    assert_eq!(t.lease_duration - t.renew_deadline, Duration::from_secs(5));
    let bad = Timings {
        renew_deadline: t.lease_duration,
        ..t
    };
    assert!(bad.validate().is_err());
}

#[test]
fn a_candidate_waits_a_lease_duration_from_when_it_saw_the_last_change() {
    let t0 = Instant::now();
    let seen = Seen::read(&lease(Some("a"), "1"), None, t0);
    assert!(!seen.may_take("b", t0 + Duration::from_secs(14)));
    assert!(seen.may_take("b", t0 + Duration::from_secs(15)));
    // A renewal seen later restarts the wait; re-reading the same version does not.
    let same = Seen::read(
        &lease(Some("a"), "1"),
        Some(&seen),
        t0 + Duration::from_secs(10),
    );
    assert_eq!(same.since, t0);
    let renewed = Seen::read(
        &lease(Some("a"), "2"),
        Some(&seen),
        t0 + Duration::from_secs(10),
    );
    assert!(!renewed.may_take("b", t0 + Duration::from_secs(15)));
    assert!(renewed.may_take("b", t0 + Duration::from_secs(25)));
}

#[test]
fn a_released_lease_or_our_own_is_taken_at_once() {
    let t0 = Instant::now();
    assert!(Seen::read(&lease(None, "1"), None, t0).may_take("b", t0));
    assert!(Seen::read(&lease(Some(""), "1"), None, t0).may_take("b", t0));
    assert!(Seen::read(&lease(Some("b"), "1"), None, t0).may_take("b", t0));
}

#[test]
fn a_candidate_looks_again_at_expiry_or_after_the_retry_period() {
    let t0 = Instant::now();
    let seen = Seen::read(&lease(Some("a"), "1"), None, t0);
    let retry = Duration::from_secs(2);
    assert_eq!(seen.next_look(t0, retry), t0 + retry);
    let late = t0 + Duration::from_secs(14);
    assert_eq!(seen.next_look(late, retry), t0 + Duration::from_secs(15));
}
