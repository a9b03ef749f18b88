//! Steps are untrusted code: the escape set of docs/security.md, tried from a lane of a branch
//! pushed to a real `lanes serve`. Each probe is denied behind the sandbox and shown to work
//! with `--no-sandbox`, so the tests can fail.
//!
//! They need root (a step user, cgroups) and Linux namespaces, as CI has.

use crate::job;
use lanes_testkit::Forge;
use serde_json::Value;
use std::io::Read;
use std::net::TcpListener;
use std::time::{Duration, Instant};

fn can_run() -> bool {
    let root = std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
    });
    assert!(
        root,
        "the sandbox's step user and cgroups need root (CI runs as root)"
    );
    root
}

/// A forge with a trivial catalog; the probes are pushed once its pid is known.
fn forge(extra: &[&str]) -> Forge {
    Forge::with_args(
        "version = 1\n[lane.idle]\nstep = [{ name = \"idle\", run = \"true\" }]\n",
        &[],
        extra,
    )
}

/// Push `catalog` to main and wait for its run to end.
fn run(forge: &Forge, catalog: &str) -> Value {
    forge.write("lanes.toml", catalog);
    let head = forge.commit("probes");
    forge.push("main");
    forge.wait_done("main", &head)
}

fn log(forge: &Forge, status: &Value, lane: &str) -> String {
    let id = job(status, lane)["id"].as_i64().expect("job id");
    let r = forge.request("GET", &format!("/api/v1/jobs/{id}/log"), None);
    assert_eq!(r.status, 200, "{}", r.text());
    r.text()
}

/// The lines `PROBE name: result` of a log, as (name, result).
fn probes(log: &str) -> Vec<(String, String)> {
    log.lines()
        .filter_map(|l| l.split_once("PROBE ").map(|(_, p)| p))
        .filter_map(|p| p.split_once(": "))
        .map(|(n, r)| (n.to_owned(), r.trim().to_owned()))
        .collect()
}

fn probe<'a>(probes: &'a [(String, String)], name: &str, log: &str) -> &'a str {
    probes
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, r)| r.as_str())
        .unwrap_or_else(|| panic!("no probe {name} in the log:\n{log}"))
}

/// Processes named `marker` (their `argv[0]`).
fn processes_with(marker: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.split(|b| *b == 0).next() == Some(marker.as_bytes()))
        })
        .collect()
}

fn kill_all_with(marker: &str) {
    for pid in processes_with(marker) {
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status();
    }
}

/// One lane of probes against the forge itself, and a second lane running beside it.
fn escape_catalog(forge: &Forge, pid: u32, port: u16, marker: &str) -> String {
    let data = forge.data.display();
    let cache = forge.cache.display();
    format!(
        r#"version = 1
[lane.other]
[[lane.other.step]]
name = "hold"
cache = false
run = "echo s3cret > held-secret.txt; sleep 8"

[lane.probe]
[[lane.probe.step]]
name = "probe"
cache = false
run = '''
p() {{ if eval "$2" >/dev/null 2>&1; then echo "PROBE $1: allowed"; else echo "PROBE $1: denied"; fi; }}
p read-db "head -c 15 {data}/lanes.db | grep -q SQLite"
p write-db ": >> {data}/lanes.db"
p write-data "touch {data}/planted"
p read-logs "find {data} -name '*.log' | grep -q . && head -c 64 $(find {data} -name '*.log' | head -1)"
p environ "tr '\0' '\n' < /proc/{pid}/environ | grep -q LANES_CACHE_DIR"
p signal-forge "kill -0 {pid}"
p other-slot "timeout 20 bash -c 'until cat {cache}/work/other/*/src/held-secret.txt; do sleep 0.1; done'"
p tcp-outside "exec 3<>/dev/tcp/127.0.0.1/{port}"
p own-loopback "python3 -c 'import socket; s=socket.socket(); s.bind((\"127.0.0.1\",0)); s.listen(); socket.create_connection(s.getsockname())'"
setsid bash -c 'exec -a {marker} sleep 600' </dev/null >/dev/null 2>&1 &
sleep 0.5
'''

[lane.net]
[[lane.net.step]]
name = "net"
cache = false
network = true
run = '''if exec 3<>/dev/tcp/127.0.0.1/{port}; then echo "PROBE tcp-with-network: allowed"; else echo "PROBE tcp-with-network: denied"; fi'''
"#
    )
}

