//! The superseding rule: which open jobs of a run a newer head on the same branch cancels.
//!
//! One rule for the two places the forge applies it: when the newer head becomes a run, and when
//! the forge opens after a crash that came between marking a run superseded and cancelling its
//! jobs. It only decides; the server reads the catalog and cancels through the scheduler.

use crate::catalog::Catalog;
use crate::job::JobState;

/// An open job of a superseded run, as the rule sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenJob<'a> {
    /// Its lane.
    pub lane: &'a str,
    /// Queued, leased or running.
    pub state: JobState,
    /// It ran before: an agent held it once (it went back to the queue after a lost agent, a
    /// user's requeue or a forge restart) or wrote to its log.
    pub ran_before: bool,
}

/// What the superseding head's catalog says, as far as the forge could read it.
#[derive(Clone, Copy, Debug)]
pub enum SupersedingCatalog<'a> {
    /// The catalog at the newer head.
    Read(&'a Catalog),
    /// It could not be read, or does not validate there (an `error` run): no lane's setting is
    /// known.
    Unknown,
}

/// Why the rule cancels or keeps a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Superseded {
    /// Cancelled with reason `superseded`.
    Cancel,
    /// Left to run to the end: its lane sets `cancel-superseded = false` and it has started.
    KeepStarted,
    /// Left to run: it has started and the catalog at the newer head could not tell whether its
    /// lane may be cancelled. A guess would cancel a half-done job for good.
    KeepUnknown,
}

/// The rule. A job that never started (queued, and never held) is always cancelled: nothing of
/// it is half-done. A started job (leased, running, or queued again after it ran) is cancelled
/// unless the catalog at the newer head sets `cancel-superseded = false` for its lane, or that
/// catalog cannot be read. A lane the newer catalog no longer has is cancelled (the default).
pub fn on_superseded(job: OpenJob<'_>, newer: SupersedingCatalog<'_>) -> Superseded {
    let started = job.state.is_held() || job.ran_before;
    if job.state.is_terminal() || !started {
        return Superseded::Cancel;
    }
    match newer {
        SupersedingCatalog::Unknown => Superseded::KeepUnknown,
        SupersedingCatalog::Read(catalog) => {
            let keep = catalog
                .lanes
                .iter()
                .any(|l| l.name == job.lane && !l.cancel_superseded);
            if keep {
                Superseded::KeepStarted
            } else {
                Superseded::Cancel
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Catalog {
        let text = r#"version = 1
[lane.deploy]
cancel-superseded = false
step = [{ name = "d", run = "true" }]
[lane.test]
step = [{ name = "t", run = "true" }]
"#;
        let mut none = |path: &str| Err(format!("no file `{path}` in this test"));
        crate::parse(&crate::Source::new("lanes.toml", text), &mut none).expect("a valid catalog")
    }

    fn job(lane: &str, state: JobState, ran_before: bool) -> OpenJob<'_> {
        OpenJob {
            lane,
            state,
            ran_before,
        }
    }

    #[test]
    fn queued_jobs_that_never_ran_are_always_cancelled() {
        let c = catalog();
        for newer in [SupersedingCatalog::Read(&c), SupersedingCatalog::Unknown] {
            for lane in ["deploy", "test"] {
                assert_eq!(
                    on_superseded(job(lane, JobState::Queued, false), newer),
                    Superseded::Cancel
                );
            }
        }
    }

    #[test]
    fn started_jobs_run_on_only_when_their_lane_says_so_or_nobody_can_tell() {
        let c = catalog();
        let read = SupersedingCatalog::Read(&c);
        for (state, ran_before) in [
            (JobState::Leased, false),
            (JobState::Running, false),
            (JobState::Queued, true),
        ] {
            assert_eq!(
                on_superseded(job("deploy", state, ran_before), read),
                Superseded::KeepStarted
            );
            assert_eq!(
                on_superseded(job("test", state, ran_before), read),
                Superseded::Cancel
            );
            assert_eq!(
                on_superseded(job("gone", state, ran_before), read),
                Superseded::Cancel,
                "a lane the newer catalog dropped has the default"
            );
            assert_eq!(
                on_superseded(job("test", state, ran_before), SupersedingCatalog::Unknown),
                Superseded::KeepUnknown
            );
        }
    }
}
