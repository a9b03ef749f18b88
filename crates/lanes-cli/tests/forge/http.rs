//! The HTTP server holds up: slow, half-sent, oversized and excess requests get a clear JSON
//! answer (or a closed connection) and never lock other clients out; authentication comes
//! before bodies; ids and client strings are checked the same way everywhere.

use lanes_testkit::{Forge, PATIENCE, Response, parse_response};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpStream;

const CATALOG: &str = r#"version = 1
[lane.a]
class = "required"
step = [{ name = "a", run = "true" }]
"#;

/// A forge without the built-in agent, its configuration file's `[http]` holding `http`.
fn forge_with(http: &str, nofile: Option<u32>) -> Forge {
    let mut forge = Forge::unstarted(CATALOG, &[], &["--no-local-agent"], "main");
    forge.repo_config = Some(format!("[http]\n{http}"));
    forge.nofile = nofile;
    forge.push("main");
    forge.start();
    forge
}

fn connect(forge: &Forge) -> TcpStream {
    let stream = TcpStream::connect(&forge.addr).expect("connect");
    stream
        .set_read_timeout(Some(PATIENCE))
        .expect("read timeout");
    stream
}

/// Sends `raw` on a new connection and reads until the server closes it.
fn exchange(forge: &Forge, raw: &[u8]) -> Response {
    let mut stream = connect(forge);
    // A server that answers early may stop reading: what it answered still counts.
    let _ = stream.write_all(raw);
    read_answer(&mut stream)
}

/// Reads one whole answer: up to the server's close.
fn read_answer(stream: &mut TcpStream) -> Response {
    let mut raw = Vec::new();
    let mut buf = [0u8; 64 << 10];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if raw.windows(4).any(|w| w == b"\r\n\r\n") => {
                // A reset after the answer (the server stopped reading a huge request).
                let _ = e;
                break;
            }
            Err(e) => panic!("no answer: {e}"),
        }
    }
    assert!(
        raw.windows(4).any(|w| w == b"\r\n\r\n"),
        "the server closed without answering"
    );
    parse_response(&raw)
}

/// True when the server closes the connection without a word.
fn closed_silently(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    matches!(stream.read(&mut buf), Ok(0))
}

fn get(path: &str, token: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: lanes\r\nConnection: close\r\n\
         Authorization: Bearer {token}\r\n\r\n"
    )
}

fn assert_error(r: &Response, status: u16, code: &str) -> Value {
    let text: String = r.text().chars().take(300).collect();
    assert_eq!(r.status, status, "{text}");
    assert_eq!(
        r.header("content-type"),
        Some("application/json"),
        "{status}: {text}"
    );
    let body = r.json();
    assert_eq!(body["error"]["code"], code, "{body:#}");
    assert!(body["error"]["message"].is_string(), "{body:#}");
    body
}

/// The value of an unlabelled metric (or one with its labels written out) in `/metrics`.
fn metric(forge: &Forge, name: &str) -> u64 {
    let text = forge.request("GET", "/metrics", None).text();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
}

/// A POST whose body never comes in full, sent with `Expect: 100-continue`: the server says
/// `100 Continue` once the request is being handled, which the caller waits for.
fn held_post(forge: &Forge) -> TcpStream {
    let mut stream = connect(forge);
    write!(
        stream,
        "POST /api/v1/agents HTTP/1.1\r\nHost: lanes\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\nExpect: 100-continue\r\n\r\n",
        forge.token
    )
    .expect("send the head");
    let mut buf = [0u8; 25];
    stream.read_exact(&mut buf).expect("100 Continue");
    assert!(
        buf.starts_with(b"HTTP/1.1 100 Continue"),
        "{}",
        String::from_utf8_lossy(&buf)
    );
    stream.write_all(b"{\"name\":").expect("a part of the body");
    stream
}

