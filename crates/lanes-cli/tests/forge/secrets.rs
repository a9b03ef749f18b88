//! The forge's secrets (docs/security.md): held per repository in its configuration, given to
//! the lanes that ask for them on the branches allowed, masked in every view of the log, and
//! nowhere in the data directory.

use lanes_testkit::Forge;
use std::path::Path;

const INLINE: &str = "s3cr3t-Inline-4242-xyzzy";
const FROM_FILE: &str = "file-Held-Secret-7777";
const FROM_ENV: &str = "env-Held-Secret-5555";

/// Prints each secret plainly, one in two halves with a pause between them (so the agent flushes
/// the first half on its own), and base64-encoded; then tries to read the secret file.
fn catalog(secret_file: &Path) -> String {
    format!(
        r#"version = 1
[lane.deploy]
secrets = ["INLINE", "FROM_FILE", "FROM_ENV"]
[[lane.deploy.step]]
name = "print"
cache = false
run = '''
echo "plain: $INLINE $FROM_FILE $FROM_ENV"
printf 'halves: %s' "${{INLINE:0:9}}"; sleep 0.5; printf '%s\n' "${{INLINE:9}}"
echo "base64: $(printf %s "$INLINE" | base64 -w0)"
if test -e {file}; then echo "PROBE file-exists: yes"; fi
if cat {file} 2>/dev/null; then echo "PROBE file: read"; else echo "PROBE file: denied"; fi
'''
"#,
        file = secret_file.display()
    )
}

