//! A real `lanes serve` over a real bare repository, and a developer's clone that pushes to it.

use crate::binary::{Run, lanes_bin, lanes_in};
use crate::git::{git_command, git_in};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a test waits for the forge to make progress before it fails. Not a timing
/// assertion: a generous bound so a broken forge fails the test instead of hanging it.
pub const PATIENCE: Duration = Duration::from_secs(120);

/// A bare `origin.git`, a clone `work` that pushes to it, and a forge watching `origin`.
#[derive(Debug)]
pub struct Forge {
    pub root: tempfile::TempDir,
    pub origin: PathBuf,
    pub work: PathBuf,
    pub data: PathBuf,
    pub cache: PathBuf,
    pub extra: Vec<String>,
    /// Environment variables `lanes serve` gets besides the test's own.
    pub env: Vec<(String, String)>,
    /// Start the server with its own pid in `FORGE_PID`, for steps that kill it.
    pub export_pid: bool,
    /// Start the server with at most this many open files.
    pub nofile: Option<u32>,
    /// Watch origin through a configuration file whose `[[repo]]` table ends with these lines
    /// (`[repo.secrets.NAME]` ...) rather than through `--repo`.
    pub repo_config: Option<String>,
    server: Option<Child>,
    pub addr: String,
    pub token: String,
    stderr: Arc<Mutex<String>>,
}

