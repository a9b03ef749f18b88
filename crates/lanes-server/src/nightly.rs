//! Nightly runs: which cron slot of a nightly lane is due, and the run that claims it.
//!
//! Each nightly lane runs on the default branch's head once per slot of its `schedule` (UTC).
//! The slot due at `now` is the **latest** slot in `(max(claimed, first_seen), now]`: after
//! downtime that spanned several slots the lane runs once, for the latest of them, and a lane the
//! forge has only just learned of does not run for a slot from before that. The claim is written
//! with the run in one transaction (`NewRun::nightly_slots`), and the store refuses a slot
//! claimed before, so a slot runs once even when two processes race or the server restarts.
//!
//! [`Schedule`] (with [`due_slot`] and [`next_after`]) and [`nightly_run`] are pure: no clock, no
//! I/O. [`create_nightly_run`] reads the default head, its catalog and the claimed slots around
//! them and creates the run. The timer that calls it belongs to the server. docs/forge.md
//! describes the rule.

use crate::trigger::{DEFAULT_RETRIES, TriggerError, group_limits, read_catalog};
use croner::Cron;
use croner::errors::CronError;
use jiff::Timestamp;
use jiff::tz::TimeZone;
use lanes_core::job::{JobState, Priority};
use lanes_core::{Catalog, LaneClass, Reason};
use lanes_git::Repo;
use lanes_store::{
    NewJob, NewRun, NightlySlot, RepoRecord, RunDetail, RunStatus, RunTrigger, Store, StoreError,
};
use std::collections::BTreeMap;

/// A nightly schedule could not be evaluated.
#[derive(Debug, thiserror::Error)]
pub enum NightlyError {
    /// The expression is not a cron expression. The catalog validates schedules, so this means
    /// a caller passed one the catalog did not.
    #[error("invalid cron schedule `{schedule}`: {source}")]
    Invalid {
        /// The expression.
        schedule: String,
        /// What croner said.
        source: CronError,
    },
    /// The expression parses but its slots cannot be found, such as `0 0 30 2 *` (February 30th
    /// never comes): croner gives up after a year of search.
    #[error("failed to find a slot of the cron schedule `{schedule}`: {source}")]
    NoSlot {
        /// The expression.
        schedule: String,
        /// What croner said.
        source: CronError,
    },
}

/// A parsed cron `schedule`, evaluated in UTC.
#[derive(Clone, Debug)]
pub struct Schedule {
    text: String,
    cron: Cron,
}

impl Schedule {
    /// Parses `text` as the catalog does (croner's default parser: five fields, or six and seven
    /// with seconds and years, or a nickname such as `@daily`).
    pub fn parse(text: &str) -> Result<Schedule, NightlyError> {
        let cron = text
            .parse::<Cron>()
            .map_err(|source| NightlyError::Invalid {
                schedule: text.to_owned(),
                source,
            })?;
        Ok(Schedule {
            text: text.to_owned(),
            cron,
        })
    }

    /// The expression as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The slot to run at `now`: the latest slot in `(max(claimed, first_seen), now]`, or `None`.
    ///
    /// `claimed` is the newest slot already claimed for the lane ([`Store::last_nightly_slot`]);
    /// `first_seen` is when the forge first knew the lane, so a forge that was just set up does
    /// not run a slot from before it.
    pub fn due(
        &self,
        claimed: Option<Timestamp>,
        first_seen: Timestamp,
        now: Timestamp,
    ) -> Result<Option<Timestamp>, NightlyError> {
        let after = claimed.map_or(first_seen, |c| c.max(first_seen));
        if after >= now {
            return Ok(None);
        }
        // The first slot after `after` tells whether any slot is in the window; the latest slot
        // at or before `now` is then the one to run. Two searches whatever the downtime, rather
        // than a walk over every missed slot.
        let first = self.search(after, Direction::After)?;
        if first > now {
            return Ok(None);
        }
        Ok(Some(self.search(now, Direction::AtOrBefore)?))
    }

    /// The first slot strictly after `now`: when the server's timer should look again.
    pub fn next_after(&self, now: Timestamp) -> Result<Timestamp, NightlyError> {
        self.search(now, Direction::After)
    }

