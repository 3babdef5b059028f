//! Issue 19's cost case in a release build: a heavy routemap, then an unrelated routemap's
//! readiness flip, through one index (as the controller's index task). Prints the median of 7
//! rounds of each case. Run: `cargo bench -p routemap-index --bench heavy`.

use std::time::Duration;

use routing_core::regex::{MAX_ROUTEMAP_PROGRAM_SIZE, program_size};
use test_builders::heavy::{HeavyFigures, measure};
use test_builders::heavy_canary_spec;

fn attack() -> String {
    heavy_canary_spec("heavy", |k| format!("[a-z0-9]{{30}}-{k:04}"), |_| true)
}

fn heaviest_valid() -> String {
    let regexes = MAX_ROUTEMAP_PROGRAM_SIZE / program_size("x0000").expect("small");
    heavy_canary_spec(
        "heavy",
        |k| {
            if k < regexes {
                format!("x{k:04}")
            } else {
                format!("{k:04}-{}", "v".repeat(520))
            }
        },
        |k| k < regexes,
    )
}

fn median(spec: &str, rounds: usize) -> HeavyFigures {
    let mut runs: Vec<HeavyFigures> = (0..rounds).map(|_| measure(spec)).collect();
    runs.sort_by_key(|f| f.flip_delayed);
    let mut mid = runs[rounds / 2].clone();
    // Each figure's own median, so that one slow round does not stand for the case.
    let med = |f: fn(&HeavyFigures) -> Duration| {
        let mut v: Vec<Duration> = runs.iter().map(f).collect();
        v.sort();
        v[rounds / 2]
    };
    mid.parsed = med(|f| f.parsed);
    mid.indexed = med(|f| f.indexed);
    mid.flip_alone = med(|f| f.flip_alone);
    mid.own_flip = med(|f| f.own_flip);
    mid
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing: one round then.
    let rounds = if std::env::args().any(|a| a == "--bench") {
        7
    } else {
        1
    };
    for (name, spec) in [
        ("heavy routemap", attack()),
        ("heaviest valid routemap", heaviest_valid()),
    ] {
        let f = median(&spec, rounds);
        println!("{name}: {f}");
        println!(
            "  {} KB, {}; parsed {:?}, indexed {:?}, the flip alone {:?}, its own flip {:?}",
            f.spec_bytes / 1000,
            if f.valid { "valid" } else { "invalid" },
            f.parsed,
            f.indexed,
            f.flip_alone,
            f.own_flip
        );
    }
}
