//! One connection's state as the server sees it from the outside of hyper: whether it waits for
//! a request, is receiving a head, or carries a request; the deadline that applies; and why the
//! server ends it, when it does. [`Watched`] is the socket hyper reads and writes through, which
//! keeps that state.

use super::head::{HeadScan, Scanned, automatic_refusal};
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Header lines a head may have after its request line (hyper's own default).
pub(crate) const MAX_HEADERS: usize = 100;

/// Why the server ends a connection with an answer of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The head went over `max-header-bytes`.
    HeadTooLarge,
    /// The head has more than [`MAX_HEADERS`] header lines.
    TooManyHeaders,
    /// The head did not arrive in full within `header-timeout`.
    HeadTimeout,
    /// Evicted mid-head to make room for a new connection.
    Busy,
    /// hyper refused the head with this status (a head it could not parse).
    Refused(u16),
}

/// What a deadline that passed ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Expired {
    /// A head that did not arrive in time.
    Head,
    /// A connection left idle.
    Idle,
}

#[derive(Debug)]
enum Phase {
    /// Waiting for the first byte of the next request.
    Idle,
    /// Receiving a head since this instant.
    Head(Instant),
    /// The head is in; hyper parses it.
    HeadDone,
    /// A request's body is being received (or not read at all).
    Request,
}

#[derive(Debug)]
struct State {
    phase: Phase,
    head: HeadScan,
    /// Since when nothing has happened on the connection (its start, or its last response's end).
    idle_since: Instant,
    /// Requests whose response has not ended.
    responding: u32,
    /// Responses handed to hyper whose head it has not written yet.
    heads_to_write: u32,
    /// Why the server ends the connection, once it does.
    verdict: Option<Verdict>,
    /// Chosen to make room for a new connection.
    evicted: bool,
}

/// One connection's state, shared by its task, its socket and its requests.
#[derive(Debug)]
pub(crate) struct Conn {
    state: Mutex<State>,
    /// Raised when the connection's task must look again: a deadline moved, a verdict, eviction.
    pub(crate) wake: Notify,
}

