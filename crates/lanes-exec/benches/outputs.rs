//! Capturing and restoring a 1 GiB output tree, beside `cp -a` of the same tree.
//!
//! Writes (under `target/bench-outputs/`, on the same filesystem as the store) a tree of
//! 1 GiB in 20,604 files of mixed sizes, every file's bytes distinct and incompressible, as a
//! step would have written it into an empty lane directory. Then measures, as medians:
//! - the snapshot after the step and `capture` of the tree into an empty store, as `run_lane`
//!   records a step (each blob is hashed, copied and fsynced);
//! - `load_tree` + `restore` of the captured tree into an empty directory (every file verified
//!   against its digest while it is written);
//! - `cp -a` of the tree into an empty directory, as the baseline;
//!
//! each in two conditions: warm (what it reads is in the page cache) and cold (`sync`, then
//! `echo 3 > /proc/sys/vm/drop_caches`, which needs root; skipped otherwise), and timed twice:
//! the operation alone, and the operation followed by `sync` (until the bytes are on disk).
//!
//! Run: `cargo bench -p lanes-exec --bench outputs` (set `LANES_BENCH_RUNS` to change the run
//! count, 3 by default). Needs about 20 GiB free under `target/` (each run writes into a
//! directory of its own, see below); everything is deleted at the end. Results go to stdout as
//! a table; BENCHMARKS.md records them.

#![expect(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a bench binary reports on the terminal"
)]

use lanes_cache::LocalStore;
use lanes_exec::outputs::{Snapshot, capture, load_tree, restore};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

