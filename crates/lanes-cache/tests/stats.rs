//! Run statistics: totals over the store and the run log, torn lines, concurrent appends.

mod common;

use common::record;
use lanes_cache::{CacheStats, LocalStore, RunEvent};
use std::io::Write;

fn event(run_id: &str, hits: u64, misses: u64) -> RunEvent {
    RunEvent {
        run_id: run_id.into(),
        finished_at_ms: 1_700_000_000_000,
        hits,
        misses,
        saved_ms: hits * 1000,
        ran_ms: misses * 500,
    }
}

#[test]
fn stats_count_entries_and_add_up_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalStore::open(dir.path()).expect("open");
    assert_eq!(store.stats().expect("stats"), CacheStats::default());

    let recorded = record(&store, "cargo build", &[b"binary"]);
    store.record_run(&event("run-1", 3, 1)).expect("record");
    store.record_run(&event("run-2", 2, 0)).expect("record");
    let stats = store.stats().expect("stats");
    assert_eq!(
        stats,
        CacheStats {
            actions: 1,
            blobs: 3,
            bytes: recorded.bytes(&store),
            runs: 2,
            hits: 5,
            misses: 1,
            saved_ms: 5000,
        }
    );
}

/// A write torn by a crash leaves a line without its end; it is skipped, and so is the run
/// appended right after it onto the same line, but nothing else.
#[test]
fn torn_lines_are_skipped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalStore::open(dir.path()).expect("open");
    store.record_run(&event("before", 1, 0)).expect("record");
    let mut log = std::fs::File::options()
        .append(true)
        .open(store.root().join("events.jsonl"))
        .expect("open");
    log.write_all(b"{\"run_id\":\"torn\",\"hits\":10")
        .expect("tear");
    store.record_run(&event("joined", 100, 0)).expect("record");
    store.record_run(&event("after", 2, 0)).expect("record");
    let stats = store.stats().expect("stats");
    assert_eq!((stats.runs, stats.hits), (2, 3));
}

#[test]
fn concurrent_runs_append_whole_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalStore::open(dir.path()).expect("open");
    std::thread::scope(|scope| {
        for t in 0..8 {
            let store = store.clone();
            scope.spawn(move || {
                for i in 0..50 {
                    // Long ids make lines long enough that split writes would interleave.
                    let id = format!("thread-{t}-run-{i}-{}", "x".repeat(200));
                    store.record_run(&event(&id, 1, 2)).expect("record");
                }
            });
        }
    });
    let text = std::fs::read_to_string(store.root().join("events.jsonl")).expect("read");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 400);
    for line in lines {
        serde_json::from_str::<RunEvent>(line).expect("every line parses");
    }
    let stats = store.stats().expect("stats");
    assert_eq!((stats.runs, stats.hits, stats.misses), (400, 400, 800));
}
