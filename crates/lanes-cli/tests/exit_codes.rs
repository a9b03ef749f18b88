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
