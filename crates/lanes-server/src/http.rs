//! The HTTP server under the router: accepts connections and holds up against clients that send
//! too much, too slowly or too often (docs/serve.md, "The HTTP server").
//!
//! - at most `max-connections` connections: a new one closes the connection idle or receiving a
//!   head the longest (a half-sent head is answered `503 busy`); when every connection carries
//!   a request, the new one is answered `503 busy` and closed;
//! - a head must arrive within `header-timeout` of its first byte (`408`), be at most
//!   `max-header-bytes` with at most 100 header lines (`431`); a connection idle for
//!   `idle-timeout` is closed;
//! - at most `max-requests` requests in flight (`503 busy` with `Retry-After`); a body must be at
//!   most `max-body-bytes` (`413`) and arrive within `body-timeout` (`408`).
//!
//! Every answer the server gives itself is the API's JSON error. hyper's own answers to heads it
//! cannot parse are replaced by JSON ones (`conn::Watched`). It decides nothing about routes.

mod conn;
mod head;
mod service;

use crate::metrics::HttpMetrics;
use axum::Router;
use axum::http::StatusCode;
use axum::response::Response;
use conn::{Conn, Expired, Verdict, Watched};
use hyper_util::rt::TokioIo;
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;

/// How long a closing connection keeps reading (and dropping) what its client still sends, so
/// the client reads the answer instead of a reset.
const LINGER: Duration = Duration::from_secs(2);

/// Closing connections that linger at once; more are closed at once.
const MAX_LINGERING: usize = 64;

/// Descriptors the forge needs besides its connections (database, logs, repositories, steps).
const RESERVED_FILES: u64 = 256;

/// The HTTP server's limits and timeouts (`[http]` in the configuration file).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpConfig {
    /// From a head's first byte to its end.
    pub header_timeout: Duration,
    /// From a request's start to the end of its body.
    pub body_timeout: Duration,
    /// A connection with no request on it is closed after this long.
    pub idle_timeout: Duration,
    /// Open connections at once.
    pub max_connections: usize,
    /// Requests in flight at once.
    pub max_requests: usize,
    /// The longest request head, request line and headers.
    pub max_header_bytes: usize,
    /// The largest request body.
    pub max_body_bytes: u64,
}

impl Default for HttpConfig {
    fn default() -> HttpConfig {
        HttpConfig {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(120),
            max_connections: 1024,
            max_requests: 256,
            max_header_bytes: 32 << 10,
            max_body_bytes: 1 << 20,
        }
    }
}

impl HttpConfig {
    /// The largest `max-header-bytes`: hyper refuses longer request targets itself.
    pub const MAX_HEADER_BYTES: usize = 64 << 10;

    /// What is wrong with these values, if anything.
    pub fn check(&self) -> Result<(), String> {
        if !(1024..=Self::MAX_HEADER_BYTES).contains(&self.max_header_bytes) {
            return Err(format!(
                "max-header-bytes must be between 1K and 64K, not {}",
                self.max_header_bytes
            ));
        }
        if self.max_body_bytes < 1024 {
            return Err("max-body-bytes must be at least 1K".to_owned());
        }
        if self.max_connections == 0 || self.max_requests == 0 {
            return Err("max-connections and max-requests must be at least 1".to_owned());
        }
        for (name, d) in [
            ("header-timeout", self.header_timeout),
            ("body-timeout", self.body_timeout),
            ("idle-timeout", self.idle_timeout),
        ] {
            if d.is_zero() {
                return Err(format!("{name} must be at least 1s"));
            }
        }
        Ok(())
    }
}

/// The API's JSON error as a response of the HTTP layer.
fn error_response(status: StatusCode, code: &'static str, message: String) -> Response {
    axum::response::IntoResponse::into_response(crate::api::ApiError::new(status, code, message))
}

