//! Each request between hyper and the router: the in-flight limit, the body's size limit and
//! deadline, and the bookkeeping that tells the connection when a request starts and ends.

use super::conn::Conn;
use super::{HttpConfig, error_response};
use crate::metrics::HttpMetrics;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};
use tokio::sync::Semaphore;
use tower::ServiceExt;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Requests that wait by design (an agent's long poll for a job) hold a connection, not one of
/// the `max-requests` slots: a fleet's idle agents would otherwise fill them.
const WAITING_ROUTES: &[&str] = &["/api/v1/agent/lease"];

/// What ended a request's body early.
const BODY_OK: u8 = 0;
const BODY_TOO_LARGE: u8 = 1;
const BODY_TIMED_OUT: u8 = 2;

/// What every connection's service shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) router: Router,
    pub(crate) limits: HttpConfig,
    pub(crate) metrics: Arc<HttpMetrics>,
    pub(crate) requests: Arc<Semaphore>,
}

/// The service of one connection.
#[derive(Clone, Debug)]
pub(crate) struct Service {
    pub(crate) shared: Arc<Shared>,
    pub(crate) conn: Arc<Conn>,
}

impl hyper::service::Service<Request<Incoming>> for Service {
    type Response = Response<Ending>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Ending>, Infallible>> + Send>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let conn = Arc::clone(&self.conn);
        let shared = Arc::clone(&self.shared);
        conn.request_started();
        Box::pin(async move {
            let response = handle(&shared, &conn, request).await;
            let mut response = response;
            // A body left unread would be taken for the next request's head: close instead.
            if !conn.body_read() {
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            conn.response_ready();
            Ok(response.map(|body| Ending {
                inner: body,
                conn: Some(conn),
            }))
        })
    }
}

async fn handle(shared: &Shared, conn: &Arc<Conn>, request: Request<Incoming>) -> Response<Body> {
    let limits = &shared.limits;
    let (parts, body) = request.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let outcome = Arc::new(AtomicU8::new(BODY_OK));
    let body = Limited::new(body, Arc::clone(conn), limits, Arc::clone(&outcome));
    if declared.is_some_and(|n| n > limits.max_body_bytes) {
        return too_large(limits);
    }
    let permit = if WAITING_ROUTES.contains(&parts.uri.path()) {
        None
    } else {
        match Arc::clone(&shared.requests).try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) => {
                shared.metrics.request_refused();
                let mut busy = error_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "busy",
                    format!(
                        "the server is at its limit of {} requests in flight; retry in a second",
                        limits.max_requests
                    ),
                );
                busy.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                return busy;
            }
        }
    };
    shared.metrics.request_started();
    let request = Request::from_parts(parts, Body::new(body));
    let response = match shared.router.clone().oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    shared.metrics.request_ended();
    drop(permit);
    match outcome.load(Ordering::Relaxed) {
        BODY_TOO_LARGE => too_large(limits),
        BODY_TIMED_OUT => {
            shared.metrics.body_timed_out();
            error_response(
                StatusCode::REQUEST_TIMEOUT,
                "timeout",
                format!(
                    "the request's body did not arrive within {}s (body-timeout)",
                    limits.body_timeout.as_secs()
                ),
            )
        }
        _ => response,
    }
}

fn too_large(limits: &HttpConfig) -> Response<Body> {
    error_response(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too-large",
        format!(
            "the request's body is larger than {} bytes (max-body-bytes)",
            limits.max_body_bytes
        ),
    )
}

/// A request's body: at most `max-body-bytes`, in full within `body-timeout` of the request's
/// start; tells the connection when it was read to its end.
struct Limited {
    inner: Incoming,
    conn: Arc<Conn>,
    read: u64,
    max: u64,
    deadline: Pin<Box<tokio::time::Sleep>>,
    outcome: Arc<AtomicU8>,
    ended: bool,
}

impl Limited {
    fn new(
        inner: Incoming,
        conn: Arc<Conn>,
        limits: &HttpConfig,
        outcome: Arc<AtomicU8>,
    ) -> Limited {
        let ended = http_body::Body::is_end_stream(&inner);
        if ended {
            conn.body_ended();
        }
        Limited {
            inner,
            conn,
            read: 0,
            max: limits.max_body_bytes,
            deadline: Box::pin(tokio::time::sleep(limits.body_timeout)),
            outcome,
            ended,
        }
    }

    fn end(&mut self) {
        if !self.ended {
            self.ended = true;
            self.conn.body_ended();
        }
    }

    fn refuse(&mut self, outcome: u8, why: &str) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.outcome.store(outcome, Ordering::Relaxed);
        Poll::Ready(Some(Err(why.into())))
    }
}

impl http_body::Body for Limited {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        if this.outcome.load(Ordering::Relaxed) != BODY_OK {
            return Poll::Ready(Some(Err("the body was refused".into())));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.read += data.len() as u64;
                    if this.read > this.max {
                        return this.refuse(BODY_TOO_LARGE, "the body is too large");
                    }
                }
                if http_body::Body::is_end_stream(&this.inner) {
                    this.end();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => {
                this.end();
                Poll::Ready(None)
            }
            Poll::Pending => {
                if this.deadline.as_mut().poll(cx).is_ready() {
                    return this.refuse(BODY_TIMED_OUT, "the body did not arrive in time");
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended || http_body::Body::is_end_stream(&self.inner)
    }

    fn size_hint(&self) -> SizeHint {
        http_body::Body::size_hint(&self.inner)
    }
}

/// A response's body, which tells the connection when the response ended.
pub(crate) struct Ending {
    inner: Body,
    conn: Option<Arc<Conn>>,
}

impl std::fmt::Debug for Ending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ending").finish_non_exhaustive()
    }
}

impl Drop for Ending {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            conn.response_ended();
        }
    }
}

impl http_body::Body for Ending {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