/// Every file under `dir` holding `needle`.
fn files_holding(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if std::fs::read(&path)
                .is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
            {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

fn base64(text: &str) -> String {
    let out = std::process::Command::new("sh")
        .args(["-c", "printf %s \"$1\" | base64 -w0", "sh", text])
        .output()
        .expect("base64 runs");
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn secrets_reach_the_lane_masked_everywhere_and_a_branch_not_allowed_fails_with_the_reason() {
    // Outside /tmp, which steps see as their own empty tmpfs anyway.
    let dir = lanes_testkit::outside_tmp();
    let secret_file = dir.path().join("deploy-key");
    std::fs::write(&secret_file, format!("{FROM_FILE}\n")).expect("write the secret file");
    let start = |extra: &[&str]| {
        let mut forge = Forge::unstarted(&catalog(&secret_file), &[], extra, "main");
        forge.repo_config = Some(format!(
            "[repo.secrets.INLINE]\nvalue = \"{INLINE}\"\n\
             [repo.secrets.FROM_FILE]\nfile = \"{}\"\nbranches = [\"main\", \"release/*\"]\n\
             [repo.secrets.FROM_ENV]\nenv = \"LANES_TEST_SECRET\"\n",
            secret_file.display()
        ));
        forge
            .env
            .push(("LANES_TEST_SECRET".to_owned(), FROM_ENV.to_owned()));
        forge.push("main");
        forge.start();
        forge
    };

    // Without the sandbox, the step reads the secret file: the probe can tell.
    let open = start(&["--no-sandbox"]);
    let head = open.git(&["rev-parse", "HEAD"]);
    let status = open.wait_done("main", &head);
    let id = crate::job(&status, "deploy")["id"]
        .as_i64()
        .expect("job id");
    let log = open
        .request("GET", &format!("/api/v1/jobs/{id}/log"), None)
        .text();
    assert!(log.contains("PROBE file: read"), "{log}");
    drop(open);

    let forge = start(&[]);
    let head = forge.git(&["rev-parse", "HEAD"]);
    let status = forge.wait_done("main", &head);
    let job = crate::job(&status, "deploy");
    let id = job["id"].as_i64().expect("job id");

    let api = forge.request("GET", &format!("/api/v1/jobs/{id}/log"), None);
    assert_eq!(api.status, 200, "{}", api.text());
    let log = api.text();
    assert_eq!(job["status"], "passed", "{log}");
    assert!(log.contains("plain: *** *** ***"), "{log}");
    assert!(log.contains("halves: ***"), "{log}");
    assert!(log.contains("base64: ***"), "{log}");
    assert!(log.contains("PROBE file-exists: yes"), "{log}");
    assert!(log.contains("PROBE file: denied"), "{log}");

    let run = status["run"]["number"].as_u64().expect("run number");
    let sse = forge.request("GET", &format!("/api/v1/jobs/{id}/log/stream"), None);
    assert_eq!(sse.status, 200, "{}", sse.text());
    let ui = forge.request(
        "GET",
        &format!("/origin/runs/{run}/lanes/deploy/raw?job={id}"),
        None,
    );
    assert_eq!(ui.status, 200, "{}", ui.text());
    let page = forge.request("GET", &format!("/origin/runs/{run}/lanes/deploy"), None);
    assert_eq!(page.status, 200, "{}", page.text());
    assert!(sse.text().contains("plain: *** *** ***"), "{}", sse.text());
    assert!(ui.text().contains("plain: *** *** ***"), "{}", ui.text());

    let encoded = base64(INLINE);
    for secret in [INLINE, FROM_FILE, FROM_ENV, &encoded] {
        for (view, text) in [
            ("the API log", &log),
            ("the SSE stream", &sse.text()),
            ("the raw log", &ui.text()),
            ("the lane page", &page.text()),
        ] {
            assert!(!text.contains(secret), "{view} shows a secret:\n{text}");
        }
        for dir in [&forge.data, &forge.cache] {
            let holding = files_holding(dir, secret.as_bytes());
            assert!(holding.is_empty(), "a secret is stored in {holding:?}");
        }
    }

    // A branch the secrets do not allow: the lane fails before its step runs, saying why.
    forge.git(&["checkout", "-q", "-b", "feature"]);
    forge.write("README", "a feature\n");
    let head = forge.commit("feature");
    forge.push("feature");
    let status = forge.wait_done("feature", &head);
    let job = crate::job(&status, "deploy");
    let id = job["id"].as_i64().expect("job id");
    let log = forge
        .request("GET", &format!("/api/v1/jobs/{id}/log"), None)
        .text();
    assert_eq!(job["status"], "failed", "{log}");
    assert!(
        log.contains("the branch `feature` may not use the secret `INLINE`")
            && log.contains("the default branch `main` only"),
        "{log}"
    );
    assert!(!log.contains("plain:"), "the step ran:\n{log}");
}

#[test]
fn a_secret_the_configuration_cannot_give_stops_the_forge_from_starting() {
    let forge = Forge::unstarted("version = 1\n", &[], &[], "main");
    let config = forge.root.path().join("serve.toml");
    // `lanes serve` with `[[repo]]` origin and then `secrets`: it must not start.
    let serve = |secrets: &str| {
        let text = format!(
            "[[repo]]\nname = \"origin\"\npath = \"{}\"\n{secrets}",
            forge.origin.display()
        );
        std::fs::write(&config, text).expect("write");
        let run = forge.lanes(&[
            "serve",
            "--config",
            config.to_str().expect("utf-8"),
            "--data-dir",
            forge.data.to_str().expect("utf-8"),
            "--listen",
            "127.0.0.1:0",
        ]);
        assert_eq!(run.code, 2, "{}", run.stderr);
        run.stderr
    };
    let stderr = serve("[repo.secrets.GONE]\nenv = \"LANES_TEST_NO_SUCH_VARIABLE\"\n");
    assert!(
        stderr.contains("GONE") && stderr.contains("LANES_TEST_NO_SUCH_VARIABLE"),
        "{stderr}"
    );
    // A misspelt key: the error names the line, not the value on it.
    let stderr = serve(&format!("[repo.secrets.TYPO]\nvaule = \"{INLINE}\"\n"));
    assert!(stderr.contains("line 5"), "{stderr}");
    assert!(!stderr.contains(INLINE), "{stderr}");
}
