//! Spreading candidates' judgements over the interval.

use std::time::Duration;

use iter8_guard::{candidate_key, next_due, offset, schedule};

const TEN_S: Duration = Duration::from_secs(10);

#[test]
fn offsets_are_stable_values_within_the_interval() {
    let key = candidate_key("test", "httpbin-routemap", "httpbin-1");
    assert_eq!(key, "test/httpbin-routemap/httpbin-1");
    // Pinned: a change of hash would move every candidate's slot after an upgrade.
    let pinned = offset(&key, TEN_S);
    assert_eq!(pinned, offset(&key, TEN_S));
    assert_eq!(pinned, Duration::from_millis(PINNED_MS), "{pinned:?}");
    assert!(offset(&key, TEN_S) < TEN_S);
    assert_eq!(offset(&key, Duration::ZERO), Duration::ZERO);
}

const PINNED_MS: u64 = 5931;

#[test]
fn a_thousand_releases_spread_over_the_interval() {
    let keys: Vec<String> = (0..1000)
        .map(|i| {
            candidate_key(
                &format!("ns-{}", i % 7),
                &format!("app-{i}-routemap"),
                &format!("app-{i}-1"),
            )
        })
        .collect();
    let mut per_second = [0u32; 10];
    for k in &keys {
        let o = offset(k, TEN_S);
        assert!(o < TEN_S);
        per_second[o.as_secs() as usize] += 1;
    }
    // Even spread is 100 per second; a burst would show as one second far above it.
    for (s, n) in per_second.iter().enumerate() {
        assert!(
            (60..=140).contains(n),
            "second {s}: {n} of 1000 ({per_second:?})"
        );
    }
    // Keys that differ only in their last character still land apart.
    let a = offset("test/app-routemap/app-1", TEN_S);
    let b = offset("test/app-routemap/app-2", TEN_S);
    assert_ne!(a, b);
}

#[test]
fn schedule_orders_by_offset_and_keeps_each_key_slot() {
    let keys = ["a/r/v1", "b/r/v1", "c/r/v1", "d/r/v1"];
    let s = schedule(keys.iter().copied(), TEN_S);
    assert_eq!(s.len(), 4);
    assert!(s.windows(2).all(|w| w[0].1 <= w[1].1));
    // Adding a candidate moves no one else.
    let more = schedule(keys.iter().copied().chain(["e/r/v1"]), TEN_S);
    for (k, o) in &s {
        assert!(more.contains(&(*k, *o)));
    }
}

#[test]
fn next_due_is_the_next_slot_strictly_after_now() {
    let o = Duration::from_secs(4);
    assert_eq!(
        next_due(Duration::from_millis(12_300), o, TEN_S),
        Duration::from_secs(14)
    );
    assert_eq!(
        next_due(Duration::from_secs(14), o, TEN_S),
        Duration::from_secs(24)
    );
    assert_eq!(
        next_due(Duration::from_secs(15), o, TEN_S),
        Duration::from_secs(24)
    );
    assert_eq!(next_due(Duration::ZERO, Duration::ZERO, TEN_S), TEN_S);
}
