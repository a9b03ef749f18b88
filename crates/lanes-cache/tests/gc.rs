//! Garbage collection on a real filesystem: eviction by age and size, reference sweeping, live
//! runs that protect what they use, and the gc lock.

mod common;

use common::{blob_file, fingerprint, hours_ago, record, record_with, set_used};
use lanes_cache::{CacheError, GcPolicy, LocalStore, Lookup};
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

fn by_size(max_size: u64) -> GcPolicy {
    GcPolicy {
        max_size: Some(max_size),
        max_age: None,
        now: SystemTime::now(),
    }
}

fn unlimited() -> GcPolicy {
    GcPolicy {
        max_size: None,
        max_age: None,
        now: SystemTime::now(),
    }
}

#[test]
fn max_size_evicts_the_least_recently_used_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalStore::open(dir.path()).expect("open");
    let oldest = record(&store, "oldest", &[b"oldest output"]);
    let newest = record(&store, "newest", &[b"newest output"]);
    let middle = record(&store, "middle", &[b"middle output"]);
    oldest.set_used(&store, hours_ago(3));
    middle.set_used(&store, hours_ago(2));
    newest.set_used(&store, hours_ago(1));
    let all = oldest.bytes(&store) + middle.bytes(&store) + newest.bytes(&store);

    let report = store.gc(by_size(all - oldest.bytes(&store))).expect("gc");
    assert!(oldest.absent(&store), "the least recently used goes first");
    assert!(middle.present(&store) && newest.present(&store));
    assert_eq!(report.actions_removed, 1);
    assert_eq!(report.blobs_removed, 3, "its output, tree and log");
    assert_eq!(report.bytes_freed, all - report.bytes_kept);
    assert_eq!((report.actions_kept, report.blobs_kept), (2, 6));
    assert_eq!(report.protected, 0);

    // One byte under what is left: the next least recently used goes, and only it.
    let report = store.gc(by_size(report.bytes_kept - 1)).expect("gc");
    assert!(middle.absent(&store));
    assert!(newest.present(&store));
    assert_eq!(report.bytes_kept, newest.bytes(&store));
    assert!(matches!(
        store.get_action(&newest.result.key).expect("get"),
        Lookup::Hit(_)
    ));
}

#[test]
fn max_age_evicts_actions_unused_for_longer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalStore::open(dir.path()).expect("open");
    let stale = record(&store, "stale", &[b"stale output"]);
    let recent = record(&store, "recent", &[b"recent output"]);
    stale.set_used(&store, hours_ago(72));
    recent.set_used(&store, hours_ago(1));
    let report = store
        .gc(GcPolicy {
            max_size: None,
            max_age: Some(Duration::from_secs(24 * 3600)),
            now: SystemTime::now(),
        })
        .expect("gc");
    assert!(stale.absent(&store));
    assert!(recent.present(&store));
    assert_eq!((report.actions_removed, report.actions_kept), (1, 1));
}

#[test]
fn blobs_of_kept_actions_stay_and_orphans_go() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalStore::open(dir.path()).expect("open");
    let listing = store.put_blob(b"src/main.rs 0123\n").expect("put listing");
    let mut with_inputs = fingerprint("cargo build");
    with_inputs.inputs = listing.clone();
    let kept = record_with(&store, with_inputs, &[b"binary", b"shared"]);
    let evicted = record(&store, "cargo doc", &[b"docs", b"shared"]);
    let orphan = store
        .put_blob(b"written by a run that never recorded")
        .expect("put");
    kept.set_used(&store, hours_ago(1));
    evicted.set_used(&store, hours_ago(30));
    set_used(&blob_file(&store, &listing), hours_ago(1));
    set_used(&blob_file(&store, &orphan), hours_ago(1));

    store
        .gc(GcPolicy {
            max_size: None,
            max_age: Some(Duration::from_secs(24 * 3600)),
            now: SystemTime::now(),
        })
        .expect("gc");
    assert!(kept.present(&store), "the action and every blob it names");
    assert!(
        blob_file(&store, &listing).exists(),
        "its input listing is a reference"
    );
    assert!(!blob_file(&store, &orphan).exists(), "the orphan is swept");
    let shared = blake3::hash(b"shared").to_hex().to_string();
    assert!(
        blob_file(&store, &shared).exists(),
        "shared with a kept action"
    );
    for only_evicted in [&evicted.blobs[0], &evicted.blobs[2], &evicted.blobs[3]] {
        assert!(!blob_file(&store, only_evicted).exists());
    }
    assert!(matches!(
        store.get_action(&kept.result.key).expect("get"),
        Lookup::Hit(_)
    ));
}