/// (count, size, directories they are spread over, name): 512 + 240 + 256 + 16 MiB = 1 GiB.
const SHAPE: [(usize, usize, usize, &str); 4] = [
    (4, 128 * MIB, 1, "big"),
    (120, 2 * MIB, 4, "medium"),
    (4_096, 64 * KIB, 64, "small"),
    (16_384, KIB, 128, "tiny"),
];

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs us without it: stay quick.
    let benching = std::env::args().any(|a| a == "--bench");
    if !benching {
        return;
    }
    let runs: usize = std::env::var("LANES_BENCH_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-outputs");
    settle(&base);
    // The source, and a store, a restored tree and a copy per run and condition.
    let needed = (1 + 2 * 3 * runs as u64) * (1 << 30) + (1 << 30);
    let available = available_bytes(base.parent().expect("target/"));
    assert!(
        available > needed,
        "needs {} GiB free under target/, {} GiB available",
        needed >> 30,
        available >> 30
    );
    let src = fresh_dir(&base.join("src"));
    let can_drop = drop_caches();
    if !can_drop {
        eprintln!("cannot drop the page cache (not root?): the cold rows are skipped");
    }

    // The step's view: an empty lane directory before; the tree after.
    let before = Snapshot::take(&src, &[]).expect("snapshot");
    let written = Instant::now();
    let (files, bytes) = write_tree(&src);
    let dirs: usize = SHAPE.iter().map(|(_, _, d, _)| d + 1).sum();
    let write_time = written.elapsed();
    sync();
    let mb = bytes as f64 / 1e6;

    // Every run writes into a directory of its own and nothing is deleted until the end, for the
    // reason `settle` waits.
    let mut digest = String::new();
    let mut last_store = PathBuf::new();
    let mut results: Vec<(&str, Cold, Timing)> = Vec::new();
    let target =
        |what: &str, cold: Cold, run: usize| base.join(format!("{what}-{}-{run}", cold.name()));
    for cold in [Cold::No, Cold::Yes] {
        if cold == Cold::Yes && !can_drop {
            continue;
        }
        let capture_time = median(
            runs,
            cold,
            |run| fresh_dir(&target("store", cold, run)),
            |store_dir| {
                let store = LocalStore::open(store_dir).expect("store");
                let after = Snapshot::take(&src, &[]).expect("snapshot");
                let (d, tree) = capture(&store, &src, &before, &after, None).expect("capture");
                assert_eq!(tree.entries.len(), after.len());
                assert_eq!(tree.entries.len(), files + dirs);
                digest = d;
                last_store = store_dir.to_path_buf();
            },
        );
        let store = LocalStore::open(&last_store).expect("store");
        let restore_time = median(
            runs,
            cold,
            |run| fresh_dir(&target("restored", cold, run)),
            |dest| {
                let tree = load_tree(&store, &digest)
                    .expect("load")
                    .expect("the tree is stored");
                restore(&store, dest, &tree).expect("restore");
            },
        );
        assert_eq!(
            tree_stats(&target("restored", cold, 0)),
            (files, bytes),
            "restored tree"
        );
        let cp_time = median(
            runs,
            cold,
            |run| target("copied", cold, run),
            |dest| {
                let status = Command::new("cp")
                    .arg("-a")
                    .arg(&src)
                    .arg(dest)
                    .status()
                    .expect("cp");
                assert!(status.success());
            },
        );
        assert_eq!(
            tree_stats(&target("copied", cold, 0)),
            (files, bytes),
            "copied tree"
        );
        results.push(("capture (store every file)", cold, capture_time));
        results.push(("restore (load_tree + restore)", cold, restore_time));
        results.push(("cp -a (baseline)", cold, cp_time));
    }
    // Left empty: its mtime tells the next run when these files were deleted.
    fresh_dir(&base);

    println!(
        "output tree: {files} files, {:.1} MiB ({:.0} MB), written in {:.1}s; {runs} runs, medians",
        bytes as f64 / MIB as f64,
        mb,
        write_time.as_secs_f64()
    );
    println!(
        "{:<32} {:<5} {:>9} {:>9} {:>12} {:>9}",
        "operation", "cache", "op", "MB/s", "op + sync", "MB/s"
    );
    for (name, cold, t) in &results {
        println!(
            "{name:<32} {:<5} {:>8.2}s {:>9.0} {:>11.2}s {:>9.0}",
            cold.name(),
            t.op.as_secs_f64(),
            mb / t.op.as_secs_f64(),
            t.synced.as_secs_f64(),
            mb / t.synced.as_secs_f64()
        );
    }
    for cold in [Cold::No, Cold::Yes] {
        let of = |name: &str| {
            results
                .iter()
                .find(|(n, c, _)| n.starts_with(name) && *c == cold)
                .map(|(_, _, t)| *t)
        };
        if let (Some(capture), Some(restore), Some(cp)) = (of("capture"), of("restore"), of("cp")) {
            let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
            println!(
                "{}: capture / cp -a = {:.2}x ({:.2}x with sync), restore / cp -a = {:.2}x ({:.2}x with sync)",
                cold.name(),
                ratio(capture.op, cp.op),
                ratio(capture.synced, cp.synced),
                ratio(restore.op, cp.op),
                ratio(restore.synced, cp.synced)
            );
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cold {
    /// What the operation reads is in the page cache.
    No,
    /// The page cache was dropped before the operation.
    Yes,
}

impl Cold {
    fn name(self) -> &'static str {
        match self {
            Cold::No => "warm",
            Cold::Yes => "cold",
        }
    }
}

/// Wall time of an operation, alone and followed by `sync`.
#[derive(Clone, Copy, Debug)]
struct Timing {
    op: Duration,
    synced: Duration,
}

/// Median over `runs` of `op(target)`, where `prepare(run)` gives each run its target
/// (untimed, followed by `sync`, and by dropping the page cache when `cold`).
fn median(
    runs: usize,
    cold: Cold,
    mut prepare: impl FnMut(usize) -> PathBuf,
    mut op: impl FnMut(&Path),
) -> Timing {
    let mut ops = Vec::with_capacity(runs);
    let mut synced = Vec::with_capacity(runs);
    for run in 0..runs {
        let target = prepare(run);
        sync();
        if cold == Cold::Yes {
            assert!(drop_caches(), "dropping the page cache worked before");
        }
        let start = Instant::now();
        op(&target);
        ops.push(start.elapsed());
        sync();
        synced.push(start.elapsed());
    }
    ops.sort();
    synced.sort();
    Timing {
        op: ops[runs / 2],
        synced: synced[runs / 2],
    }
}

/// Write the tree of [`SHAPE`] under `root`; returns (files, bytes).
fn write_tree(root: &Path) -> (usize, u64) {
    let mut seed = 0u64;
    let mut files = 0;
    let mut bytes = 0u64;
    let mut buffer = vec![0u8; MIB];
    for (count, size, dirs, name) in SHAPE {
        for d in 0..dirs {
            std::fs::create_dir_all(root.join(name).join(format!("d{d:03}"))).expect("mkdir");
        }
        for n in 0..count {
            let path = root
                .join(name)
                .join(format!("d{:03}", n % dirs))
                .join(format!("f{n:05}.bin"));
            let mut file = std::io::BufWriter::with_capacity(
                MIB,
                std::fs::File::create(&path).expect("create"),
            );
            seed += 1;
            let mut rng = XorShift::new(seed);
            let mut left = size;
            while left > 0 {
                let chunk = left.min(buffer.len());
                rng.fill(&mut buffer[..chunk]);
                file.write_all(&buffer[..chunk]).expect("write");
                left -= chunk;
            }
            file.flush().expect("flush");
            files += 1;
            bytes += size as u64;
        }
    }
    (files, bytes)
}

/// xorshift64*: fast, incompressible enough, and a distinct stream per seed, so the store
/// deduplicates nothing.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> XorShift {
        XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            let word = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }
}