/// A whole HTTP/1.1 answer written to the socket by the server itself, after hyper let go.
fn raw_answer(verdict: Verdict, config: &HttpConfig) -> Vec<u8> {
    let (status, code, message) = match verdict {
        Verdict::HeadTooLarge => (
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers-too-large",
            format!(
                "the request's head is longer than {} bytes (max-header-bytes)",
                config.max_header_bytes
            ),
        ),
        Verdict::TooManyHeaders => (
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers-too-large",
            format!(
                "the request has more than {} header lines",
                conn::MAX_HEADERS
            ),
        ),
        Verdict::HeadTimeout => (
            StatusCode::REQUEST_TIMEOUT,
            "timeout",
            format!(
                "the request's head did not arrive within {}s (header-timeout)",
                config.header_timeout.as_secs()
            ),
        ),
        Verdict::Busy => (
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "the server is at its limit of connections; retry in a second".to_owned(),
        ),
        Verdict::Refused(status) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
            let message = match status {
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => {
                    "the request's head is too large".to_owned()
                }
                StatusCode::URI_TOO_LONG => "the request's target is too long".to_owned(),
                _ => "the request's head is not valid HTTP/1.1".to_owned(),
            };
            (status, crate::api::error_code(status), message)
        }
    };
    let body = json!({"error": {"code": code, "message": message}}).to_string();
    let retry = if status == StatusCode::SERVICE_UNAVAILABLE {
        "retry-after: 1\r\n"
    } else {
        ""
    };
    format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\n{retry}\r\n{body}",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    )
    .into_bytes()
}

/// The open connections, to count them and to choose one to close when they are too many.
#[derive(Debug, Default)]
struct Registry {
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
}

enum Admission {
    Admitted(u64, Arc<Conn>),
    Refused,
}

impl Registry {
    fn admit(&self, id: u64, max: usize, metrics: &HttpMetrics) -> Admission {
        let mut conns = self
            .conns
            .lock()
            .expect("the registry lock is never poisoned");
        let open = conns.values().filter(|c| !c.is_evicted()).count();
        if open >= max {
            let oldest = conns
                .values()
                .filter_map(|c| c.evictable().map(|since| (since, c)))
                .min_by_key(|(since, _)| *since);
            match oldest {
                Some((_, victim)) => {
                    victim.evict();
                    metrics.connection_evicted();
                }
                None => return Admission::Refused,
            }
        }
        let conn = Arc::new(Conn::new());
        conns.insert(id, Arc::clone(&conn));
        metrics.connections_open(conns.len() as u64);
        Admission::Admitted(id, conn)
    }

    fn remove(&self, id: u64, metrics: &HttpMetrics) {
        let mut conns = self
            .conns
            .lock()
            .expect("the registry lock is never poisoned");
        conns.remove(&id);
        metrics.connections_open(conns.len() as u64);
    }
}

/// Says (once per start) when the open-files limit cannot hold `max-connections` connections.
pub(crate) fn check_open_files(config: &HttpConfig) -> Option<String> {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile).current?;
    let needed = config.max_connections as u64 + RESERVED_FILES;
    (limit < needed).then(|| {
        format!(
            "warning: the open-files limit ({limit}) is below what max-connections = {} needs \
             ({needed}); connections may take the descriptors the forge needs. Raise it (ulimit \
             -n, LimitNOFILE=) or lower [http] max-connections\n",
            config.max_connections
        )
    })
}

/// Serves `router` on `listener` until `stop` is raised, then lets open requests end.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    config: HttpConfig,
    metrics: Arc<HttpMetrics>,
    mut stop: watch::Receiver<bool>,
) {
    let shared = Arc::new(service::Shared {
        router,
        requests: Arc::new(Semaphore::new(config.max_requests)),
        limits: config,
        metrics,
    });
    let registry = Arc::new(Registry::default());
    let lingering = Arc::new(Semaphore::new(MAX_LINGERING));
    let mut tasks = tokio::task::JoinSet::new();
    let mut next_id = 0u64;
    let mut accept_failing = false;
    let mut refusing_said: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|s| *s) => break,
        };
        // Reap finished connection tasks as we go.
        while tasks.try_join_next().is_some() {}
        let stream = match accepted {
            Ok((stream, _)) => {
                accept_failing = false;
                stream
            }
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // Out of descriptors, most likely: connections close by their deadlines.
                if !accept_failing {
                    tracing::warn!("cannot accept connections: {e}");
                    accept_failing = true;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        next_id += 1;
        match registry.admit(next_id, shared.limits.max_connections, &shared.metrics) {
            Admission::Admitted(id, conn) => {
                tasks.spawn(connection(
                    stream,
                    id,
                    conn,
                    Arc::clone(&shared),
                    Arc::clone(&registry),
                    Arc::clone(&lingering),
                    stop.clone(),
                ));
            }
            Admission::Refused => {
                shared.metrics.connection_refused();
                if refusing_said.is_none_or(|at| at.elapsed() > Duration::from_secs(60)) {
                    tracing::warn!(
                        "refusing connections: all {} open connections carry a request \
                         ([http] max-connections); new ones get 503 busy",
                        shared.limits.max_connections
                    );
                    refusing_said = Some(Instant::now());
                }
                if let Ok(permit) = Arc::clone(&lingering).try_acquire_owned() {
                    let answer = raw_answer(Verdict::Busy, &shared.limits);
                    tasks.spawn(async move {
                        let stream = Arc::new(stream);
                        answer_and_close(&stream, &answer).await;
                        linger(&stream).await;
                        drop(permit);
                    });
                }
            }
        }
    }
    drop(listener);
    while tasks.join_next().await.is_some() {}
}

