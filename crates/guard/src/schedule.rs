//! When in each interval a candidate is judged: at a fixed offset from a stable hash of its key,
//! so that a thousand guarded releases spread their queries over the interval instead of
//! hitting Prometheus in one burst, and a candidate keeps its slot across restarts and as
//! others come and go (an offset from a rank among all candidates would move every slot at
//! each change).
//!
//! The hash is FNV-1a (64 bit), written out here because its value must never change between
//! builds: the standard library's hashers are allowed to change theirs between Rust releases.

use std::time::Duration;

/// The key a candidate is scheduled by: `namespace/routemap/version`.
pub fn candidate_key(namespace: &str, routemap: &str, version: &str) -> String {
    format!("{namespace}/{routemap}/{version}")
}

/// FNV-1a, 64 bit.
fn fnv1a(bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes
        .iter()
        .fold(OFFSET_BASIS, |h, b| (h ^ u64::from(*b)).wrapping_mul(PRIME))
}

/// A key's offset within `interval`: in `[0, interval)`, millisecond steps (zero for an
/// interval under a millisecond).
pub fn offset(key: &str, interval: Duration) -> Duration {
    let millis = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX);
    // FNV's low bits mix poorly for short keys that differ in their last byte; a final
    // avalanche step spreads them before the range is taken.
    let h = avalanche(fnv1a(key.as_bytes()));
    // Multiply-shift maps the hash onto [0, millis) without the bias of a modulo.
    let slot = (u128::from(h) * u128::from(millis)) >> 64;
    Duration::from_millis(u64::try_from(slot).unwrap_or(0))
}

/// The finalizer of MurmurHash3 (fmix64): every input bit affects every output bit.
fn avalanche(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// Every key's offset within `interval`, soonest first (ties by key, so the order is stable).
pub fn schedule<'a>(
    keys: impl IntoIterator<Item = &'a str>,
    interval: Duration,
) -> Vec<(&'a str, Duration)> {
    let mut out: Vec<(&str, Duration)> =
        keys.into_iter().map(|k| (k, offset(k, interval))).collect();
    out.sort_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(b.0)));
    out
}

/// When a candidate judged at `offset` within each `interval` is next due after `now` (both
/// measured from one fixed epoch the caller keeps, e.g. the process start): strictly later than
/// `now`, so a judgement that ran at its instant is not run again.
pub fn next_due(now: Duration, offset: Duration, interval: Duration) -> Duration {
    let interval_ms = u64::try_from(interval.as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    let now_ms = u64::try_from(now.as_millis()).unwrap_or(u64::MAX);
    let offset_ms = u64::try_from(offset.as_millis()).unwrap_or(0) % interval_ms;
    let base = now_ms - now_ms % interval_ms;
    let mut due = base.saturating_add(offset_ms);
    if due <= now_ms {
        due = due.saturating_add(interval_ms);
    }
    Duration::from_millis(due)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_its_published_test_vectors() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }
}