impl Conn {
    pub(crate) fn new() -> Conn {
        Conn {
            state: Mutex::new(State {
                phase: Phase::Idle,
                head: HeadScan::default(),
                idle_since: Instant::now(),
                responding: 0,
                heads_to_write: 0,
                verdict: None,
                evicted: false,
            }),
            wake: Notify::new(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .expect("a connection's state lock is never poisoned")
    }

    /// Bytes read from the client: `false` when they must not reach hyper (the server answers
    /// the connection itself).
    fn read(&self, chunk: &[u8], max_head: usize) -> bool {
        let mut state = self.state();
        if state.verdict.is_some() {
            return false;
        }
        if !matches!(state.phase, Phase::Idle | Phase::Head(_)) || chunk.is_empty() {
            return true;
        }
        if matches!(state.phase, Phase::Idle) {
            state.phase = Phase::Head(Instant::now());
            self.wake.notify_one();
        }
        let verdict = match state.head.feed(chunk, max_head, MAX_HEADERS) {
            Scanned::Partial => return true,
            Scanned::Complete => {
                state.phase = Phase::HeadDone;
                state.head = HeadScan::default();
                return true;
            }
            Scanned::TooLarge => Verdict::HeadTooLarge,
            Scanned::TooManyHeaders => Verdict::TooManyHeaders,
        };
        state.verdict = Some(verdict);
        self.wake.notify_one();
        false
    }

    /// Bytes hyper writes: `true` when they are hyper's bare refusal of a head, which the server
    /// replaces with its JSON answer.
    fn swallow(&self, data: &[u8]) -> bool {
        let mut state = self.state();
        if data.starts_with(b"HTTP/1.") && state.heads_to_write > 0 {
            state.heads_to_write -= 1;
            return false;
        }
        let mid_head = matches!(state.phase, Phase::Head(_) | Phase::HeadDone);
        match automatic_refusal(data) {
            Some(status) if mid_head && state.verdict.is_none() => {
                state.verdict = Some(Verdict::Refused(status));
                true
            }
            _ => false,
        }
    }

    /// hyper handed a request to the service.
    pub(crate) fn request_started(&self) {
        let mut state = self.state();
        state.phase = Phase::Request;
        state.responding += 1;
    }

    /// The request's body was read to its end: what comes next is the next request.
    pub(crate) fn body_ended(&self) {
        let mut state = self.state();
        if matches!(state.phase, Phase::Request) {
            state.phase = Phase::Idle;
        }
    }

    /// Whether the current request's body was read to its end.
    pub(crate) fn body_read(&self) -> bool {
        !matches!(self.state().phase, Phase::Request)
    }

    /// The service gave hyper a response to write.
    pub(crate) fn response_ready(&self) {
        self.state().heads_to_write += 1;
    }

    /// A response's body ended (or was dropped).
    pub(crate) fn response_ended(&self) {
        let mut state = self.state();
        state.responding = state.responding.saturating_sub(1);
        if state.responding == 0 {
            state.idle_since = Instant::now();
        }
        drop(state);
        self.wake.notify_one();
    }

    /// The next deadline that applies, if any.
    pub(crate) fn deadline(
        &self,
        head: std::time::Duration,
        idle: std::time::Duration,
    ) -> Option<Instant> {
        let state = self.state();
        if state.verdict.is_some() {
            return None;
        }
        match state.phase {
            Phase::Head(since) => Some(since + head),
            Phase::Idle if state.responding == 0 => Some(state.idle_since + idle),
            _ => None,
        }
    }

    /// What the deadline that passed at `now` ends, if it still applies.
    pub(crate) fn expire(
        &self,
        now: Instant,
        head: std::time::Duration,
        idle: std::time::Duration,
    ) -> Option<Expired> {
        let mut state = self.state();
        if state.verdict.is_some() {
            return None;
        }
        match state.phase {
            Phase::Head(since) if since + head <= now => {
                state.verdict = Some(Verdict::HeadTimeout);
                Some(Expired::Head)
            }
            Phase::Idle if state.responding == 0 && state.idle_since + idle <= now => {
                Some(Expired::Idle)
            }
            _ => None,
        }
    }

    /// Since when the connection could be closed without cutting a request short: idle, or
    /// receiving a head; `None` while it carries a request or is already being closed.
    pub(crate) fn evictable(&self) -> Option<Instant> {
        let state = self.state();
        if state.evicted || state.verdict.is_some() {
            return None;
        }
        match state.phase {
            Phase::Idle if state.responding == 0 => Some(state.idle_since),
            Phase::Head(since) => Some(since),
            _ => None,
        }
    }

    /// Closes the connection to make room; a head it was receiving is answered `503 busy`.
    pub(crate) fn evict(&self) {
        let mut state = self.state();
        state.evicted = true;
        if matches!(state.phase, Phase::Head(_)) && state.verdict.is_none() {
            state.verdict = Some(Verdict::Busy);
        }
        drop(state);
        self.wake.notify_one();
    }

    pub(crate) fn is_evicted(&self) -> bool {
        self.state().evicted
    }

    pub(crate) fn has_verdict(&self) -> bool {
        self.state().verdict.is_some()
    }

    /// The server's own answer to give, once hyper is done with the connection.
    pub(crate) fn take_verdict(&self) -> Option<Verdict> {
        self.state().verdict.take()
    }
}

/// The socket as hyper sees it: every byte read goes through [`Conn::read`], every write
/// through [`Conn::swallow`]. The task keeps its own handle to answer after hyper is done.
#[derive(Debug)]
pub(crate) struct Watched {
    pub(crate) stream: Arc<TcpStream>,
    pub(crate) conn: Arc<Conn>,
    pub(crate) max_head: usize,
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.conn.has_verdict() {
            // The server answers this connection itself: hyper sees it end.
            return Poll::Ready(Ok(()));
        }
        loop {
            ready!(this.stream.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            match this.stream.try_read(unfilled) {
                Ok(n) => {
                    if this.conn.read(&unfilled[..n], this.max_head) {
                        buf.advance(n);
                    }
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.conn.swallow(data) {
            return Poll::Ready(Ok(data.len()));
        }
        loop {
            ready!(this.stream.poll_write_ready(cx))?;
            match this.stream.try_write(data) {
                Ok(n) => return Poll::Ready(Ok(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // With a verdict the task still writes its answer, then shuts the socket down itself.
        if !self.conn.has_verdict() {
            let _ = rustix::net::shutdown(&*self.stream, rustix::net::Shutdown::Write);
        }
        Poll::Ready(Ok(()))
    }
}