    fn search(&self, from: Timestamp, direction: Direction) -> Result<Timestamp, NightlyError> {
        let from = from.to_zoned(TimeZone::UTC);
        let found = match direction {
            Direction::After => self.cron.find_next_occurrence(&from, false),
            Direction::AtOrBefore => self.cron.find_previous_occurrence(&from, true),
        };
        found
            .map(|slot| slot.timestamp())
            .map_err(|source| NightlyError::NoSlot {
                schedule: self.text.clone(),
                source,
            })
    }
}

#[derive(Clone, Copy)]
enum Direction {
    After,
    AtOrBefore,
}

/// [`Schedule::due`] for a schedule given as text.
pub fn due_slot(
    schedule: &str,
    claimed: Option<Timestamp>,
    first_seen: Timestamp,
    now: Timestamp,
) -> Result<Option<Timestamp>, NightlyError> {
    Schedule::parse(schedule)?.due(claimed, first_seen, now)
}

/// [`Schedule::next_after`] for a schedule given as text.
pub fn next_after(schedule: &str, now: Timestamp) -> Result<Timestamp, NightlyError> {
    Schedule::parse(schedule)?.next_after(now)
}

/// The earliest slot after `now` of any nightly lane of `catalog`, or `None` when it has none.
/// A lane whose schedule has no next slot is left out ([`create_nightly_run`] logs it).
pub fn next_slot(catalog: &Catalog, now: Timestamp) -> Option<Timestamp> {
    nightly_lanes(catalog)
        .filter_map(|(_, schedule)| next_after(schedule, now).ok())
        .min()
}

/// A nightly lane whose slot is due.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DueLane {
    /// The lane.
    pub lane: String,
    /// The slot it runs for.
    pub slot: Timestamp,
}

/// The run for the due nightly lanes of `repo`, on its default branch at `head`, or `None` when
/// nothing is due.
///
/// Every due lane is a queued job with reason `scheduled` and claims its slot. The lanes they
/// `need`, transitively, are queued in the same run with reason `needed-by` (whatever their
/// class: the lane cannot run without them); a needed nightly lane that is not due itself claims
/// no slot. Every other lane is left out. Every job has priority `nightly`: a required lane pulled
/// in as a need must not be served ahead of the pushes it would gate. Lanes of `due` that the
/// catalog does not have are ignored.
pub fn nightly_run(
    catalog: &Catalog,
    repo: &RepoRecord,
    head: &str,
    due: &[DueLane],
    now: Timestamp,
) -> Option<NewRun> {
    let slots: BTreeMap<&str, Timestamp> = due
        .iter()
        .filter(|d| catalog.lane(&d.lane).is_some())
        .map(|d| (d.lane.as_str(), d.slot))
        .collect();
    if slots.is_empty() {
        return None;
    }

    let mut reasons: BTreeMap<&str, Vec<Reason>> = slots
        .iter()
        .map(|(&lane, slot)| {
            let reason = Reason::Scheduled {
                slot: slot.to_string(),
            };
            (lane, vec![reason])
        })
        .collect();
    let mut queue: Vec<&str> = reasons.keys().copied().collect();
    while let Some(name) = queue.pop() {
        let Some(lane) = catalog.lane(name) else {
            continue;
        };
        for need in &lane.needs {
            let reason = Reason::NeededBy {
                lane: lane.name.clone(),
            };
            let entry = reasons.entry(need.as_str()).or_default();
            if entry.is_empty() {
                queue.push(need.as_str());
            }
            if !entry.contains(&reason) {
                entry.push(reason);
            }
        }
    }

    let jobs = catalog
        .lanes
        .iter()
        .filter_map(|lane| {
            let selection = reasons.remove(lane.name.as_str())?;
            Some(NewJob {
                lane: lane.name.clone(),
                class: lane.class,
                priority: Priority::Nightly,
                state: JobState::Queued,
                reason: None,
                selection,
                needs: lane.needs.clone(),
                group: lane.concurrency.clone(),
                labels: lane.labels.clone(),
                retries: DEFAULT_RETRIES,
                rerun_of: None,
            })
        })
        .collect();
    Some(NewRun {
        repo: repo.name.clone(),
        branch: repo.default_branch.clone(),
        head: head.to_owned(),
        base: None,
        trigger: RunTrigger::Nightly,
        status: RunStatus::Pending,
        diagnostics: None,
        created_at: now,
        jobs,
        nightly_slots: slots
            .into_iter()
            .map(|(lane, slot)| NightlySlot {
                lane: lane.to_owned(),
                slot,
            })
            .collect(),
    })
}

