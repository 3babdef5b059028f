//! The index at scale: 10,000 two-version canary routemaps and 40,000 resource events.
//! Reports events per second (median of 5 rounds) and the process's peak RSS.
//! Run: `cargo bench -p routemap-index --bench index`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use routemap_index::config::Config;
use routemap_index::index::Index;
use routemap_index::routemap::RouteMapObject;
use test_builders::{RouteMap, canary_spec, deployment, watched};

const RELEASES: usize = 10_000;

fn routemap(i: usize) -> RouteMapObject {
    let app = format!("app{i}");
    RouteMap::new(
        &format!("ns{}", i % 100),
        &format!("{app}-routemap"),
        canary_spec(&app),
    )
    .uid(format!("uid-{i}"))
    .object()
}

/// One round: returns (time for the 40,000 resource events, decisions emitted, index).
fn round(releases: usize) -> (Duration, usize, Index) {
    let mut index = Index::new(&Config::default());
    for i in 0..releases {
        index.upsert_routemap(routemap(i));
    }
    let start = Instant::now();
    let mut changes = 0;
    for i in 0..releases {
        let ns = format!("ns{}", i % 100);
        for v in 0..2 {
            let name = format!("app{i}-{v}");
            changes += index.upsert_resource("svc", &ns, &name, watched()).len();
            changes += index
                .upsert_resource("deploy", &ns, &name, deployment(true))
                .len();
        }
    }
    (start.elapsed(), black_box(changes), index)
}

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing: run a tiny round then.
    let quick = !std::env::args().any(|a| a == "--bench");
    if quick {
        let (_, changes, _) = round(100);
        assert_eq!(changes, 400);
        return;
    }
    let parse = Instant::now();
    let routemaps: Vec<RouteMapObject> = (0..RELEASES).map(routemap).collect();
    let parse = parse.elapsed();
    drop(routemaps);
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..5 {
        drop(last.take());
        let (t, changes, index) = round(RELEASES);
        assert_eq!(
            changes,
            4 * RELEASES,
            "every event is a decision: a Service moves a version's reason, a Deployment makes it available"
        );
        times.push(t);
        last = Some(index);
    }
    times.sort();
    let median = times[times.len() / 2];
    let events = 4 * RELEASES;
    let mut index = last.expect("rounds ran");
    // Readiness flips: each one changes a route.
    let flips = Instant::now();
    for i in 0..RELEASES {
        let ns = format!("ns{}", i % 100);
        index.upsert_resource("deploy", &ns, &format!("app{i}-1"), deployment(false));
    }
    let flips = flips.elapsed();
    println!("index bench: {RELEASES} routemaps x 2 versions, {events} resource events");
    println!("  parse {RELEASES} routemap specs: {parse:?}");
    println!(
        "  resource events: median {median:?} per round -> {:.0} events/s (rounds: {:?})",
        events as f64 / median.as_secs_f64(),
        times
    );
    println!(
        "  readiness flips: {RELEASES} in {flips:?} -> {:.0} flips/s",
        RELEASES as f64 / flips.as_secs_f64()
    );
    println!(
        "  index holds {} routemaps, {} resources; peak RSS of the process: {} MiB",
        index.routemap_count(),
        index.resource_count(),
        peak_rss_kib().map_or("?".into(), |k| format!("{:.1}", k as f64 / 1024.0))
    );
}