fn escape(extra: &[&str]) -> (Vec<(String, String)>, String, bool) {
    let marker = format!("lanes-probe-daemon-{}-{}", std::process::id(), extra.len());
    let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
    let port = listener.local_addr().expect("addr").port();
    listener.set_nonblocking(true).expect("nonblocking");
    let mut extra: Vec<&str> = extra.to_vec();
    extra.extend(["--agent-capacity", "3"]);
    let forge = forge(&extra);
    let pid = forge.pid().expect("the forge runs");
    let status = run(&forge, &escape_catalog(&forge, pid, port, &marker));
    // Anything accepted meanwhile is dropped; only the probes' own lines count.
    let _ = listener.accept().map(|(mut s, _)| s.read(&mut [0; 1]));
    let mut text = log(&forge, &status, "probe");
    text.push_str(&log(&forge, &status, "net"));
    let daemon_left = !processes_with(&marker).is_empty();
    kill_all_with(&marker);
    let planted = forge.data.join("planted").exists();
    let mut found = probes(&text);
    found.push((
        "planted-file-exists".to_owned(),
        if planted { "allowed" } else { "denied" }.to_owned(),
    ));
    (found, text, daemon_left)
}

#[test]
fn a_step_cannot_reach_the_forge_other_jobs_or_the_network_and_can_without_the_sandbox() {
    if !can_run() {
        return;
    }
    let (denied, log, daemon_left) = escape(&[]);
    for name in [
        "read-db",
        "write-db",
        "write-data",
        "read-logs",
        "environ",
        "signal-forge",
        "other-slot",
        "tcp-outside",
        "planted-file-exists",
    ] {
        assert_eq!(probe(&denied, name, &log), "denied", "{name}:\n{log}");
    }
    assert_eq!(probe(&denied, "own-loopback", &log), "allowed", "{log}");
    assert_eq!(probe(&denied, "tcp-with-network", &log), "allowed", "{log}");
    assert!(!daemon_left, "a setsid daemon outlived its job");

    // The same probes without the sandbox: each one gets through, so the test above can fail.
    let (allowed, log, daemon_left) = escape(&["--no-sandbox"]);
    for name in [
        "read-db",
        "write-db",
        "write-data",
        "read-logs",
        "environ",
        "signal-forge",
        "other-slot",
        "tcp-outside",
        "planted-file-exists",
    ] {
        assert_eq!(probe(&allowed, name, &log), "allowed", "{name}:\n{log}");
    }
    assert!(
        daemon_left,
        "without the sandbox a setsid daemon outlives its job"
    );
}

#[test]
fn limits_stop_a_fork_bomb_and_end_a_step_over_its_memory_oom_killed() {
    if !can_run() {
        return;
    }
    let catalog = r#"version = 1
[lane.forks]
limits = { pids = 40 }
[[lane.forks.step]]
name = "forks"
cache = false
run = '''
python3 - <<'PY'
import os, time
n = 0
try:
    while n < 300:
        if os.fork() == 0:
            time.sleep(20)
            os._exit(0)
        n += 1
    print("PROBE forks: 300")
except OSError:
    print("PROBE forks: stopped")
PY
'''

[lane.memory]
[[lane.memory.step]]
name = "eat"
cache = false
limits = { memory = "64M" }
run = "python3 -c 'b = bytearray(512 << 20); b[::4096] = b\"x\" * len(b[::4096]); print(\"PROBE memory: fits\")'"
"#;
    for (extra, forks, memory_state) in [
        (&[][..], "stopped", "failed"),
        (&["--no-sandbox"][..], "300", "passed"),
    ] {
        let forge = forge(extra);
        let status = run(&forge, catalog);
        let forks_log = log(&forge, &status, "forks");
        assert_eq!(
            probe(&probes(&forks_log), "forks", &forks_log),
            forks,
            "{extra:?}"
        );
        let eat = job(&status, "memory");
        assert_eq!(eat["status"], memory_state, "{extra:?}: {status:#}");
        let id = eat["id"].as_i64().expect("job id");
        let api = forge.get(&format!("/api/v1/jobs/{id}"));
        let step_state = if extra.is_empty() {
            "oom-killed"
        } else {
            "passed"
        };
        assert_eq!(api["steps"][0]["status"], step_state, "{extra:?}: {api:#}");
        if extra.is_empty() {
            let eat_log = log(&forge, &status, "memory");
            assert!(eat_log.contains("oom-killed"), "{eat_log}");
            let run = status["run"]["number"].as_u64().expect("run number");
            let page = forge.request("GET", &format!("/origin/runs/{run}/lanes/memory"), None);
            assert!(page.text().contains("st-oom-killed"), "{}", page.text());
        }
    }
}

