//! Talking to the forge about one job: every call retried while the forge is unavailable,
//! nothing more said once the job is stopped, and the job log sent in order at acknowledged
//! offsets.
//!
//! [`Control`] is the job's stop rule: the first of a rejected report, a lost lease or the
//! agent's shutdown stops the job, raises its [`Cancel`] (its steps get SIGTERM, a grace period,
//! SIGKILL) and silences every later report. [`LogStream`] holds the log bytes not acknowledged
//! yet; a batch the forge did not take is sent again from the same offset, so a byte is never
//! lost or written twice.

use crate::link::{Link, LinkError};
use lanes_exec::Cancel;
use std::future::Future;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// The first wait after an unavailable answer; doubled up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// The most log bytes one append carries (and, in [`crate::job`], how many waiting bytes make
/// a flush): requests stay small for an HTTP forge, and a large restored log goes in pieces.
pub(crate) const BATCH_BYTES: usize = 64 * 1024;

/// Why a job was stopped without being reported to the end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stop {
    /// The forge rejected a report: the agent no longer holds the job.
    Rejected(String),
    /// The forge stayed unavailable until the lease must have expired; it will requeue the job.
    LeaseLost(String),
    /// The agent is shutting down; the job's lease will expire and the forge will requeue it.
    Shutdown,
}

#[derive(Clone, Debug, Default)]
struct State {
    stop: Option<Stop>,
    /// `started` was acknowledged: heartbeats may begin.
    started: bool,
    /// The job said all it had to say (or was stopped and its steps ended).
    done: bool,
}

/// The stop rule of one job, shared by its reporting, its heartbeats and its lane.
#[derive(Debug)]
pub(crate) struct Control {
    state: watch::Sender<State>,
    cancel: Cancel,
}

impl Control {
    pub(crate) fn new(cancel: Cancel) -> Control {
        Control {
            state: watch::Sender::new(State::default()),
            cancel,
        }
    }

    /// Stop the job (the first reason wins): cancel its steps, report nothing more.
    pub(crate) fn stop(&self, why: Stop) {
        let mut first = false;
        self.state.send_if_modified(|s| {
            first = s.stop.is_none();
            if first {
                s.stop = Some(why.clone());
            }
            first
        });
        if first {
            tracing::info!(reason = ?why, "job stopped");
            self.cancel.cancel();
        }
    }

    pub(crate) fn stopped(&self) -> Option<Stop> {
        self.state.borrow().stop.clone()
    }

    pub(crate) fn set_started(&self) {
        self.state.send_modify(|s| s.started = true);
    }

    pub(crate) fn set_done(&self) {
        self.state.send_modify(|s| s.done = true);
    }

    async fn wait(&self, until: impl FnMut(&State) -> bool) {
        let mut rx = self.state.subscribe();
        // The sender lives as long as `self`, so this only returns when `until` holds.
        let _ = rx.wait_for(until).await;
    }

    pub(crate) async fn until_stopped(&self) {
        self.wait(|s| s.stop.is_some()).await;
    }

    pub(crate) async fn until_started(&self) {
        self.wait(|s| s.started).await;
    }

    pub(crate) async fn until_done(&self) {
        self.wait(|s| s.done).await;
    }
}

/// Waits between attempts: 100 ms, doubling, at most 2 s.
#[derive(Debug)]
pub(crate) struct Backoff(Duration);

impl Backoff {
    pub(crate) fn new() -> Backoff {
        Backoff(FIRST_BACKOFF)
    }

    /// The next wait.
    pub(crate) fn next_wait(&mut self) -> Duration {
        let wait = self.0;
        self.0 = (self.0 * 2).min(MAX_BACKOFF);
        wait
    }
}

/// Reports about one job, under its [`Control`].
#[derive(Debug)]
pub(crate) struct Reporter<'a, L> {
    pub(crate) link: &'a L,
    pub(crate) job: u64,
    pub(crate) token: u64,
    pub(crate) control: &'a Control,
}

impl<L: Link> Reporter<'_, L> {
    /// One report, sent until the forge takes it: an unavailable forge is asked again after a
    /// backoff (until `give_up`, if given, when the lease must be gone), a rejection stops the
    /// job. `None` when the job is (or gets) stopped.
    pub(crate) async fn call<T, F, Fut>(
        &self,
        what: &str,
        give_up: Option<Instant>,
        mut send: F,
    ) -> Option<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, LinkError>>,
    {
        let mut backoff = Backoff::new();
        loop {
            if self.control.stopped().is_some() {
                return None;
            }
            let answer = tokio::select! {
                answer = send() => answer,
                () = self.control.until_stopped() => return None,
            };
            match answer {
                Ok(value) => return Some(value),
                Err(LinkError::Rejected(why)) => {
                    self.control.stop(Stop::Rejected(why));
                    return None;
                }
                Err(LinkError::Unavailable(why)) => {
                    let wait = backoff.next_wait();
                    if give_up.is_some_and(|at| Instant::now() + wait >= at) {
                        self.control
                            .stop(Stop::LeaseLost(format!("{what} kept failing: {why}")));
                        return None;
                    }
                    tracing::debug!(what, %why, "the forge is unavailable; trying again");
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = self.control.until_stopped() => return None,
                    }
                }
            }
        }
    }
}

/// Log bytes on their way to the forge.
#[derive(Debug, Default)]
pub(crate) struct LogStream {
    /// Bytes after the acknowledged length.
    pending: Vec<u8>,
    /// The length of the log the forge acknowledged.
    acked: u64,
}

impl LogStream {
    /// A stream appending after the `acknowledged` bytes already in the job's log.
    pub(crate) fn starting_at(acknowledged: u64) -> LogStream {
        LogStream {
            pending: Vec::new(),
            acked: acknowledged,
        }
    }

    pub(crate) fn push(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
    }

    pub(crate) fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Send every pending byte at the acknowledged offset, [`BATCH_BYTES`] at most per append.
    /// A batch that was not taken stays pending and is sent again from the same offset.
    pub(crate) async fn flush<L: Link>(&mut self, reporter: &Reporter<'_, L>) {
        while !self.pending.is_empty() {
            let offset = self.acked;
            let batch = &self.pending[..self.pending.len().min(BATCH_BYTES)];
            let Some(acked) = reporter
                .call("appending to the log", None, || {
                    reporter
                        .link
                        .append_log(reporter.job, reporter.token, offset, batch.to_vec())
                })
                .await
            else {
                return;
            };
            // The forge may have taken less than the batch (or, after a lost answer, said it
            // had it already): what it acknowledged leaves, the rest goes again.
            let taken = usize::try_from(acked.saturating_sub(offset))
                .map_or(batch.len(), |n| n.min(batch.len()));
            if taken == 0 {
                tracing::warn!(offset, acked, "the forge took none of a log batch");
                return;
            }
            self.pending.drain(..taken);
            self.acked = offset + taken as u64;
        }
    }
}
