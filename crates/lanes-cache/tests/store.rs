//! The local store on a real filesystem: round trips, corruption, concurrency, a full disk.

mod common;

use common::{action_file, blob_file, fingerprint};
use lanes_cache::{ActionResult, CacheError, LocalStore, Lookup, RESULT_VERSION};
use std::path::Path;

fn result(store: &LocalStore, command: &str) -> ActionResult {
    let fingerprint = fingerprint(command);
    ActionResult {
        version: RESULT_VERSION,
        key: fingerprint.key(),
        fingerprint,
        exit_code: 0,
        duration_ms: 1234,
        log: store.put_blob(b"12:00:00 compiling\n").expect("log"),
        outputs: store.put_blob(b"[]").expect("outputs"),
        sandboxed: true,
    }
}

#[test]
fn blobs_round_trip_and_are_stored_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalStore::open(dir.path()).expect("open");
    let a = store.put_blob(b"hello").expect("put");
    assert_eq!(a, blake3::hash(b"hello").to_hex().to_string());
    assert_eq!(store.put_blob(b"hello").expect("put again"), a);
    assert_eq!(store.get_blob(&a).expect("get"), Some(b"hello".to_vec()));
    assert_eq!(store.get_blob(&"0".repeat(64)).expect("get"), None);
    let entries = std::fs::read_dir(blob_file(&store, &a).parent().expect("dir"))
        .expect("ls")
        .count();
    assert_eq!(entries, 1);
    assert_eq!(
        std::fs::read_dir(store.root().join("tmp"))
            .expect("ls")
            .count(),
        0,
        "no temp left"
    );
}

#[test]
fn files_are_stored_by_the_digest_of_the_bytes_copied() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalStore::open(&dir.path().join("cache")).expect("open");
    let source = dir.path().join("big");
    let bytes: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&source, &bytes).expect("write");
    let (digest, size) = store.put_file(&source).expect("put");
    assert_eq!(size, 1_000_000);
    assert_eq!(digest, blake3::hash(&bytes).to_hex().to_string());
    assert_eq!(store.get_blob(&digest).expect("get"), Some(bytes));
}

#[test]
fn a_corrupt_blob_is_a_miss_and_is_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalStore::open(dir.path()).expect("open");
    let digest = store.put_blob(b"the real bytes").expect("put");
    std::fs::write(blob_file(&store, &digest), b"flipped bits").expect("corrupt");
    assert_eq!(store.get_blob(&digest).expect("get"), None);
    assert!(
        !blob_file(&store, &digest).exists(),
        "the corrupt blob is deleted"
    );
    // Storing the bytes again repairs it.
    store.put_blob(b"the real bytes").expect("put");
    assert_eq!(
        store.get_blob(&digest).expect("get"),
        Some(b"the real bytes".to_vec())
    );
}

#[test]
fn action_results_round_trip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalStore::open(dir.path()).expect("open");
    let recorded = result(&store, "cargo build");
    assert_eq!(store.get_action(&recorded.key).expect("get"), Lookup::Miss);
    store.put_action(&recorded).expect("put");
    assert_eq!(
        store.get_action(&recorded.key).expect("get"),
        Lookup::Hit(recorded)
    );
}

#[test]
fn a_corrupt_action_result_is_never_a_hit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalStore::open(dir.path()).expect("open");
    let recorded = result(&store, "cargo build");
    store.put_action(&recorded).expect("put");
    let path = action_file(&store, &recorded.key);
    let text = std::fs::read_to_string(&path).expect("read");
    // Same length, one changed field: only the checksum can tell.
    std::fs::write(&path, text.replace("\"exit_code\":0", "\"exit_code\":1")).expect("tamper");
    match store.get_action(&recorded.key).expect("get") {
        Lookup::Corrupt(why) => assert!(why.contains("checksum"), "{why}"),
        other => panic!("expected corrupt, got {other:?}"),
    }
    assert!(!path.exists(), "removed");
    assert_eq!(store.get_action(&recorded.key).expect("get"), Lookup::Miss);

    std::fs::create_dir_all(path.parent().expect("dir")).expect("mkdir");
    std::fs::write(&path, b"{\"truncated\":").expect("truncate");
    assert!(matches!(
        store.get_action(&recorded.key).expect("get"),
        Lookup::Corrupt(_)
    ));
}