fn is_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

/// Removes a connection from the registry however its task ends.
struct Registered {
    id: u64,
    registry: Arc<Registry>,
    metrics: Arc<HttpMetrics>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.registry.remove(self.id, &self.metrics);
    }
}

async fn connection(
    stream: TcpStream,
    id: u64,
    conn: Arc<Conn>,
    shared: Arc<service::Shared>,
    registry: Arc<Registry>,
    lingering: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
) {
    let registered = Registered {
        id,
        registry,
        metrics: Arc::clone(&shared.metrics),
    };
    let config = shared.limits.clone();
    let stream = Arc::new(stream);
    let io = TokioIo::new(Watched {
        stream: Arc::clone(&stream),
        conn: Arc::clone(&conn),
        max_head: config.max_header_bytes,
    });
    let service = service::Service {
        shared: Arc::clone(&shared),
        conn: Arc::clone(&conn),
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .max_headers(conn::MAX_HEADERS)
        // Above the head limit, so that the head limit is what answers.
        .max_buf_size(HttpConfig::MAX_HEADER_BYTES * 2 + (64 << 10));
    let http = builder.serve_connection(io, service);
    tokio::pin!(http);
    let mut closing = false;
    loop {
        let deadline = conn.deadline(config.header_timeout, config.idle_timeout);
        let wait = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            result = http.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!("connection ended: {e}");
                }
                break;
            }
            () = conn.wake.notified() => {
                if conn.is_evicted() && !closing {
                    http.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
            () = wait => {
                match conn.expire(Instant::now(), config.header_timeout, config.idle_timeout) {
                    Some(Expired::Head) => shared.metrics.head_timed_out(),
                    Some(Expired::Idle) => {}
                    None => continue,
                }
                if !closing {
                    http.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
            _ = stop.wait_for(|s| *s), if !closing => {
                http.as_mut().graceful_shutdown();
                closing = true;
            }
        }
    }
    drop(registered);
    let verdict = conn.take_verdict();
    if let Some(verdict) = verdict {
        answer_and_close(&stream, &raw_answer(verdict, &config)).await;
    }
    // A client still sending (a head or body too large, a body left unread) reads the answer
    // rather than a reset. Timed-out and evicted clients sent nothing more worth waiting for.
    let worth_it = !matches!(verdict, Some(Verdict::HeadTimeout | Verdict::Busy));
    if worth_it && let Ok(_permit) = lingering.try_acquire() {
        linger(&stream).await;
    }
}

/// Writes `answer`, then shuts the sending side.
async fn answer_and_close(stream: &TcpStream, answer: &[u8]) {
    let write = async {
        let mut at = 0;
        while at < answer.len() {
            stream.writable().await?;
            match stream.try_write(&answer[at..]) {
                Ok(n) => at += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        Ok::<(), std::io::Error>(())
    };
    let _ = tokio::time::timeout(LINGER, write).await;
    let _ = rustix::net::shutdown(stream, rustix::net::Shutdown::Write);
}

/// Reads and drops what the client still sends, until it closes or for [`LINGER`].
async fn linger(stream: &TcpStream) {
    let drain = async {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            if stream.readable().await.is_err() {
                return;
            }
            match stream.try_read(&mut buf) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}
