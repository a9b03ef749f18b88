//! A full disk under the data directory: a small tmpfs the test mounts there (so it needs root,
//! as the tests have in CI; elsewhere it says why it skips).

use crate::PASSING;
use lanes_testkit::Forge;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A tmpfs mounted for the test; lazily unmounted when dropped, even if the test failed.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).expect("mkdir");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "lanes-test"])
            .arg(at)
            .status()
            .expect("mount runs");
        assert!(status.success(), "mount -t tmpfs failed");
        Tmpfs(at.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Writes `path` until the disk has no byte left.
fn fill(path: &Path) {
    let mut file = std::fs::File::create(path).expect("create the filler");
    for chunk in [1 << 20, 4096, 1] {
        let block = vec![0u8; chunk];
        while file.write_all(&block).is_ok() {}
    }
    let _ = file.sync_all();
}

#[test]
#[expect(
    clippy::print_stderr,
    reason = "a skipped test says why where the test runner shows it"
)]
fn a_full_disk_holds_new_jobs_back_and_the_forge_recovers_by_itself() {
    if !is_root() {
        eprintln!("skipped: mounting a tmpfs as the data directory needs root (CI runs as root)");
        return;
    }
    let mut forge = Forge::unstarted(PASSING, &[("src/lib.txt", "one\n")], &[], "main");
    let data = forge.data.clone();
    forge.push("main");
    let _tmpfs = Tmpfs::mount(&data, "20m");
    forge.start();
    let first = forge.git(&["rev-parse", "HEAD"]);
    assert_eq!(forge.wait_done("main", &first)["status"], "passed");

    let filler = data.join("filler");
    fill(&filler);
    let health = forge.wait_for("the forge to see its disk full", || {
        let h = forge.get("/api/v1/health");
        (h["disk_full"] == true).then_some(h)
    });
    assert!(
        health["message"]
            .as_str()
            .is_some_and(|m| m.contains("disk is full")),
        "{health:#}"
    );
    let metrics = forge.request("GET", "/metrics", None).text();
    assert!(metrics.contains("lanes_disk_full 1"), "{metrics}");
    let home = forge.request("GET", "/", None);
    assert_eq!(home.status, 200, "{}", home.text());
    assert!(
        home.text().contains("disk is full"),
        "the queue box says so: {}",
        home.text()
    );

    // A push while the disk is full; the watcher sees it within a poll or two.
    forge.write("src/lib.txt", "two\n");
    let second = forge.commit("second");
    forge.git_push("main");
    std::thread::sleep(std::time::Duration::from_secs(3));
    let runs = forge.get("/api/v1/repos/origin/runs");
    for run in runs.as_array().expect("runs") {
        if run["number"] != 1 {
            let detail = forge.get(&format!("/api/v1/repos/origin/runs/{}", run["number"]));
            for job in detail["jobs"].as_array().expect("jobs") {
                assert!(
                    job["status"] == "queued" || job["status"] == "skipped",
                    "no job starts while the disk is full: {detail:#}"
                );
            }
        }
    }

    std::fs::remove_file(&filler).expect("free the disk");
    let status = forge.wait_done("main", &second);
    assert_eq!(status["status"], "passed", "{status:#}");
    let health = forge.wait_for("the forge to see room again", || {
        let h = forge.get("/api/v1/health");
        (h["disk_full"] == false).then_some(h)
    });
    assert_eq!(health["message"], serde_json::Value::Null);
    let log = forge.server_log();
    assert_eq!(
        log.lines()
            .filter(|l| l.contains("WARN") && l.contains("is full"))
            .count(),
        1,
        "one WARN for the outage, not one per call:\n{log}"
    );
    assert!(!log.contains("transaction depth"), "{log}");
    assert!(!log.contains("ERROR"), "{log}");

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let check = runtime.block_on(async {
        let store = lanes_store::SqliteStore::open(&data.join("lanes.db"))
            .await
            .expect("the database opens");
        store.integrity_check().await.expect("the check runs")
    });
    assert_eq!(check, "ok");
}