#[test]
fn actions_that_cannot_be_used_are_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalStore::open(dir.path()).expect("open");
    let good = record(&store, "good", &[b"good output"]);
    let no_tree = record(&store, "no tree", &[b"no tree output"]);
    let bad_tree = record(&store, "bad tree", &[b"bad tree output"]);
    let garbage = record(&store, "garbage", &[b"garbage output"]);
    // Intact as a blob, but not an output tree.
    let mut not_a_tree = record(&store, "not a tree", &[b"not a tree output"]);
    not_a_tree.result.outputs = store.put_blob(b"[1, 2, 3]").expect("put");
    not_a_tree.blobs.push(not_a_tree.result.outputs.clone());
    store.put_action(&not_a_tree.result).expect("put action");
    std::fs::remove_file(blob_file(&store, &no_tree.result.outputs)).expect("remove tree");
    // A well-formed tree, but not the bytes the digest names.
    std::fs::write(
        blob_file(&store, &bad_tree.result.outputs),
        b"{\"version\":1,\"entries\":[]}",
    )
    .expect("corrupt");
    std::fs::write(
        common::action_file(&store, &garbage.result.key),
        b"{\"truncated\":",
    )
    .expect("truncate");

    let report = store.gc(unlimited()).expect("gc");
    assert_eq!(report.actions_removed, 4);
    assert_eq!(report.actions_kept, 1);
    assert!(good.present(&store));
    for broken in [&no_tree, &bad_tree, &garbage, &not_a_tree] {
        assert!(
            broken.absent(&store),
            "{}",
            broken.result.fingerprint.command
        );
    }
}

#[test]
fn abandoned_temporary_files_are_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalStore::open(dir.path()).expect("open");
    let tmp = store.root().join("tmp");
    std::fs::write(tmp.join("abandoned"), b"12345").expect("write");
    std::fs::write(tmp.join("in-flight"), b"12").expect("write");
    set_used(&tmp.join("abandoned"), hours_ago(2));
    let report = store.gc(unlimited()).expect("gc");
    assert!(!tmp.join("abandoned").exists());
    assert!(tmp.join("in-flight").exists(), "younger than an hour");
    assert_eq!(report.bytes_freed, 5);
}

#[test]
fn a_live_run_protects_what_it_used_since_it_started() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalStore::open(dir.path()).expect("open");
    let unused = record(&store, "unused", &[b"unused output"]);
    let used = record(&store, "used", &[b"used output"]);
    unused.set_used(&store, hours_ago(2));
    used.set_used(&store, hours_ago(2));

    let run = store.register_run("run-1").expect("register");
    assert!(matches!(
        store.get_action(&used.result.key).expect("get"),
        Lookup::Hit(_)
    ));
    let written = store.put_blob(b"written during the run").expect("put");

    let report = store.gc(by_size(0)).expect("gc");
    assert_eq!(report.live_runs, 1);
    assert!(unused.absent(&store), "used before the run started");
    assert!(used.present(&store));
    assert!(blob_file(&store, &written).exists());
    assert_eq!(report.protected, 2, "the used action and the new blob");

    drop(run);
    let report = store.gc(by_size(0)).expect("gc");
    assert_eq!(report.live_runs, 0);
    assert!(used.absent(&store), "the run is over");
    assert!(!blob_file(&store, &written).exists());
    assert_eq!(report.protected, 0);
    assert_eq!(
        std::fs::read_dir(store.root().join("runs"))
            .expect("ls")
            .count(),
        0,
        "the registration is gone"
    );
}

#[test]
fn a_registration_left_by_a_dead_run_is_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalStore::open(dir.path()).expect("open");
    let entry = record(&store, "build", &[b"output"]);
    entry.set_used(&store, hours_ago(2));
    // Started at the epoch: alive, it would protect everything. Nobody holds its lock.
    let dead = store.root().join("runs").join("dead-run");
    std::fs::create_dir_all(dead.parent().expect("dir")).expect("mkdir");
    std::fs::write(&dead, b"0\n").expect("write");

    let report = store.gc(by_size(0)).expect("gc");
    assert_eq!(report.live_runs, 0);
    assert!(!dead.exists());
    assert!(entry.absent(&store));
}

#[test]
fn run_ids_are_checked_and_registered_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalStore::open(dir.path()).expect("open");
    let too_long = "a".repeat(129);
    for bad in ["", "../escape", "a/b", "a b", "run.1", &too_long] {
        assert!(
            matches!(store.register_run(bad), Err(CacheError::InvalidRunId(_))),
            "{bad:?}"
        );
    }
    let run = store.register_run("Run-42-abc").expect("register");
    assert_eq!(run.run_id(), "Run-42-abc");
    let path = store.root().join("runs").join("Run-42-abc");
    assert!(path.exists());
    assert!(store.register_run("Run-42-abc").is_err(), "already live");
    drop(run);
    assert!(!path.exists(), "dropping ends the registration");
    drop(store.register_run("Run-42-abc").expect("register again"));
}

#[test]
fn gc_waits_for_a_guard_and_guards_share() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalStore::open(dir.path()).expect("open");
    let guard = store.guard().expect("guard");

    let (done, finished) = mpsc::channel();
    let shared = store.clone();
    let sharer = std::thread::spawn(move || {
        let _second = shared.guard().expect("second guard");
        done.send("guard").expect("send");
    });
    assert_eq!(
        finished
            .recv_timeout(Duration::from_secs(60))
            .expect("a second guard does not wait for the first"),
        "guard"
    );
    sharer.join().expect("join");

    let (done, finished) = mpsc::channel();
    let collector = store.clone();
    let gc = std::thread::spawn(move || {
        let report = collector.gc(unlimited()).expect("gc");
        done.send(report).expect("send");
    });
    assert!(
        finished.recv_timeout(Duration::from_millis(500)).is_err(),
        "gc ran while a guard was held"
    );
    drop(guard);
    finished
        .recv_timeout(Duration::from_secs(60))
        .expect("gc finishes once the guard is released");
    gc.join().expect("join");
}