#[test]
fn eleven_hundred_half_sent_requests_do_not_lock_a_client_out() {
    // The forge's descriptors are few: before the fix, 1,100 half-sent heads took them all and
    // the forge could accept no one until they left.
    let forge = forge_with("max-connections = 512\n", Some(1024));
    let mut held = Vec::new();
    for _ in 0..1100 {
        let mut stream = TcpStream::connect(&forge.addr).expect("connect");
        stream
            .write_all(b"GET /api/v1/repos HTTP/1.1\r\n")
            .expect("one line");
        held.push(stream);
    }
    let r = exchange(&forge, get("/api/v1/repos", &forge.token).as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()[0]["name"], "origin");
    assert!(metric(&forge, "lanes_http_connections_evicted_total") >= 588);
    // The oldest half-sent heads made room, each told why.
    let first = read_answer(&mut held[0]);
    assert_error(&first, 503, "busy");
    assert_eq!(first.header("retry-after"), Some("1"));
}

#[test]
fn a_half_sent_head_is_answered_408_after_the_header_timeout() {
    let forge = forge_with("header-timeout = \"1s\"\n", None);
    let r = exchange(&forge, b"GET /api/v1/repos HTTP/1.1\r\nHost: lanes\r\n");
    let body = assert_error(&r, 408, "timeout");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("header-timeout")),
        "{body:#}"
    );
    assert_eq!(
        metric(&forge, "lanes_http_timeouts_total{phase=\"header\"}"),
        1
    );
}

#[test]
fn a_connection_left_idle_is_closed_after_the_idle_timeout() {
    let forge = forge_with("idle-timeout = \"1s\"\n", None);
    let mut stream = connect(&forge);
    write!(
        stream,
        "GET /api/v1/health HTTP/1.1\r\nHost: lanes\r\nAuthorization: Bearer {}\r\n\r\n",
        forge.token
    )
    .expect("send");
    // Keep-alive: the answer, then nothing until the server gives up on the connection.
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    while !(raw.windows(4).any(|w| w == b"\r\n\r\n") && raw.ends_with(b"}")) {
        let n = stream.read(&mut buf).expect("the answer");
        assert!(n > 0, "closed before answering");
        raw.extend_from_slice(&buf[..n]);
    }
    assert_eq!(parse_response(&raw).status, 200);
    assert!(
        closed_silently(&mut stream),
        "the idle connection stays open"
    );
}

#[test]
fn a_body_that_does_not_arrive_in_time_is_answered_408() {
    let forge = forge_with("body-timeout = \"1s\"\n", None);
    let raw = format!(
        "POST /api/v1/agents HTTP/1.1\r\nHost: lanes\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"name\":",
        forge.token
    );
    let r = exchange(&forge, raw.as_bytes());
    assert_error(&r, 408, "timeout");
    assert_eq!(
        metric(&forge, "lanes_http_timeouts_total{phase=\"body\"}"),
        1
    );
    let agents = forge.get("/api/v1/agents");
    assert_eq!(agents.as_array().map(Vec::len), Some(0), "{agents:#}");
}

#[test]
fn requests_over_the_in_flight_limit_get_503_busy_until_one_ends() {
    let forge = forge_with("max-requests = 1\n", None);
    let held = held_post(&forge);
    let busy = forge.request("GET", "/api/v1/repos", None);
    let body = assert_error(&busy, 503, "busy");
    assert_eq!(busy.header("retry-after"), Some("1"), "{body:#}");
    drop(held);
    forge.wait_for("the slot to be free again", || {
        (forge.request("GET", "/api/v1/repos", None).status == 200).then_some(())
    });
    assert!(metric(&forge, "lanes_http_requests_refused_total") >= 1);
}

#[test]
fn at_the_connection_limit_idle_connections_make_room_and_busy_ones_refuse() {
    let forge = forge_with("max-connections = 4\nmax-requests = 16\n", None);
    let mut idle: Vec<TcpStream> = (0..4).map(|_| connect(&forge)).collect();
    let r = forge.request("GET", "/api/v1/repos", None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        closed_silently(&mut idle[0]),
        "the connection idle the longest made room"
    );
    // Every connection carries a request: a new one is refused, not queued.
    let held: Vec<TcpStream> = (0..4).map(|_| held_post(&forge)).collect();
    let refused = forge.request("GET", "/api/v1/repos", None);
    assert_error(&refused, 503, "busy");
    assert_eq!(refused.header("retry-after"), Some("1"));
    drop(held);
    forge.wait_for("room again", || {
        (forge.request("GET", "/api/v1/repos", None).status == 200).then_some(())
    });
    assert!(metric(&forge, "lanes_http_connections_refused_total") >= 1);
    assert!(metric(&forge, "lanes_http_connections_evicted_total") >= 1);
    assert!(metric(&forge, "lanes_http_connections") >= 1);
}

