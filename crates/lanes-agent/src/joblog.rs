//! The job log: one text log per job, made from the lane's events, and the step reports that go
//! with it.
//!
//! `JobLog` runs on the lane's thread (inside the executor's event callback, so reading a
//! step log file never blocks the async side) and turns each event into `Piece`s, in order:
//! bytes to append to the log, and step reports to send once the bytes before them are sent.
//!
//! The format, line by line (every line ends with `\n`):
//!
//! ```text
//! == lane build at 1a2b3c4d5e6f: 3 steps
//! -- lane directory written: 12 files, 0.1 MB in 4 ms
//! == step 1/3 compile
//! [   0.004s] compiling lanes
//! == step 1/3 compile: passed in 1.2s
//! == step 2/3 test
//! [   0.010s] 12 passed
//! == step 2/3 test: cached, restored from the cache (key 3f2a9b0c1d2e), saved 4.1s
//! == step 3/3 deploy
//! [   0.020s] error: no credentials
//! == step 3/3 deploy: failed with exit code 1 after 0.1s
//! == lane build: failed in 1.4s (2 run, 1 cached)
//! ```
//!
//! - `== lane NAME at COMMIT: N steps` opens the log; `== lane NAME: STATUS in TIME (R run, C
//!   cached)` closes it, followed by `: REASON` when the lane could not prepare its directory.
//! - `== step I/N NAME` opens a step that runs or is restored; then come its output lines as the
//!   step log has them (each stamped with the time since the step started, `[   0.004s] `),
//!   streamed while it runs. For a cache hit they are the recorded run's lines.
//! - `== step I/N NAME: OUTCOME` closes it: `passed in T`, `failed with exit code C after T`,
//!   `failed after T`, `timed out after T`, `cancelled after T`, or `cached, restored from the
//!   cache (key K), saved T`. A step that never started (after a failure) has only this line,
//!   with `skipped` (or `cancelled`).
//! - `-- TEXT` is a note from lanes about the lane: the lane directory was written, waiting for a
//!   cache mount, a cache warning.
//! - `lanes: REASON` is why a step or the job could not run at all: a lane that cannot prepare
//!   its directory (from the step's log), or, alone in the log, a job that ended `error` (the
//!   commit, the catalog or the lane could not be read).
//!
//! Step output lines always start with `[`, so the lines lanes adds cannot be mistaken for them.

use crate::link::StepRecord;
use lanes_core::Lane;
use lanes_core::job::JobState;
use lanes_exec::{CacheUse, Event, LaneResult, Status, StepResult};
use std::io::Write as _;
use std::time::Duration;

/// What the lane's thread hands the reporting side, in log order.
#[derive(Debug)]
pub(crate) enum Piece {
    /// Bytes for the job log.
    Log(Vec<u8>),
    /// A step started or ended: send it once the log before it is sent.
    Step(StepRecord),
    /// The lane directory was written in this long.
    Materialized(Duration),
    /// The lane ended; nothing follows.
    Done(LaneResult),
}

#[derive(Clone, Debug, Default)]
struct StepState {
    /// Its `== step` line was written.
    headed: bool,
    /// Its closing line was written.
    finished: bool,
    /// Output lines streamed while it ran.
    streamed: usize,
    /// The first of them, to tell whether the step log was rewritten after it.
    first: Option<String>,
}

/// The job log of one lane, built event by event.
#[derive(Debug)]
pub(crate) struct JobLog {
    lane: String,
    names: Vec<String>,
    /// Whether each step may use the cache (its `cache` setting).
    cached: Vec<bool>,
    steps: Vec<StepState>,
}

impl JobLog {
    /// The log of `lane`.
    pub(crate) fn new(lane: &Lane) -> JobLog {
        JobLog {
            lane: lane.name.clone(),
            names: lane.steps.iter().map(|s| s.name.clone()).collect(),
            cached: lane.steps.iter().map(|s| s.cache).collect(),
            steps: vec![StepState::default(); lane.steps.len()],
        }
    }

