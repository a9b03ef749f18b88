//! The order lanes run in on one machine: `needs` first, at most `jobs` at once, at most a
//! group's `limit` of one concurrency group at once.
//!
//! A value in, decisions out: the caller starts what [`Plan::start`] returns and reports back
//! with [`Plan::finish`]; lanes whose need did not pass come back as skipped.

/// One lane of the plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanLane {
    /// Indices (into the plan's lanes) of the lanes this one needs.
    pub needs: Vec<usize>,
    /// Index of its concurrency group, if any.
    pub group: Option<usize>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Waiting,
    Running,
    Passed,
    Failed,
    Skipped,
}

/// The state of a local run's lanes.
#[derive(Clone, Debug)]
pub struct Plan {
    lanes: Vec<PlanLane>,
    state: Vec<State>,
    limits: Vec<u32>,
    in_group: Vec<u32>,
    running: usize,
    jobs: usize,
}

/// A lane that will not run because a lane it needs did not pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Skip {
    /// The lane skipped.
    pub lane: usize,
    /// The need that did not pass.
    pub need: usize,
}

impl Plan {
    /// A plan for `lanes` (needs must point inside `lanes` and be acyclic, as a validated
    /// catalog's are), with group limits `limits` and at most `jobs` (at least 1) at once.
    pub fn new(lanes: Vec<PlanLane>, limits: Vec<u32>, jobs: usize) -> Plan {
        let n = lanes.len();
        let groups = limits.len();
        Plan {
            lanes,
            state: vec![State::Waiting; n],
            limits,
            in_group: vec![0; groups],
            running: 0,
            jobs: jobs.max(1),
        }
    }

    /// The next lane that may start now, marked as running; `None` when nothing can start until
    /// a running lane finishes (or nothing is left).
    pub fn start(&mut self) -> Option<usize> {
        if self.running >= self.jobs {
            return None;
        }
        let ready = (0..self.lanes.len()).find(|&i| {
            self.state[i] == State::Waiting
                && self.lanes[i]
                    .needs
                    .iter()
                    .all(|&n| self.state[n] == State::Passed)
                && self.lanes[i]
                    .group
                    .is_none_or(|g| self.in_group[g] < self.limits[g])
        })?;
        self.state[ready] = State::Running;
        self.running += 1;
        if let Some(g) = self.lanes[ready].group {
            self.in_group[g] += 1;
        }
        Some(ready)
    }

    /// Record that running lane `lane` ended; returns the lanes that are now skipped because
    /// they need it (directly or through another skipped lane) and it did not pass.
    pub fn finish(&mut self, lane: usize, passed: bool) -> Vec<Skip> {
        assert_eq!(self.state[lane], State::Running, "finish a running lane");
        self.running -= 1;
        if let Some(g) = self.lanes[lane].group {
            self.in_group[g] -= 1;
        }
        self.state[lane] = if passed { State::Passed } else { State::Failed };
        let mut skipped = Vec::new();
        if passed {
            return skipped;
        }
        // Lanes only need lanes listed in the plan, and skipping spreads to their dependents.
        let mut changed = true;
        while changed {
            changed = false;
            for i in 0..self.lanes.len() {
                if self.state[i] != State::Waiting {
                    continue;
                }
                if let Some(&need) = self.lanes[i]
                    .needs
                    .iter()
                    .find(|&&n| matches!(self.state[n], State::Failed | State::Skipped))
                {
                    self.state[i] = State::Skipped;
                    skipped.push(Skip { lane: i, need });
                    changed = true;
                }
            }
        }
        skipped
    }

    /// Give up on every lane that has not started (a cancelled run); returns them.
    pub fn abandon(&mut self) -> Vec<usize> {
        let waiting: Vec<usize> = (0..self.lanes.len())
            .filter(|&i| self.state[i] == State::Waiting)
            .collect();
        for &i in &waiting {
            self.state[i] = State::Skipped;
        }
        waiting
    }

    /// Lanes running now.
    pub fn running(&self) -> usize {
        self.running
    }

    /// Whether every lane has finished or been skipped.
    pub fn is_done(&self) -> bool {
        self.state
            .iter()
            .all(|s| !matches!(s, State::Waiting | State::Running))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lane(needs: &[usize], group: Option<usize>) -> PlanLane {
        PlanLane {
            needs: needs.to_vec(),
            group,
        }
    }

    #[test]
    fn needs_run_first_and_a_failure_skips_dependents_transitively() {
        // 0 <- 1 <- 2, and 3 independent.
        let mut plan = Plan::new(
            vec![
                lane(&[], None),
                lane(&[0], None),
                lane(&[1], None),
                lane(&[], None),
            ],
            vec![],
            4,
        );
        assert_eq!(plan.start(), Some(0));
        assert_eq!(plan.start(), Some(3));
        assert_eq!(plan.start(), None, "1 waits for 0");
        assert_eq!(
            plan.finish(0, false),
            vec![Skip { lane: 1, need: 0 }, Skip { lane: 2, need: 1 }]
        );
        assert!(!plan.is_done());
        assert!(plan.finish(3, true).is_empty());
        assert!(plan.is_done());
    }

    #[test]
    fn jobs_and_group_limits_cap_what_runs_at_once() {
        let mut plan = Plan::new(
            vec![
                lane(&[], Some(0)),
                lane(&[], Some(0)),
                lane(&[], None),
                lane(&[], None),
            ],
            vec![1],
            2,
        );
        assert_eq!(plan.start(), Some(0));
        assert_eq!(plan.start(), Some(2), "1 is blocked by the group");
        assert_eq!(plan.start(), None, "two jobs at once");
        plan.finish(2, true);
        assert_eq!(plan.start(), Some(3));
        plan.finish(0, true);
        assert_eq!(plan.start(), Some(1));
        assert_eq!(plan.running(), 2);
    }

    #[test]
    fn abandon_skips_what_has_not_started() {
        let mut plan = Plan::new(vec![lane(&[], None), lane(&[0], None)], vec![], 1);
        assert_eq!(plan.start(), Some(0));
        assert_eq!(plan.abandon(), vec![1]);
        plan.finish(0, true);
        assert!(plan.is_done());
        assert_eq!(plan.start(), None);
    }
}