#[test]
fn every_error_of_the_http_layer_is_json() {
    let forge = forge_with("", None);
    let token = forge.token.clone();
    // A 1 MB header.
    let huge = format!(
        "GET /api/v1/repos HTTP/1.1\r\nHost: lanes\r\nX-Big: {}\r\n\r\n",
        "a".repeat(1 << 20)
    );
    assert_error(&exchange(&forge, huge.as_bytes()), 431, "headers-too-large");
    // More header lines than allowed.
    let many: String = (0..150).map(|i| format!("X-H{i}: v\r\n")).collect();
    let many = format!("GET /api/v1/repos HTTP/1.1\r\nHost: lanes\r\n{many}\r\n");
    assert_error(&exchange(&forge, many.as_bytes()), 431, "headers-too-large");
    // A head hyper cannot parse.
    let bad = b"GET /api/v1/repos HTTP/1.1\r\nHost: lanes\r\nContent-Length: abc\r\n\r\n";
    assert_error(&exchange(&forge, bad), 400, "bad-request");
    // A 2 MB body, declared and chunked.
    let big = "x".repeat(2 << 20);
    let declared = format!(
        "POST /api/v1/agents HTTP/1.1\r\nHost: lanes\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{big}",
        big.len()
    );
    let r = exchange(&forge, declared.as_bytes());
    let body = assert_error(&r, 413, "too-large");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("1048576")),
        "{body:#}"
    );
    let chunked = format!(
        "POST /api/v1/agents HTTP/1.1\r\nHost: lanes\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{big}\r\n0\r\n\r\n",
        big.len()
    );
    assert_error(&exchange(&forge, chunked.as_bytes()), 413, "too-large");
    // A method a route does not have, and a route that does not exist.
    let r = forge.request("DELETE", "/api/v1/repos", None);
    assert_error(&r, 405, "method-not-allowed");
    assert_error(
        &forge.request("GET", "/api/v1/nope", None),
        404,
        "not-found",
    );
    assert_error(
        &forge.request("GET", "/metrics/nope", None),
        404,
        "not-found",
    );
    // The server still answers, and nothing was registered.
    assert_eq!(forge.get("/api/v1/agents"), json!([]));
}

