//! History: the latest fingerprint of each step, replaced on each record, kept by gc.

mod common;

use common::{fingerprint, record};
use lanes_cache::{GcPolicy, HistoryEntry, LocalStore};
use std::time::SystemTime;

fn entry(lane: &str, step: &str, command: &str, status: &str) -> HistoryEntry {
    let mut fingerprint = fingerprint(command);
    fingerprint.lane = lane.into();
    fingerprint.step = step.into();
    HistoryEntry {
        lane: lane.into(),
        step: step.into(),
        repo: None,
        key: fingerprint.key(),
        fingerprint,
        status: status.into(),
        recorded_at_ms: 1_700_000_000_000,
    }
}

#[test]
fn history_round_trips_and_is_replaced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalStore::open(dir.path()).expect("open");
    assert_eq!(store.latest(None, "test", "build").expect("latest"), None);

    let first = entry("test", "build", "cargo build", "failed");
    store.record_history(&first).expect("record");
    assert_eq!(
        store.latest(None, "test", "build").expect("latest"),
        Some(first)
    );

    let second = entry("test", "build", "cargo build --locked", "passed");
    store.record_history(&second).expect("record");
    assert_eq!(
        store.latest(None, "test", "build").expect("latest"),
        Some(second.clone())
    );

    let other = entry("lint", "build", "cargo clippy", "cached");
    store.record_history(&other).expect("record");
    assert_eq!(
        store.latest(None, "lint", "build").expect("latest"),
        Some(other)
    );
    assert_eq!(
        store.latest(None, "test", "build").expect("latest"),
        Some(second),
        "another lane's step of the same name is another entry"
    );
    assert_eq!(store.latest(None, "test", "lint").expect("latest"), None);

    // A forge repository's job keeps its own entry beside the working tree's.
    let mut forge = entry("test", "build", "cargo build --release", "passed");
    forge.repo = Some("app".into());
    store.record_history(&forge).expect("record");
    assert_eq!(
        store.latest(Some("app"), "test", "build").expect("latest"),
        Some(forge)
    );
    assert_eq!(
        store
            .latest(Some("other"), "test", "build")
            .expect("latest"),
        None,
        "another repository's lane of the same name is another entry"
    );
    assert_eq!(
        store.latest(None, "test", "build").expect("latest"),
        Some(entry("test", "build", "cargo build --locked", "passed")),
        "the working tree's entry stays"
    );
    assert_eq!(
        std::fs::read_dir(store.root().join("tmp"))
            .expect("ls")
            .count(),
        0,
        "no temp left"
    );
}

#[test]
fn unreadable_history_is_none() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalStore::open(dir.path()).expect("open");
    store
        .record_history(&entry("test", "build", "cargo build", "passed"))
        .expect("record");
    let name = blake3::hash(b"test\0build").to_hex().to_string();
    let path = store.root().join("history").join(name);
    assert!(path.exists());
    std::fs::write(&path, b"{\"lane\":").expect("truncate");
    assert_eq!(store.latest(None, "test", "build").expect("latest"), None);
}

#[test]
fn gc_keeps_history() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalStore::open(dir.path()).expect("open");
    let recorded = record(&store, "cargo build", &[b"binary"]);
    let kept = entry("test", "build", "cargo build", "passed");
    store.record_history(&kept).expect("record");
    store
        .gc(GcPolicy {
            max_size: Some(0),
            max_age: None,
            now: SystemTime::now() + std::time::Duration::from_secs(3600),
        })
        .expect("gc");
    assert!(recorded.absent(&store), "gc did evict");
    assert_eq!(
        store.latest(None, "test", "build").expect("latest"),
        Some(kept)
    );
}