#[test]
fn a_result_whose_log_or_outputs_are_gone_is_not_a_hit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalStore::open(dir.path()).expect("open");
    let recorded = result(&store, "cargo build");
    store.put_action(&recorded).expect("put");
    std::fs::remove_file(blob_file(&store, &recorded.log)).expect("remove log");
    match store.get_action(&recorded.key).expect("get") {
        Lookup::Corrupt(why) => assert!(why.contains("log blob"), "{why}"),
        other => panic!("expected corrupt, got {other:?}"),
    }
}

#[test]
fn a_result_stored_under_another_key_is_not_a_hit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalStore::open(dir.path()).expect("open");
    let mut forged = result(&store, "cargo build");
    forged.key = fingerprint("cargo test").key();
    store.put_action(&forged).expect("put");
    assert!(matches!(
        store.get_action(&forged.key).expect("get"),
        Lookup::Corrupt(_)
    ));
}

#[test]
fn concurrent_writers_share_one_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root: &Path = dir.path();
    std::thread::scope(|scope| {
        for t in 0..8 {
            scope.spawn(move || {
                let store = LocalStore::open(root).expect("open");
                for i in 0..50 {
                    let shared = format!("shared {i}");
                    let own = format!("thread {t} blob {i}");
                    for bytes in [shared.as_bytes(), own.as_bytes()] {
                        let digest = store.put_blob(bytes).expect("put");
                        assert_eq!(
                            store.get_blob(&digest).expect("get").as_deref(),
                            Some(bytes)
                        );
                    }
                    let recorded = result(&store, &format!("step {i}"));
                    store.put_action(&recorded).expect("put action");
                    assert!(matches!(
                        store.get_action(&recorded.key).expect("get"),
                        Lookup::Hit(_)
                    ));
                }
            });
        }
    });
}

#[test]
fn names_that_are_not_digests_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalStore::open(dir.path()).expect("open");
    for bad in ["../../etc/passwd", "ABCDEF", &"g".repeat(64)] {
        assert!(
            matches!(store.get_blob(bad), Err(CacheError::InvalidDigest(_))),
            "{bad}"
        );
        assert!(
            matches!(store.get_action(bad), Err(CacheError::InvalidDigest(_))),
            "{bad}"
        );
    }
}

/// A full disk is an error the caller can carry on from, and leaves no partial entry behind.
#[test]
fn a_full_disk_is_an_error_and_leaves_no_partial_blob() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mount = dir.path().join("small");
    std::fs::create_dir(&mount).expect("mkdir");
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
        .arg(&mount)
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        mounted,
        "this test mounts a 256 KiB tmpfs, which needs root (CI runs as root)"
    );
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(self.0).status();
        }
    }
    let _unmount = Unmount(&mount);
    let store = LocalStore::open(&mount).expect("open");
    let big = vec![7u8; 1024 * 1024];
    let err = store
        .put_blob(&big)
        .expect_err("1 MiB does not fit in 256 KiB");
    assert!(err.to_string().contains("failed to write"), "{err}");
    let digest = blake3::hash(&big).to_hex().to_string();
    assert_eq!(store.get_blob(&digest).expect("get"), None);
    assert_eq!(
        std::fs::read_dir(store.root().join("tmp"))
            .expect("ls")
            .count(),
        0,
        "temp removed"
    );
    // The store still works for what fits.
    let small = store.put_blob(b"fits").expect("put");
    assert_eq!(store.get_blob(&small).expect("get"), Some(b"fits".to_vec()));
}
