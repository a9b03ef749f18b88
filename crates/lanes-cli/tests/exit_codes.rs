//! Every error exits with its class's code (docs/cli.md#exit-codes): 2 the user's input, 4 the
//! environment, 5 a bug; and says what went wrong and what to do.

mod common;

use common::{lanes_in, monorepo};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;

const INPUT: i32 = 2;
const ENVIRONMENT: i32 = 4;
const BUG: i32 = 5;

#[test]
fn a_typo_in_a_flag_or_an_unknown_lane_is_the_user_s_input() {
    let repo = monorepo();
    let flag = repo.lanes(&["select", "--no-such-flag"]);
    assert_eq!(flag.code, INPUT, "{flag:?}");
    assert!(
        flag.stderr
            .contains("unexpected argument '--no-such-flag' found"),
        "{}",
        flag.stderr
    );

    let lane = repo.lanes(&["fingerprint", "nope"]);
    assert_eq!(lane.code, INPUT, "{lane:?}");
    assert!(lane.stdout.is_empty(), "{}", lane.stdout);
    assert!(
        lane.stderr
            .starts_with("error: no lane `nope` in the catalog\n")
            && lane.stderr.contains("  help: lanes: "),
        "{}",
        lane.stderr
    );
}

/// A loopback address nothing listens on: a port the system just gave out, closed again.
fn closed_port() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    format!("http://{addr}")
}

#[test]
fn a_forge_that_cannot_be_reached_is_the_environment() {
    let outside = tempfile::tempdir().expect("tempdir");
    let server = closed_port();
    let run = lanes_in(
        outside.path(),
        &["status", "main", "--repo", "app"],
        &[("LANES_SERVER", &server)],
    );
    assert_eq!(run.code, ENVIRONMENT, "{run:?}");
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    assert!(
        run.stderr
            .starts_with(&format!("error: cannot reach the forge at {server}: "))
            && run.stderr.contains(
                "  help: start it with `lanes serve`, or point LANES_SERVER (or --server) at it"
            ),
        "{}",
        run.stderr
    );
}

/// A server on loopback that answers every request with `status` and `body` (of `content_type`),
/// like something at the forge's address that is not `lanes serve` of this version. Its address.
fn answering(status: &'static str, content_type: &'static str, body: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let mut reader = BufReader::new(&stream);
            // The request's head, up to its empty line; these requests have no body.
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                line.clear();
            }
            let answer = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{body}",
                body.len()
            );
            // The client may have gone already; the next request is what counts.
            let _ = (&stream).write_all(answer.as_bytes());
        }
    });
    format!("http://{addr}")
}

fn status_from(server: &str) -> common::Run {
    let outside = tempfile::tempdir().expect("tempdir");
    lanes_in(
        outside.path(),
        &["status", "main", "--repo", "app"],
        &[("LANES_SERVER", server)],
    )
}

#[test]
fn an_answer_that_is_not_the_api_s_json_is_a_bug_of_a_mismatched_forge() {
    let server = answering("200 OK", "text/html", "<html>not a forge</html>");
    let run = status_from(&server);
    assert_eq!(run.code, BUG, "{run:?}");
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    assert!(
        run.stderr.starts_with(&format!(
            "error: the forge at {server} sent a response lanes cannot read: "
        )) && run.stderr.contains(
            "  help: check that LANES_SERVER points at a `lanes serve` of the same version as \
             this lanes"
        ),
        "{}",
        run.stderr
    );
}

#[test]
fn the_forge_s_own_errors_keep_their_class() {
    let unavailable = answering(
        "503 Service Unavailable",
        "application/json",
        r#"{"error": {"code": "unavailable", "message": "failed to read or write the forge state: database is locked"}}"#,
    );
    let run = status_from(&unavailable);
    assert_eq!(run.code, ENVIRONMENT, "{run:?}");
    assert_eq!(
        run.stderr,
        "error: failed to read or write the forge state: database is locked\n"
    );

    let internal = answering(
        "500 Internal Server Error",
        "application/json",
        r#"{"error": {"code": "internal", "message": "internal error: a task panicked"}}"#,
    );
    let run = status_from(&internal);
    assert_eq!(run.code, BUG, "{run:?}");
    assert_eq!(run.stderr, "error: internal error: a task panicked\n");

    let missing = answering(
        "404 Not Found",
        "application/json",
        r#"{"error": {"code": "not-found", "message": "repository `app` not found"}}"#,
    );
    let run = status_from(&missing);
    assert_eq!(run.code, INPUT, "{run:?}");
    assert_eq!(run.stderr, "error: repository `app` not found\n");
}

/// A server on loopback that answers its requests with `answers` in turn (the last one again
/// once they run out), each `(status, JSON body)`. Its address.
fn answering_in_turn(answers: Vec<(&'static str, String)>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
            let Ok(stream) = stream else { continue };
            let mut reader = BufReader::new(&stream);
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                line.clear();
            }
            let (status, body) = &answers[n.min(answers.len() - 1)];
            let answer = format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nRetry-After: 1\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = (&stream).write_all(answer.as_bytes());
        }
    });
    format!("http://{addr}")
}

#[test]
fn lanes_wait_asks_again_when_the_forge_answers_it_is_busy() {
    // A branch whose run failed, as the forge sent it (lanes-api's v1 fixture), and the same run
    // while its job still ran.
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../lanes-api/tests/fixtures/v1/branch.json");
    let done: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture).expect("fixture")).expect("json");
    let mut running = done.clone();
    running["status"] = "running".into();
    running["run"]["status"] = "running".into();
    running["run"]["finished_at"] = serde_json::Value::Null;
    running["run"]["jobs"][0]["status"] = "running".into();
    running["run"]["jobs"][0]["finished_at"] = serde_json::Value::Null;
    let busy = r#"{"error": {"code": "busy", "message": "the forge is at its limit of 256 requests in flight: try again"}}"#;
    let server = answering_in_turn(vec![
        ("200 OK", running.to_string()),
        ("503 Service Unavailable", busy.to_owned()),
        ("200 OK", done.to_string()),
    ]);
    let outside = tempfile::tempdir().expect("tempdir");
    let run = lanes_in(
        outside.path(),
        &["wait", "main", "--repo", "origin", "--timeout", "60s"],
        &[("LANES_SERVER", &server)],
    );
    // The run failed: 1, not the 4 of giving up on the busy answer.
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains("trying again for a minute"),
        "{}",
        run.stderr
    );
}
