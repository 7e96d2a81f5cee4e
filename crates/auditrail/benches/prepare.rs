//! Event preparation — validation, canonical JSON and the leaf hash's prefix — on one
//! core, for the ingest bench's events in 500-event request bodies. `cargo bench -p
//! auditrail --bench prepare` (env BENCH_EVENTS, BENCH_REPS; BENCH_ONLY_FAST=1 times only
//! auditrail's path, for a profiler).
//!
//! Beside it: the same work in two passes (each event's text delimited first, then
//! parsed), and the peer, serde_json parsing the bodies into `Value`s, which is less work
//! than preparing them and what a service built on `Value`s starts with.
#![expect(clippy::unwrap_used, reason = "a benchmark: a panic is a failed run")]

use std::hint::black_box;
use std::time::Instant;

use auditrail_core::event::fast;
use auditrail_core::{Limits, Rules};
use serde_json::json;
use serde_json::value::RawValue;

/// The same allocator as the `auditrail` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "support.rs"]
mod support;

/// Nanoseconds an event that `f` takes over all `bodies` of `per_body` events.
fn time(bodies: &[String], per_body: usize, mut f: impl FnMut(&str)) -> f64 {
    let t = Instant::now();
    for b in bodies {
        f(b);
    }
    t.elapsed().as_secs_f64() * 1e9 / (bodies.len() * per_body) as f64
}

fn main() {
    let n = support::env_u64("BENCH_EVENTS", 200_000);
    let reps = support::env_u64("BENCH_REPS", 5);
    let only_fast = std::env::var_os("BENCH_ONLY_FAST").is_some();
    let events: Vec<_> = (0..n).map(support::event).collect();
    let bodies: Vec<String> = events
        .chunks(500)
        .map(|c| json!({"events": c}).to_string())
        .collect();
    let limits = Limits::default();
    let rules = Rules {
        org_id: "acme",
        now: chrono::Utc::now(),
        limits: &limits,
        catalog: None,
    };
    let mut best = [f64::MAX; 3];
    for _ in 0..reps {
        let one_pass = time(&bodies, 500, |b| {
            black_box(fast::prepare_body(b, &rules, 1000, String::new).unwrap());
        });
        best[0] = best[0].min(one_pass);
        if only_fast {
            continue;
        }
        let two_pass = time(&bodies, 500, |b| {
            #[derive(serde::Deserialize)]
            struct Batch<'a> {
                #[serde(borrow)]
                events: Vec<&'a RawValue>,
            }
            let batch: Batch<'_> = serde_json::from_str(b).unwrap();
            let prepared: Vec<_> = batch
                .events
                .iter()
                .map(|e| fast::prepare(e.get(), &rules, String::new).unwrap())
                .collect();
            black_box(prepared);
        });
        let peer = time(&bodies, 500, |b| {
            black_box(serde_json::from_str::<serde_json::Value>(b).unwrap());
        });
        best[1] = best[1].min(two_pass);
        best[2] = best[2].min(peer);
    }
    println!("events: {n} in 500-event bodies; best of {reps} passes");
    println!(
        "auditrail, prepared in one pass:         {:.0} ns an event",
        best[0]
    );
    if !only_fast {
        println!(
            "the same in two passes (split, then each): {:.0} ns an event",
            best[1]
        );
        println!(
            "peer, serde_json parse into Value only:  {:.0} ns an event",
            best[2]
        );
    }
}