/// What [`create_nightly_run`] did.
#[derive(Debug)]
pub enum NightlyOutcome {
    /// No nightly lane has a slot due.
    NothingDue,
    /// The catalog at the default head does not validate (its push run shows why), so no nightly
    /// lane is known.
    CatalogInvalid,
    /// Another writer claimed one of the slots first; nothing was created.
    AlreadyClaimed,
    /// The run was created.
    Created(NightlyCreated),
}

/// A nightly run that was created.
#[derive(Debug)]
pub struct NightlyCreated {
    /// The run with its jobs.
    pub run: RunDetail,
    /// The concurrency groups of the catalog with their limits, for the scheduler.
    pub groups: Vec<(String, u32)>,
}

/// What one look at a repository's nightly lanes found, and when to look again.
#[derive(Debug)]
pub struct NightlyTick {
    /// What was done.
    pub outcome: NightlyOutcome,
    /// The earliest slot after `now` of any nightly lane at the default head ([`next_slot`]);
    /// `None` when there is none (no nightly lane, or no valid catalog).
    pub next: Option<Timestamp>,
}

/// Creates the nightly run of `repo` that is due at `now`, if any: the default branch's current
/// head, its catalog, each nightly lane's newest claimed slot from the store, [`Schedule::due`],
/// then [`nightly_run`] and `create_run`. `first_seen(lane)` is when the forge first knew the
/// lane. A lane whose schedule cannot be evaluated is logged and left out; the others still run.
pub async fn create_nightly_run(
    store: &impl Store,
    repo: &RepoRecord,
    git: &Repo,
    first_seen: impl Fn(&str) -> Timestamp,
    now: Timestamp,
) -> Result<NightlyTick, TriggerError> {
    // Nothing pushed to the default branch yet (a fresh bare repository): nothing can be due,
    // and that is no error to log at every tick.
    if !git
        .branches()?
        .iter()
        .any(|b| b.name == repo.default_branch)
    {
        return Ok(NightlyTick {
            outcome: NightlyOutcome::NothingDue,
            next: None,
        });
    }
    let head = git.resolve(&format!("refs/heads/{}", repo.default_branch))?;
    let Ok(catalog) = read_catalog(git, &head)? else {
        return Ok(NightlyTick {
            outcome: NightlyOutcome::CatalogInvalid,
            next: None,
        });
    };
    let next = next_slot(&catalog, now);

    let mut due = Vec::new();
    for (lane, schedule) in nightly_lanes(&catalog) {
        let claimed = store.last_nightly_slot(&repo.name, lane).await?;
        match due_slot(schedule, claimed, first_seen(lane), now) {
            Ok(Some(slot)) => due.push(DueLane {
                lane: lane.to_owned(),
                slot,
            }),
            Ok(None) => {}
            Err(e) => tracing::warn!("nightly lane `{lane}` of `{}`: {e}", repo.name),
        }
    }
    let Some(new_run) = nightly_run(&catalog, repo, head.as_str(), &due, now) else {
        return Ok(NightlyTick {
            outcome: NightlyOutcome::NothingDue,
            next,
        });
    };
    let outcome = match store.create_run(&new_run).await {
        Ok(run) => NightlyOutcome::Created(NightlyCreated {
            run,
            groups: group_limits(&catalog),
        }),
        Err(StoreError::Duplicate(_)) => NightlyOutcome::AlreadyClaimed,
        Err(e) => return Err(e.into()),
    };
    Ok(NightlyTick { outcome, next })
}