/// (files, bytes) of the regular files under `root`.
fn tree_stats(root: &Path) -> (usize, u64) {
    let mut stack = vec![root.to_path_buf()];
    let (mut files, mut bytes) = (0, 0);
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read_dir") {
            let entry = entry.expect("entry");
            let meta = entry.metadata().expect("metadata");
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() {
                files += 1;
                bytes += meta.len();
            }
        }
    }
    (files, bytes)
}

/// How long ext4 without a journal (this machine's root filesystem) skips freed inodes: 60s, or
/// 360s while their inode table block is dirty, which allocating a neighbour makes it.
const INODE_QUIET: Duration = Duration::from_secs(6 * 60 + 5);

/// Remove what an interrupted run left under `base`, then wait until no file was deleted there
/// for [`INODE_QUIET`], so that creating the trees measures the copy and not the inode allocator
/// (`cp -a` of a 1 GB tree of 8,000 files took 4.2s right after deleting a copy of it and 0.7s
/// ten seconds later; `cp -a` of this tree took 7-8s, nearly all in the kernel's
/// `recently_deleted`, within minutes of deleting 19 GiB, and 3s once settled).
fn settle(base: &Path) {
    let Ok(meta) = std::fs::metadata(base) else {
        return;
    };
    let mut deleted = meta.modified().expect("mtime");
    if std::fs::read_dir(base).expect("read_dir").next().is_some() {
        fresh_dir(base);
        deleted = std::time::SystemTime::now();
    }
    let quiet = deleted.elapsed().unwrap_or_default();
    if let Some(wait) = INODE_QUIET.checked_sub(quiet) {
        eprintln!(
            "files were deleted under {} {}s ago; waiting {}s for ext4 to reuse their inodes",
            base.display(),
            quiet.as_secs(),
            wait.as_secs()
        );
        std::thread::sleep(wait);
    }
}

/// Free bytes on the filesystem of `dir`, as `df` reports them.
fn available_bytes(dir: &Path) -> u64 {
    let out = Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(dir)
        .output()
        .expect("df");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .expect("df prints the free bytes")
}

fn sync() {
    let status = Command::new("sync").status().expect("sync");
    assert!(status.success());
}

/// Drop clean pages from the page cache (after a `sync`); false when not allowed.
fn drop_caches() -> bool {
    sync();
    std::fs::write("/proc/sys/vm/drop_caches", "3\n").is_ok()
}

fn remove_if_present(dir: &Path) {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => panic!("clear {dir:?}: {e}"),
        _ => {}
    }
}

/// An empty directory at `dir`, whatever was there before.
fn fresh_dir(dir: &Path) -> PathBuf {
    remove_if_present(dir);
    std::fs::create_dir_all(dir).expect("mkdir");
    dir.to_path_buf()
}