/// One HTTP response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {} {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Forge {
    /// A forge whose `main` holds `catalog` and `files`, pushed before the server starts.
    pub fn new(catalog: &str, files: &[(&str, &str)]) -> Forge {
        Forge::with_args(catalog, files, &[])
    }

    /// [`Forge::new`] with extra `lanes serve` flags.
    pub fn with_args(catalog: &str, files: &[(&str, &str)], extra: &[&str]) -> Forge {
        let mut forge = Forge::unstarted(catalog, files, extra, "main");
        forge.push("main");
        forge.start();
        forge
    }

    /// [`Forge::with_args`], the server started with its own pid in `FORGE_PID` (a step may kill
    /// it, when `extra` turns the sandbox off).
    pub fn exporting_pid(catalog: &str, extra: &[&str]) -> Forge {
        let mut forge = Forge::unstarted(catalog, &[], extra, "main");
        forge.export_pid = true;
        forge.push("main");
        forge.start();
        forge
    }

    /// A forge started on a bare origin with nothing pushed yet, whose `HEAD` names
    /// `origin_head`; `main` holds `catalog` and `files` in the clone, not pushed.
    pub fn on_empty_origin(catalog: &str, files: &[(&str, &str)], origin_head: &str) -> Forge {
        let mut forge = Forge::unstarted(catalog, files, &[], origin_head);
        forge.start();
        forge
    }

    pub fn unstarted(
        catalog: &str,
        files: &[(&str, &str)],
        extra: &[&str],
        origin_head: &str,
    ) -> Forge {
        let root = tempfile::tempdir().expect("tempdir");
        let origin = root.path().join("origin.git");
        git_in(
            root.path(),
            &[
                "init",
                "-q",
                "--bare",
                "--initial-branch",
                origin_head,
                "origin.git",
            ],
        );
        git_in(root.path(), &["clone", "-q", "origin.git", "work"]);
        let work = root.path().join("work");
        git_in(&work, &["checkout", "-q", "-b", "main"]);
        let forge = Forge {
            data: root.path().join("data"),
            cache: root.path().join("cache"),
            origin,
            work,
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
            env: Vec::new(),
            export_pid: false,
            nofile: None,
            repo_config: None,
            root,
            server: None,
            addr: String::new(),
            token: String::new(),
            stderr: Arc::new(Mutex::new(String::new())),
        };
        forge.write("lanes.toml", catalog);
        for (path, text) in files {
            forge.write(path, text);
        }
        forge.commit("initial");
        forge
    }

    pub fn write(&self, path: &str, text: &str) {
        let full = self.work.join(path);
        std::fs::create_dir_all(full.parent().expect("a parent")).expect("mkdir");
        std::fs::write(full, text).expect("write");
    }

    pub fn git(&self, args: &[&str]) -> String {
        git_in(&self.work, args)
    }

    /// Commits everything in the clone; returns the commit id.
    pub fn commit(&self, message: &str) -> String {
        self.git(&["add", "-A"]);
        // Distinct dates would not matter; distinct messages make distinct commits.
        self.git(&["commit", "-q", "--allow-empty", "-m", message]);
        self.git(&["rev-parse", "HEAD"])
    }

    /// Pushes `branch` to origin (forced) and tells the forge, as the post-receive hook does.
    pub fn push(&self, branch: &str) {
        self.git_push(branch);
        if !self.addr.is_empty() {
            let r = self.request("POST", "/api/v1/repos/origin/refs-changed", None);
            assert_eq!(r.status, 202, "{}", r.text());
        }
    }

    /// Pushes `branch` to origin (forced) without telling the forge; returns git's stderr (where
    /// a hook's output goes).
    pub fn git_push(&self, branch: &str) -> String {
        let out = git_command(&self.work)
            .args([
                "push",
                "-q",
                "-f",
                "origin",
                &format!("HEAD:refs/heads/{branch}"),
            ])
            .output()
            .expect("git push runs");
        assert!(
            out.status.success(),
            "git push failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Starts `lanes serve` (again, after a stop or a kill) and waits until it listens.
    pub fn start(&mut self) {
        let mut cmd = if self.export_pid || self.nofile.is_some() {
            // `exec` keeps the shell's pid, which is the server's then, and its limits.
            let mut script = String::new();
            if let Some(n) = self.nofile {
                script.push_str(&format!("ulimit -n {n}; "));
            }
            if self.export_pid {
                script.push_str("export FORGE_PID=$$; ");
            }
            script.push_str("exec \"$0\" \"$@\"");
            let mut sh = Command::new("sh");
            sh.args(["-c", &script]).arg(lanes_bin());
            sh
        } else {
            Command::new(lanes_bin())
        };
        // A restart keeps the address, so clients following the forge can reconnect.
        let listen = if self.addr.is_empty() {
            "127.0.0.1:0".to_owned()
        } else {
            self.addr.clone()
        };
        let poll = if self.extra.iter().any(|a| a == "--poll-interval") {
            Vec::new()
        } else {
            vec!["--poll-interval", "1s"]
        };
        match &self.repo_config {
            Some(lines) => {
                let config = self.root.path().join("serve.toml");
                let text = format!(
                    "[[repo]]\nname = \"origin\"\npath = \"{}\"\n{lines}",
                    self.origin.display()
                );
                std::fs::write(&config, text).expect("write serve.toml");
                cmd.args(["serve", "--config"]).arg(config)
            }
            None => cmd.args(["serve", "--repo"]).arg(&self.origin),
        };
        cmd.arg("--data-dir")
            .arg(&self.data)
            .args(["--listen", &listen])
            .args(poll)
            .args(&self.extra)
            .env("LANES_CACHE_DIR", &self.cache)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("NO_COLOR", "1")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("lanes serve starts");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        let log = Arc::clone(&self.stderr);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                log.lock().expect("log lock").push_str(&format!("{line}\n"));
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx.recv_timeout(left).unwrap_or_else(|_| {
                panic!(
                    "lanes serve did not start listening:\n{}",
                    self.server_log()
                )
            });
            if let Some(token) = line.split("LANES_TOKEN=").nth(1) {
                self.token = token.trim().to_owned();
            }
            if let Some(rest) = line.split("listening on http://").nth(1) {
                self.addr = rest.split(';').next().expect("an address").to_owned();
                break;
            }
        }
        assert!(!self.token.is_empty(), "no admin token printed");
        self.server = Some(child);
    }

    /// The running server's process id.
    pub fn pid(&self) -> Option<u32> {
        self.server.as_ref().map(Child::id)
    }

    /// Everything the server wrote on stderr so far.
    pub fn server_log(&self) -> String {
        self.stderr.lock().expect("log lock").clone()
    }

    /// SIGKILL: no shutdown at all.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.server.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits until the server exits on its own (or is killed by someone else); returns how.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        let child = self.server.as_mut().expect("a running server");
        loop {
            if let Some(status) = child.try_wait().expect("wait for the server") {
                self.server = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the server did not exit:\n{}",
                self.server_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then wait for the server to exit; returns its exit code.
    pub fn stop(&mut self) -> Option<i32> {
        let mut child = self.server.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        child.wait().ok().and_then(|s| s.code())
    }

    /// One HTTP/1.1 request with the admin token.
    pub fn request(&self, method: &str, path: &str, body: Option<&str>) -> Response {
        self.request_as(method, path, body, Some(&self.token))
    }

    /// One HTTP/1.1 request, with `token` if given.
    pub fn request_as(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        token: Option<&str>,
    ) -> Response {
        http(
            &self.addr,
            method,
            path,
            body.unwrap_or("").as_bytes(),
            token,
        )
        .expect("the forge answers")
    }

    /// GET a JSON document with the token; panics unless 200.
    pub fn get(&self, path: &str) -> serde_json::Value {
        let r = self.request("GET", path, None);
        assert_eq!(r.status, 200, "GET {path}: {}", r.text());
        r.json()
    }

    /// The branch status of `branch`.
    pub fn branch(&self, branch: &str) -> serde_json::Value {
        self.get(&format!("/api/v1/repos/origin/branches/{branch}"))
    }

    /// The branch status of `branch`, `None` until the forge has seen it.
    pub fn seen_branch(&self, branch: &str) -> Option<serde_json::Value> {
        let r = self.request(
            "GET",
            &format!("/api/v1/repos/origin/branches/{branch}"),
            None,
        );
        (r.status == 200).then(|| r.json())
    }

    /// Waits until `check` returns `Some`, polling; panics with the server's log after
    /// [`PATIENCE`].
    pub fn wait_for<T>(&self, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(v) = check() {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "gave up waiting for {what}; server log:\n{}",
                self.server_log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until `branch`'s run for `head` has ended; returns the branch status.
    pub fn wait_done(&self, branch: &str, head: &str) -> serde_json::Value {
        self.wait_for(&format!("{branch} at {head:.12} to finish"), || {
            let status = self.seen_branch(branch)?;
            let run = &status["run"];
            let ended = ["passed", "failed", "cancelled", "error"]
                .contains(&run["status"].as_str().unwrap_or(""));
            (run["head"] == head && ended).then_some(status)
        })
    }

    /// Runs the `lanes` CLI in the clone against this forge.
    pub fn lanes(&self, args: &[&str]) -> Run {
        lanes_in(
            &self.work,
            args,
            &[
                ("LANES_SERVER", &format!("http://{}", self.addr)),
                ("LANES_TOKEN", &self.token),
            ],
        )
    }
}

impl Drop for Forge {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One HTTP/1.1 request to `addr`, with `token` if given; an error when the forge cannot be
/// reached or hangs up.
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    body: &[u8],
    token: Option<&str>,
) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect(addr)?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{auth}\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )?;
    stream.write_all(body)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    if !raw.windows(4).any(|w| w == b"\r\n\r\n") {
        return Err(std::io::Error::other("the forge hung up before answering"));
    }
    Ok(parse_response(&raw))
}

/// A whole HTTP/1.1 response as read off a connection, its chunked body joined.
pub fn parse_response(raw: &[u8]) -> Response {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a header block");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    Response {
        status,
        headers,
        body,
    }
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = raw.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&raw[..end]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = end + 2;
        out.extend_from_slice(&raw[start..start + size]);
        raw = &raw[start + size + 2..];
    }
    out
}