#[test]
fn a_forge_killed_mid_step_leaves_no_step_process_and_the_rerun_is_alone() {
    if !can_run() {
        return;
    }
    for sandboxed in [true, false] {
        let marker = format!("lanes-probe-midstep-{}-{sandboxed}", std::process::id());
        let catalog = format!(
            "version = 1\n[lane.long]\n[[lane.long.step]]\nname = \"long\"\ncache = false\nrun = \
             \"setsid bash -c 'exec -a {marker}-daemon sleep 600' </dev/null >/dev/null 2>&1 & \
             exec -a {marker} sleep 600\"\n"
        );
        let extra: &[&str] = if sandboxed { &[] } else { &["--no-sandbox"] };
        let mut forge = forge(extra);
        forge.write("lanes.toml", &catalog);
        forge.commit("long");
        forge.push("main");
        let deadline = Instant::now() + Duration::from_secs(60);
        while processes_with(&format!("{marker}-daemon")).is_empty() {
            assert!(Instant::now() < deadline, "the step never started");
            std::thread::sleep(Duration::from_millis(100));
        }
        forge.kill();
        // The kernel delivers the parent-death signals at once; give the reaping a moment.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !(processes_with(&marker).is_empty()
            && processes_with(&format!("{marker}-daemon")).is_empty())
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(100));
        }
        let left: Vec<u32> = [
            processes_with(&marker),
            processes_with(&format!("{marker}-daemon")),
        ]
        .concat();
        if sandboxed {
            assert!(
                left.is_empty(),
                "step processes outlived the forge: {left:?}"
            );
            // The restarted forge requeues the job; its attempt runs alone in its slot.
            forge.start();
            let deadline = Instant::now() + Duration::from_secs(60);
            while processes_with(&format!("{marker}-daemon")).is_empty() {
                assert!(
                    Instant::now() < deadline,
                    "the requeued attempt never started"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
            let running = processes_with(&format!("{marker}-daemon"));
            assert_eq!(running.len(), 1, "one attempt at a time: {running:?}");
            forge.kill();
        } else {
            assert!(
                !left.is_empty(),
                "without the sandbox the step outlives the forge"
            );
        }
        kill_all_with(&marker);
        kill_all_with(&format!("{marker}-daemon"));
    }
}

