//! The cost case of issue 19: a heavy routemap and an unrelated routemap's readiness flip,
//! through one [`Index`] as the controller's single index task holds it. Shared by the test
//! (`routemap-index/tests/heavy.rs`) and the bench (`routemap-index/benches/heavy.rs`).

use std::time::{Duration, Instant};

use routemap_index::config::Config;
use routemap_index::index::{Change, Decision, Index};

use crate::{RouteMap, canary_spec, deployment, watched};

/// What one run measured.
#[derive(Debug, Clone)]
pub struct HeavyFigures {
    /// Bytes of the heavy spec.
    pub spec_bytes: usize,
    /// Whether the index judged it valid.
    pub valid: bool,
    /// Parsing and validating it (the routemap watch task's part, `RouteMapObject::from_parts`).
    pub parsed: Duration,
    /// The index task's part: upserting it, which decides it.
    pub indexed: Duration,
    /// From the heavy routemap reaching the index task to the unrelated flip's decision coming
    /// out of it: how long that flip waited, plus its own work.
    pub flip_delayed: Duration,
    /// The same flip with nothing before it.
    pub flip_alone: Duration,
    /// A readiness flip of one of the heavy routemap's own versions (it is planned again).
    pub own_flip: Duration,
}

impl HeavyFigures {
    /// Parsing, validating and deciding the heavy routemap.
    pub fn judged(&self) -> Duration {
        self.parsed + self.indexed
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl std::fmt::Display for HeavyFigures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "judged in {:.3} ms, unrelated flip delayed {:.3} ms",
            ms(self.judged()),
            ms(self.flip_delayed)
        )
    }
}

fn flip(index: &mut Index, ready: bool) -> Vec<Change> {
    index.upsert_resource("deploy", "other", "other-1", deployment(ready))
}

/// Runs the case once with this heavy spec (from [`crate::heavy_canary_spec`] with app `heavy`).
pub fn measure(spec: &str) -> HeavyFigures {
    let mut index = Index::new(&Config::default());
    index.upsert_routemap(RouteMap::new("other", "other-routemap", canary_spec("other")).object());
    for v in 0..2 {
        let name = format!("other-{v}");
        index.upsert_resource("svc", "other", &name, watched());
        index.upsert_resource("deploy", "other", &name, deployment(v == 0));
    }
    let start = Instant::now();
    assert_eq!(flip(&mut index, true).len(), 1, "the flip is a decision");
    let flip_alone = start.elapsed();

    let start = Instant::now();
    let object = RouteMap::new("heavy", "heavy-routemap", spec).object();
    let parsed = start.elapsed();
    let valid = object.spec.is_ok();

    let start = Instant::now();
    let changes = index.upsert_routemap(object);
    let indexed = start.elapsed();
    let flipped = flip(&mut index, false);
    let flip_delayed = start.elapsed();
    assert_eq!(changes.len(), 1, "the heavy routemap is decided");
    assert_eq!(flipped.len(), 1, "the unrelated flip is decided");
    if let Some(Change::Decided { decision, .. }) = changes.first() {
        assert_eq!(matches!(decision, Decision::Desired { .. }), valid);
    }

    let start = Instant::now();
    let own = index.upsert_resource("deploy", "heavy", "heavy-1", deployment(true));
    let own_flip = start.elapsed();
    assert_eq!(
        own.len(),
        usize::from(valid),
        "a valid heavy routemap is decided again"
    );
    HeavyFigures {
        spec_bytes: spec.len(),
        valid,
        parsed,
        indexed,
        flip_delayed,
        flip_alone,
        own_flip,
    }
}
