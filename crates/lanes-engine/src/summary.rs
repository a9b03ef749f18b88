//! How a lane is summed up in one line, by `lanes run` and in a forge job's log.

use lanes_exec::lane::millis;
use lanes_exec::{LaneResult, Status, StepResult};

/// `NAME: STATUS in TIME (R run, C cached)`, then `: REASON` when the lane could not prepare
/// its directory: how `lanes run` and the job log sum a lane up.
pub fn lane_summary(name: &str, result: &LaneResult) -> String {
    let (ran, cached) = ran_and_cached(&result.steps);
    let mut line = format!(
        "{name}: {} in {} ({ran} run, {cached} cached)",
        result.status.as_str(),
        seconds(millis(result.duration))
    );
    if let Some(error) = &result.error {
        line.push_str(": ");
        line.push_str(error);
    }
    line
}

/// How many of `steps` ran (or were stopped while running) and how many were restored.
pub fn ran_and_cached(steps: &[StepResult]) -> (usize, usize) {
    let ran = steps
        .iter()
        .filter(|s| !matches!(s.status, Status::Cached | Status::Skipped))
        .count();
    let cached = steps.iter().filter(|s| s.status == Status::Cached).count();
    (ran, cached)
}

/// `1.2s`.
pub fn seconds(ms: u64) -> String {
    format!("{:.1}s", ms as f64 / 1000.0)
}