#[test]
fn cargo_steps_pass_as_the_step_user_with_a_rustup_install_exposed_read_only() {
    if !can_run() {
        return;
    }
    let home = std::env::var("HOME").expect("HOME");
    let rustup = std::env::var("RUSTUP_HOME").unwrap_or_else(|_| format!("{home}/.rustup"));
    let cargo_home = std::env::var("CARGO_HOME").unwrap_or_else(|_| format!("{home}/.cargo"));
    // The forge user's home (here, the one holding the rustup install) is hidden from steps; the
    // install comes back read-only, as docs/security.md tells an operator to do.
    let forge_home = std::path::Path::new(&rustup)
        .parent()
        .expect("RUSTUP_HOME has a parent")
        .display()
        .to_string();
    let catalog = format!(
        r#"version = 1
[lane.rust]
[[lane.rust.step]]
name = "test"
cache = false
run = "id -u; cargo test --offline --quiet 2>&1; test ! -e {cargo_home}/credentials.toml; ls {forge_home}"
env = {{ PATH = "{cargo_home}/bin:/usr/local/bin:/usr/bin:/bin", RUSTUP_HOME = "{rustup}" }}
"#
    );
    let mut forge = Forge::with_args(
        "version = 1\n[lane.idle]\nstep = [{ name = \"idle\", run = \"true\" }]\n",
        &[],
        &[
            "--step-expose",
            &rustup,
            "--step-expose",
            &format!("{cargo_home}/bin"),
        ],
    );
    forge.stop();
    forge.env.push(("HOME".to_owned(), forge_home.clone()));
    forge.start();
    forge.write(
        "Cargo.toml",
        "[package]\nname = \"probe\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
    );
    forge.write(
        "src/lib.rs",
        "pub fn two() -> u32 { 2 }\n#[test]\nfn adds() { assert_eq!(two(), 2); }\n",
    );
    let status = run(&forge, &catalog);
    let text = log(&forge, &status, "rust");
    assert_eq!(job(&status, "rust")["status"], "passed", "{text}");
    assert!(
        !text.contains("\n0\n") && !text.contains("] 0\n"),
        "not run as root:\n{text}"
    );
}

#[test]
fn a_reused_slot_keeps_unchanged_files_at_their_times_for_the_step_user() {
    // Giving the slot to the step user after lanes recorded it would change every file's ctime,
    // so each run would rewrite every file (and cargo would rebuild everything).
    if !can_run() {
        return;
    }
    let catalog = r#"version = 1
[lane.l]
inputs = ["src/"]
[[lane.l.step]]
name = "s"
cache = false
run = "echo PROBE keep: $(stat -c '%i %y %U' src/keep.txt); echo PROBE edit: $(stat -c '%i %y' src/edit.txt)"
"#;
    let forge = forge(&[]);
    forge.write("src/keep.txt", "kept\n");
    forge.write("src/edit.txt", "before\n");
    let first = run(&forge, catalog);
    let first_log = log(&forge, &first, "l");
    assert_eq!(job(&first, "l")["status"], "passed", "{first_log}");
    forge.write("src/edit.txt", "after\n");
    let second = run(&forge, catalog);
    let second_log = log(&forge, &second, "l");
    assert_eq!(job(&second, "l")["status"], "passed", "{second_log}");
    let (a, b) = (probes(&first_log), probes(&second_log));
    let keep = probe(&a, "keep", &first_log);
    assert!(
        !keep.ends_with(" root"),
        "the step user owns the files: {keep}"
    );
    assert_eq!(
        keep,
        probe(&b, "keep", &second_log),
        "an unchanged file keeps its inode and times"
    );
    assert_ne!(
        probe(&a, "edit", &first_log),
        probe(&b, "edit", &second_log),
        "a changed file is written anew"
    );
}

#[test]
fn a_cache_directory_the_step_user_cannot_reach_stops_the_forge_with_the_reason() {
    if !can_run() {
        return;
    }
    // Outside /tmp (steps get their own there, so any way down it is made for them): a 0700
    // directory of root's, with the cache inside.
    let closed = lanes_testkit::outside_tmp();
    std::fs::set_permissions(
        closed.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .expect("chmod 700");
    let mut forge = forge(&[]);
    forge.stop();
    forge.cache = closed.path().join("cache");
    let mut serve = std::process::Command::new(env!("CARGO_BIN_EXE_lanes"));
    serve
        .args(["serve", "--repo"])
        .arg(&forge.origin)
        .arg("--data-dir")
        .arg(&forge.data)
        .args(["--listen", "127.0.0.1:0"])
        .env("LANES_CACHE_DIR", &forge.cache)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut child = serve.spawn().expect("lanes serve starts");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    let _ = child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr);
    assert_eq!(status.and_then(|s| s.code()), Some(2), "{stderr}");
    assert!(
        stderr.contains("cannot reach the cache directory")
            && stderr.contains(&closed.path().display().to_string()),
        "{stderr}"
    );
}