/// Registers an agent; returns its token.
fn register(forge: &Forge, name: &str) -> String {
    let r = forge.request(
        "POST",
        "/api/v1/agents",
        Some(&json!({"name": name}).to_string()),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()["token"].as_str().expect("token").to_owned()
}

fn raw_request(method: &str, path: &str, authorization: Option<&str>, body: &str) -> String {
    let auth = authorization
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    format!(
        "{method} {path} HTTP/1.1\r\nHost: lanes\r\nConnection: close\r\n{auth}\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[test]
fn authentication_comes_before_the_body_and_the_scheme_is_case_insensitive() {
    let forge = forge_with("", None);
    let agent = register(&forge, "remote");
    for path in [
        "/api/v1/agent/status",
        "/api/v1/agent/jobs/1/started",
        "/api/v1/agent/jobs/1/steps",
        "/api/v1/agent/jobs/1/finish",
        "/api/v1/agent/jobs/1/secrets",
    ] {
        let none = exchange(
            &forge,
            raw_request("POST", path, None, "{not json").as_bytes(),
        );
        assert_error(&none, 401, "unauthorized");
        let wrong = raw_request("POST", path, Some("Bearer lanes_nope"), "{not json");
        assert_error(&exchange(&forge, wrong.as_bytes()), 403, "forbidden");
    }
    let admin = raw_request("POST", "/api/v1/agents", None, "{not json");
    assert_error(&exchange(&forge, admin.as_bytes()), 401, "unauthorized");
    // RFC 7235: the scheme is case-insensitive, for the admin and agents alike.
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let r = exchange(
            &forge,
            raw_request(
                "GET",
                "/api/v1/repos",
                Some(&format!("{scheme} {}", forge.token)),
                "",
            )
            .as_bytes(),
        );
        assert_eq!(r.status, 200, "{scheme}: {}", r.text());
        let status =
            json!({"platform": "linux-x86_64", "version": "0", "scopes": [], "cache": null});
        let r = exchange(
            &forge,
            raw_request(
                "POST",
                "/api/v1/agent/status",
                Some(&format!("{scheme} {agent}")),
                &status.to_string(),
            )
            .as_bytes(),
        );
        assert_eq!(r.status, 204, "{scheme}: {}", r.text());
    }
}

#[test]
fn a_path_id_that_is_not_a_positive_integer_is_the_same_400_everywhere() {
    let forge = forge_with("", None);
    let agent = register(&forge, "remote");
    let admin = format!("Bearer {}", forge.token);
    let agent = format!("Bearer {agent}");
    for bad in ["-1", "0", "abc", "99999999999999999999"] {
        for (method, path, auth, body) in [
            ("GET", format!("/api/v1/jobs/{bad}"), &admin, ""),
            ("GET", format!("/api/v1/jobs/{bad}/log"), &admin, ""),
            ("POST", format!("/api/v1/jobs/{bad}/cancel"), &admin, ""),
            (
                "GET",
                format!("/api/v1/repos/origin/runs/{bad}"),
                &admin,
                "",
            ),
            (
                "POST",
                format!("/api/v1/repos/origin/runs/{bad}/cancel"),
                &admin,
                "",
            ),
            (
                "POST",
                format!("/api/v1/agent/jobs/{bad}/heartbeat"),
                &agent,
                "{\"token\": 1}",
            ),
        ] {
            let r = exchange(
                &forge,
                raw_request(method, &path, Some(auth), body).as_bytes(),
            );
            let body = assert_error(&r, 400, "bad-request");
            assert!(
                body["error"]["message"].as_str().is_some_and(
                    |m| m.contains(&format!("`{bad}`")) && m.contains("positive integer")
                ),
                "{method} {path}: {body:#}"
            );
        }
    }
    for path in ["/api/v1/jobs/999", "/api/v1/repos/origin/runs/999"] {
        assert_error(&forge.request("GET", path, None), 404, "not-found");
    }
}

#[test]
fn client_strings_over_their_limits_are_refused_naming_the_field() {
    let forge = forge_with("", None);
    let long = json!({"name": "a".repeat(100_000)}).to_string();
    let r = forge.request("POST", "/api/v1/agents", Some(&long));
    let body = assert_error(&r, 400, "invalid");
    let message = body["error"]["message"].as_str().expect("message");
    assert!(
        message.contains("`name`") && message.contains("at most 128"),
        "{message}"
    );
    let labels: Vec<String> = (0..10_000).map(|i| format!("l{i}")).collect();
    let many = json!({"name": "many", "labels": labels}).to_string();
    let r = forge.request("POST", "/api/v1/agents", Some(&many));
    let body = assert_error(&r, 400, "invalid");
    let message = body["error"]["message"].as_str().expect("message");
    assert!(
        message.contains("`labels`") && message.contains("at most 64"),
        "{message}"
    );
    assert_eq!(forge.get("/api/v1/agents"), json!([]), "nothing registered");
    let agent = register(&forge, "remote");
    let status = json!({"platform": "p".repeat(1000), "version": "0", "scopes": [], "cache": null});
    let r = exchange(
        &forge,
        raw_request(
            "POST",
            "/api/v1/agent/status",
            Some(&format!("Bearer {agent}")),
            &status.to_string(),
        )
        .as_bytes(),
    );
    let body = assert_error(&r, 400, "invalid");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("`platform`")),
        "{body:#}"
    );
}