    /// The opening line.
    pub(crate) fn opening(&self, head: &str) -> Piece {
        let n = self.names.len();
        let short = head.get(..12).unwrap_or(head);
        Piece::Log(
            format!(
                "== lane {} at {short}: {n} step{}\n",
                self.lane,
                if n == 1 { "" } else { "s" }
            )
            .into_bytes(),
        )
    }

    fn step_name(&self, index: usize) -> String {
        format!(
            "step {}/{} {}",
            index + 1,
            self.names.len(),
            self.names[index]
        )
    }

    fn header(&mut self, index: usize, out: &mut Vec<u8>) {
        if !self.steps[index].headed {
            self.steps[index].headed = true;
            let _ = writeln!(out, "== {}", self.step_name(index));
        }
    }

    /// The pieces one event makes.
    pub(crate) fn event(&mut self, event: Event) -> Vec<Piece> {
        match event {
            Event::StepStarted { index, key } => {
                if self.steps[index].finished {
                    // Run again after the outputs of an earlier hit could not be restored.
                    self.steps[index] = StepState::default();
                }
                let mut out = Vec::new();
                self.header(index, &mut out);
                let report = StepRecord {
                    index: report_index(index),
                    name: self.names[index].clone(),
                    status: JobState::Running,
                    cache: if self.cached[index] {
                        CacheUse::Miss
                    } else {
                        CacheUse::Disabled
                    },
                    // Chained onto what the steps before it left: known once it starts.
                    key: Some(key),
                    duration_ms: None,
                    saved_ms: None,
                    exit_code: None,
                    miss: None,
                };
                vec![Piece::Log(out), Piece::Step(report)]
            }
            Event::Output { index, line } => {
                let state = &mut self.steps[index];
                state.streamed += 1;
                let mut bytes = line.into_bytes();
                if state.first.is_none() {
                    state.first = Some(String::from_utf8_lossy(&bytes).into_owned());
                }
                bytes.push(b'\n');
                vec![Piece::Log(bytes)]
            }
            Event::StepFinished { index, result } => {
                let mut out = Vec::new();
                self.header(index, &mut out);
                let log = std::fs::read(&result.log).unwrap_or_default();
                if result.cache == CacheUse::Hit {
                    push_lines(&mut out, &log);
                } else {
                    let state = &self.steps[index];
                    push_lines(
                        &mut out,
                        unstreamed(&log, state.streamed, state.first.as_deref()),
                    );
                }
                let _ = writeln!(out, "== {}: {}", self.step_name(index), outcome(&result));
                self.steps[index].finished = true;
                vec![Piece::Log(out), Piece::Step(step_report(index, &result))]
            }
            Event::Materialized {
                files,
                bytes,
                duration,
            } => {
                let line = format!(
                    "-- lane directory written: {files} {}, {:.1} MB in {} ms\n",
                    if files == 1 { "file" } else { "files" },
                    bytes as f64 / 1e6,
                    duration.as_millis()
                );
                vec![Piece::Log(line.into_bytes()), Piece::Materialized(duration)]
            }
            Event::WaitingForMount { name } => vec![Piece::Log(
                format!("-- waiting for the cache mount `{name}`, held by another lane\n")
                    .into_bytes(),
            )],
            Event::Warning(text) => {
                vec![Piece::Log(format!("-- warning: {text}\n").into_bytes())]
            }
        }
    }

    /// The pieces that end the lane: the steps that never started, the closing line, and
    /// [`Piece::Done`].
    pub(crate) fn end(&mut self, result: LaneResult) -> Vec<Piece> {
        let mut pieces = Vec::new();
        let mut out = Vec::new();
        for (index, step) in result.steps.iter().enumerate() {
            if index < self.steps.len() && !self.steps[index].finished {
                self.steps[index].finished = true;
                let _ = writeln!(out, "== {}: {}", self.step_name(index), outcome(step));
                pieces.push(Piece::Log(std::mem::take(&mut out)));
                pieces.push(Piece::Step(step_report(index, step)));
            }
        }
        let _ = writeln!(out, "== lane {}", lane_summary(&self.lane, &result));
        pieces.push(Piece::Log(out));
        pieces.push(Piece::Done(result));
        pieces
    }
}

use lanes_engine::summary::seconds;
pub use lanes_engine::summary::{lane_summary, ran_and_cached};

