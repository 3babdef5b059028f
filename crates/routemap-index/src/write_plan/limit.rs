//! How many calls the writer has in flight: additive increase, multiplicative decrease on the
//! API server's 429s, between 1 and the configured maximum.
//!
//! A server that throttles is answering "fewer at once"; keeping the configured number in flight
//! would turn each wait into another burst of 429s. One throttled answer halves the limit; the
//! other answers of calls started before that halving say nothing new and do not halve it
//! again. Each call that goes through adds `1 / limit`, so the limit grows by about one per
//! round of calls, back to the maximum.

use std::time::Instant;

/// The in-flight limit. Times are passed in.
#[derive(Debug, Clone)]
pub struct InFlightLimit {
    max: f64,
    limit: f64,
    /// When the limit was last halved: a throttled call started before then was part of the
    /// burst that halving answered.
    cut_at: Option<Instant>,
}

impl InFlightLimit {
    /// A limit of `max` (at least 1) calls in flight.
    pub fn new(max: usize) -> Self {
        let max = max.max(1) as f64;
        InFlightLimit {
            max,
            limit: max,
            cut_at: None,
        }
    }

    /// Calls that may be in flight now.
    pub fn current(&self) -> usize {
        self.limit.floor().max(1.0) as usize
    }

    /// The configured maximum.
    pub fn max(&self) -> usize {
        self.max as usize
    }

    /// A call started at `started` was throttled (429) at `now`.
    pub fn throttled(&mut self, started: Instant, now: Instant) {
        if self.cut_at.is_some_and(|cut| started < cut) {
            return;
        }
        self.limit = (self.limit / 2.0).max(1.0);
        self.cut_at = Some(now);
    }

    /// A call got an answer that was not a throttle.
    pub fn answered(&mut self) {
        self.limit = (self.limit + 1.0 / self.limit).min(self.max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    #[test]
    fn one_burst_of_429s_halves_the_limit_once() {
        let t0 = Instant::now();
        let mut l = InFlightLimit::new(16);
        let at = t0 + Duration::from_millis(5);
        // 16 calls started at t0 all come back throttled: one halving.
        for _ in 0..16 {
            l.throttled(t0, at);
        }
        assert_eq!(l.current(), 8);
        // A call started after that halving and throttled again halves it again.
        l.throttled(at + Duration::from_millis(1), at + Duration::from_millis(9));
        assert_eq!(l.current(), 4);
    }

    #[test]
    fn it_never_goes_below_one_and_grows_back_by_about_one_per_round() {
        let t0 = Instant::now();
        let mut l = InFlightLimit::new(16);
        for i in 0..10u64 {
            let t = t0 + Duration::from_millis(i);
            l.throttled(t, t);
        }
        assert_eq!(l.current(), 1);
        // Each answer adds 1/limit: from 1 back to 16 takes about (16² - 1) / 2 answers, one
        // more in flight per round of answers, never a jump.
        let (mut answers, mut last) = (0, 1);
        while l.current() < 16 {
            l.answered();
            answers += 1;
            assert!(l.current() - last <= 1, "grew by more than one");
            last = l.current();
        }
        assert!((120..=140).contains(&answers), "{answers} answers");
        for _ in 0..100 {
            l.answered();
        }
        assert_eq!(l.current(), 16, "capped at the maximum");
    }

    #[test]
    fn a_maximum_of_zero_is_one() {
        let l = InFlightLimit::new(0);
        assert_eq!((l.current(), l.max()), (1, 1));
    }

    proptest! {
        /// Whatever the answers, the limit stays within 1..=max.
        #[test]
        fn the_limit_stays_within_bounds(max in 1usize..64, answers in proptest::collection::vec(any::<(bool, u8)>(), 0..500)) {
            let t0 = Instant::now();
            let mut l = InFlightLimit::new(max);
            for (i, (throttled, back)) in answers.into_iter().enumerate() {
                let now = t0 + Duration::from_millis(i as u64 * 10);
                if throttled {
                    l.throttled(now - Duration::from_millis(u64::from(back)), now);
                } else {
                    l.answered();
                }
                prop_assert!((1..=max).contains(&l.current()));
            }
        }
    }
}