/// The nightly lanes of `catalog` with their schedules, in catalog order.
fn nightly_lanes(catalog: &Catalog) -> impl Iterator<Item = (&str, &str)> {
    catalog.lanes.iter().filter_map(|lane| match lane.class {
        LaneClass::Nightly => Some((lane.name.as_str(), lane.schedule.as_deref()?)),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        match text.parse() {
            Ok(t) => t,
            Err(e) => panic!("bad test timestamp {text}: {e}"),
        }
    }

    const DAILY: &str = "0 3 * * *";

    fn due(claimed: Option<&str>, first_seen: &str, now: &str) -> Option<Timestamp> {
        match due_slot(DAILY, claimed.map(at), at(first_seen), at(now)) {
            Ok(slot) => slot,
            Err(e) => panic!("{DAILY} must evaluate: {e}"),
        }
    }

    #[test]
    fn a_first_start_after_a_slot_does_not_run_it() {
        // The forge learned of the lane at 10:00; today's 03:00 slot was before that.
        assert_eq!(
            due(None, "2026-05-01T10:00:00Z", "2026-05-01T10:00:00Z"),
            None
        );
        assert_eq!(
            due(None, "2026-05-01T10:00:00Z", "2026-05-01T23:59:59Z"),
            None
        );
        // The next slot after it counts.
        assert_eq!(
            due(None, "2026-05-01T10:00:00Z", "2026-05-02T03:00:00Z"),
            Some(at("2026-05-02T03:00:00Z"))
        );
    }

    #[test]
    fn a_slot_that_passes_while_up_runs_once() {
        let first_seen = "2026-05-01T10:00:00Z";
        let slot = at("2026-05-02T03:00:00Z");
        assert_eq!(due(None, first_seen, "2026-05-02T02:59:59Z"), None);
        assert_eq!(
            due(None, first_seen, "2026-05-02T03:00:00.250Z"),
            Some(slot)
        );
        // Once the run claimed it, neither the same `now` nor a later one runs it again.
        let claimed = Some("2026-05-02T03:00:00Z");
        assert_eq!(due(claimed, first_seen, "2026-05-02T03:00:00.250Z"), None);
        assert_eq!(due(claimed, first_seen, "2026-05-03T02:59:59Z"), None);
        assert_eq!(
            due(claimed, first_seen, "2026-05-03T03:00:00Z"),
            Some(at("2026-05-03T03:00:00Z"))
        );
    }

    #[test]
    fn downtime_over_three_slots_runs_once_for_the_latest() {
        // Claimed May 1st; down from then until May 4th 12:00: May 2, 3 and 4 were missed.
        let slot = due(
            Some("2026-05-01T03:00:00Z"),
            "2026-04-01T00:00:00Z",
            "2026-05-04T12:00:00Z",
        );
        assert_eq!(slot, Some(at("2026-05-04T03:00:00Z")));
        // After that run claimed May 4th, nothing is due until May 5th.
        assert_eq!(
            due(
                Some("2026-05-04T03:00:00Z"),
                "2026-04-01T00:00:00Z",
                "2026-05-04T12:00:00Z"
            ),
            None
        );
    }

    #[test]
    fn first_seen_bounds_the_window_even_with_an_older_claim() {
        // A claim from long ago and a lane re-learned at 10:00 (both lower bounds apply).
        assert_eq!(
            due(
                Some("2026-01-01T03:00:00Z"),
                "2026-05-01T10:00:00Z",
                "2026-05-01T11:00:00Z"
            ),
            None
        );
    }

    #[test]
    fn a_slot_equal_to_the_bound_is_not_in_the_window() {
        assert_eq!(
            due(
                Some("2026-05-01T03:00:00Z"),
                "2026-04-01T00:00:00Z",
                "2026-05-01T03:00:00Z"
            ),
            None
        );
        assert_eq!(
            due(None, "2026-05-01T03:00:00Z", "2026-05-01T03:00:01Z"),
            None
        );
    }

    #[test]
    fn a_bad_cron_is_an_error_not_a_panic() {
        for bad in ["0 25 * * *", "", "not cron", "0 3 * *"] {
            let err = due_slot(
                bad,
                None,
                at("2026-05-01T00:00:00Z"),
                at("2026-05-02T00:00:00Z"),
            )
            .expect_err(bad);
            assert!(
                matches!(err, NightlyError::Invalid { .. }),
                "{bad}: {err:?}"
            );
            assert!(err.to_string().contains(&format!("`{bad}`")), "{err}");
            assert!(
                next_after(bad, at("2026-05-01T00:00:00Z")).is_err(),
                "{bad}"
            );
        }
        // Parses, but February 30th never comes.
        let err = due_slot(
            "0 0 30 2 *",
            None,
            at("2026-01-01T00:00:00Z"),
            at("2026-06-01T00:00:00Z"),
        )
        .expect_err("no slot");
        assert!(matches!(err, NightlyError::NoSlot { .. }), "{err:?}");
    }

    #[test]
    fn next_after_is_the_first_slot_strictly_after_now() -> Result<(), NightlyError> {
        let next = |now: &str| next_after(DAILY, at(now));
        assert_eq!(next("2026-05-01T02:59:59Z")?, at("2026-05-01T03:00:00Z"));
        assert_eq!(next("2026-05-01T03:00:00Z")?, at("2026-05-02T03:00:00Z"));
        assert_eq!(
            next("2026-05-01T03:00:00.500Z")?,
            at("2026-05-02T03:00:00Z")
        );
        assert_eq!(
            next_after("*/15 * * * *", at("2026-12-31T23:50:00Z"))?,
            at("2027-01-01T00:00:00Z")
        );
        Ok(())
    }

    #[test]
    fn slots_are_in_utc() -> Result<(), NightlyError> {
        // 03:00 is 03:00 UTC whatever the host's zone: the value is a UTC timestamp.
        let slot = next_after(DAILY, at("2026-07-01T00:00:00Z"))?;
        assert_eq!(slot.to_string(), "2026-07-01T03:00:00Z");
        Ok(())
    }

    fn catalog(text: &str) -> Catalog {
        let mut none = |path: &str| Err(format!("no file `{path}` in this test"));
        match lanes_core::parse(&lanes_core::Source::new("lanes.toml", text), &mut none) {
            Ok(c) => c,
            Err(e) => panic!("expected a valid catalog, got {:#?}", e.diagnostics),
        }
    }

    const CATALOG: &str = r#"version = 1
[group.big]
limit = 1

[lane.build]
step = [{ name = "b", run = "true" }]

[lane.lint]
step = [{ name = "l", run = "true" }]

[lane.bench]
class = "nightly"
schedule = "0 3 * * *"
needs = ["build"]
concurrency = "big"
labels = ["metal"]
step = [{ name = "b", run = "true" }]

[lane.fuzz]
class = "nightly"
schedule = "0 4 * * *"
needs = ["corpus"]
step = [{ name = "f", run = "true" }]

[lane.corpus]
class = "nightly"
schedule = "0 0 1 * *"
needs = ["build"]
step = [{ name = "c", run = "true" }]
"#;

    fn repo() -> RepoRecord {
        RepoRecord {
            id: lanes_store::RepoId(1),
            name: "app".into(),
            path: "/srv/app".into(),
            remote_url: None,
            default_branch: "main".into(),
            created_at: Timestamp::UNIX_EPOCH,
        }
    }

    #[test]
    fn a_nightly_run_holds_the_due_lanes_and_what_they_need() {
        let c = catalog(CATALOG);
        let slot = at("2026-05-02T03:00:00Z");
        let due = [DueLane {
            lane: "bench".into(),
            slot,
        }];
        let now = at("2026-05-02T03:00:01Z");
        let run = nightly_run(&c, &repo(), "abc123", &due, now).expect("a lane is due");
        assert_eq!(run.trigger, RunTrigger::Nightly);
        assert_eq!((run.branch.as_str(), run.head.as_str()), ("main", "abc123"));
        assert_eq!(run.base, None);
        assert_eq!(run.created_at, now);
        assert_eq!(
            run.nightly_slots,
            [NightlySlot {
                lane: "bench".into(),
                slot
            }]
        );
        let lanes: Vec<&str> = run.jobs.iter().map(|j| j.lane.as_str()).collect();
        assert_eq!(
            lanes,
            ["build", "bench"],
            "catalog order; lint is not part of it"
        );
        let [build, bench] = &run.jobs[..] else {
            panic!("two jobs");
        };
        assert_eq!(
            bench.selection,
            [Reason::Scheduled {
                slot: "2026-05-02T03:00:00Z".into()
            }]
        );
        assert_eq!(
            (bench.class, bench.priority, bench.state),
            (LaneClass::Nightly, Priority::Nightly, JobState::Queued)
        );
        assert_eq!(bench.needs, ["build"]);
        assert_eq!(bench.group.as_deref(), Some("big"));
        assert_eq!(bench.labels, ["metal"]);
        assert_eq!(
            build.selection,
            [Reason::NeededBy {
                lane: "bench".into()
            }]
        );
        assert_eq!(
            (build.class, build.priority, build.state),
            (LaneClass::Required, Priority::Nightly, JobState::Queued)
        );
    }

    #[test]
    fn a_needed_nightly_lane_that_is_not_due_runs_as_a_need_without_its_slot() {
        let c = catalog(CATALOG);
        let due = [DueLane {
            lane: "fuzz".into(),
            slot: at("2026-05-02T04:00:00Z"),
        }];
        let run = nightly_run(&c, &repo(), "abc", &due, at("2026-05-02T04:00:00Z"))
            .expect("a lane is due");
        let lanes: Vec<&str> = run.jobs.iter().map(|j| j.lane.as_str()).collect();
        assert_eq!(
            lanes,
            ["build", "fuzz", "corpus"],
            "the needs, transitively"
        );
        let corpus = &run.jobs[2];
        assert_eq!(
            corpus.selection,
            [Reason::NeededBy {
                lane: "fuzz".into()
            }]
        );
        assert_eq!(
            run.jobs[0].selection,
            [Reason::NeededBy {
                lane: "corpus".into()
            }]
        );
        let claimed: Vec<&str> = run.nightly_slots.iter().map(|s| s.lane.as_str()).collect();
        assert_eq!(
            claimed,
            ["fuzz"],
            "corpus runs as a need and claims no slot"
        );
    }

    #[test]
    fn a_due_lane_that_is_also_needed_has_both_reasons_and_claims_its_slot() {
        let c = catalog(CATALOG);
        let due = [
            DueLane {
                lane: "fuzz".into(),
                slot: at("2026-06-01T04:00:00Z"),
            },
            DueLane {
                lane: "corpus".into(),
                slot: at("2026-06-01T00:00:00Z"),
            },
        ];
        let run = nightly_run(&c, &repo(), "abc", &due, at("2026-06-01T04:00:00Z"))
            .expect("lanes are due");
        let corpus = run
            .jobs
            .iter()
            .find(|j| j.lane == "corpus")
            .expect("corpus job");
        assert_eq!(
            corpus.selection,
            [
                Reason::Scheduled {
                    slot: "2026-06-01T00:00:00Z".into()
                },
                Reason::NeededBy {
                    lane: "fuzz".into()
                }
            ]
        );
        let claimed: Vec<&str> = run.nightly_slots.iter().map(|s| s.lane.as_str()).collect();
        assert_eq!(claimed, ["corpus", "fuzz"]);
    }

    #[test]
    fn nothing_due_is_no_run() {
        let c = catalog(CATALOG);
        assert!(nightly_run(&c, &repo(), "abc", &[], at("2026-05-02T04:00:00Z")).is_none());
        let unknown = [DueLane {
            lane: "gone".into(),
            slot: at("2026-05-02T04:00:00Z"),
        }];
        assert!(
            nightly_run(&c, &repo(), "abc", &unknown, at("2026-05-02T04:00:00Z")).is_none(),
            "a lane the catalog no longer has is not run"
        );
    }

    #[test]
    fn next_slot_is_the_earliest_over_the_nightly_lanes() {
        let c = catalog(CATALOG);
        assert_eq!(
            next_slot(&c, at("2026-05-02T03:30:00Z")),
            Some(at("2026-05-02T04:00:00Z"))
        );
        assert_eq!(
            next_slot(&catalog("version = 1\n"), at("2026-05-02T03:30:00Z")),
            None
        );
    }
}