/// Append `bytes` as whole lines (a missing last newline added).
fn push_lines(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(bytes);
    if !bytes.is_empty() && !bytes.ends_with(b"\n") {
        out.push(b'\n');
    }
}

/// The part of a step log that was not streamed: the lines after the `streamed` ones, or the
/// whole log when lanes rewrote it after the step started (a step that could not be started
/// has only `lanes: REASON` in its log).
fn unstreamed<'l>(log: &'l [u8], streamed: usize, first: Option<&str>) -> &'l [u8] {
    if streamed == 0 {
        return log;
    }
    let first_line = log.split(|&b| b == b'\n').next().unwrap_or_default();
    if first != Some(String::from_utf8_lossy(first_line).as_ref()) {
        return log;
    }
    let mut rest = log;
    for _ in 0..streamed {
        match rest.iter().position(|&b| b == b'\n') {
            Some(end) => rest = &rest[end + 1..],
            None => return &[],
        }
    }
    rest
}

/// What the closing line of a step says about it.
fn outcome(step: &StepResult) -> String {
    let took = seconds(step.duration_ms);
    match step.status {
        Status::Cached => format!(
            "cached, restored from the cache (key {}), saved {}",
            step.key.get(..12).unwrap_or(&step.key),
            seconds(step.saved_ms)
        ),
        Status::Passed => format!("passed in {took}"),
        Status::Failed => match step.exit_code {
            Some(code) => format!("failed with exit code {code} after {took}"),
            None => format!("failed after {took}"),
        },
        Status::TimedOut => format!("timed out after {took}"),
        Status::OomKilled => {
            format!("oom-killed: went over its memory limit and was killed after {took}")
        }
        Status::Cancelled if never_started(step) => "cancelled".to_owned(),
        Status::Cancelled => format!("cancelled after {took}"),
        Status::Skipped => "skipped".to_owned(),
        Status::Error => "error".to_owned(),
    }
}

/// A step skipped, or cancelled before it started.
fn never_started(step: &StepResult) -> bool {
    match step.status {
        Status::Skipped => true,
        Status::Cancelled => step.duration_ms == 0 && step.exit_code.is_none(),
        _ => false,
    }
}

fn report_index(index: usize) -> u32 {
    u32::try_from(index).expect("a lane has far fewer than 2^32 steps")
}

/// A finished step, as the forge records it.
pub(crate) fn step_report(index: usize, step: &StepResult) -> StepRecord {
    let status = match step.status {
        Status::Passed | Status::Cached => JobState::Passed,
        Status::Failed => JobState::Failed,
        Status::OomKilled => JobState::OomKilled,
        Status::TimedOut => JobState::TimedOut,
        Status::Cancelled => JobState::Cancelled,
        Status::Skipped => JobState::Skipped,
        Status::Error => JobState::Error,
    };
    let cache = step.cache;
    StepRecord {
        index: report_index(index),
        name: step.name.clone(),
        status,
        cache,
        key: Some(step.key.clone()),
        duration_ms: (!never_started(step)).then_some(step.duration_ms),
        saved_ms: (step.cache == CacheUse::Hit).then_some(step.saved_ms),
        exit_code: step.exit_code,
        miss: step.miss.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unstreamed_is_what_follows_the_streamed_lines() {
        let log = b"[ 0.1s] a\n[ 0.2s] b\n[ 0.3s] c\n";
        assert_eq!(unstreamed(log, 2, Some("[ 0.1s] a")), b"[ 0.3s] c\n");
        assert_eq!(unstreamed(log, 3, Some("[ 0.1s] a")), b"");
    }

    #[test]
    fn a_log_rewritten_after_streaming_is_sent_whole() {
        let log = b"lanes: failed to wait for the step\n";
        assert_eq!(unstreamed(log, 2, Some("[ 0.1s] a")), &log[..]);
        assert_eq!(unstreamed(log, 0, None), &log[..]);
    }

    #[test]
    fn a_missing_last_newline_is_added() {
        let mut out = Vec::new();
        push_lines(&mut out, b"lanes: no space left");
        assert_eq!(out, b"lanes: no space left\n");
    }
}
