//! Safety and liveness of the scheduler, on random sequences of events over a fake clock.
//!
//! A fake server drives the scheduler as the real one will: it persists every transition into
//! a model database with the store's compare-and-set rules (so a decision made from a state the
//! database does not hold fails the test), sends agent reports through the fence first, and
//! sometimes restarts (rebuilding the scheduler from the database). Beside it, a brute-force
//! oracle computes from the database what a lease must return.

use lanes_core::job::{JobReason, JobState, Priority};
use lanes_core::schedule::{
    AgentId, Config, JobId, JobSpec, Lease, Need, RestoredJob, Scheduler, Token, Transition,
};
use proptest::prelude::*;
use proptest::sample::Index;
use std::collections::{BTreeMap, BTreeSet};

const JOB_LABELS: [&[&str]; 4] = [&[], &["mac"], &["linux"], &["arm", "mac"]];
const AGENT_LABELS: [&[&str]; 5] = [
    &[],
    &["mac"],
    &["linux"],
    &["arm", "mac"],
    &["arm", "linux", "mac"],
];
const GROUPS: [&str; 2] = ["g0", "g1"];
const AGENTS: usize = 4;
const OUTCOMES: [JobState; 6] = [
    JobState::Passed,
    JobState::Passed,
    JobState::Passed,
    JobState::Passed,
    JobState::Failed,
    JobState::TimedOut,
];

fn set(labels: &[&str]) -> BTreeSet<String> {
    labels.iter().map(|l| (*l).to_owned()).collect()
}

/// A job as the database holds it.
#[derive(Clone, Debug)]
struct Row {
    spec: JobSpec,
    state: JobState,
    reason: Option<JobReason>,
    attempts: u32,
    agent_lost: u32,
    lease: Option<Lease>,
}

#[derive(Clone, Debug)]
struct AgentRow {
    labels: BTreeSet<String>,
    capacity: u32,
    online: bool,
}

/// The fake server: the scheduler, the database it persists to, and what it told agents.
struct Server {
    sched: Scheduler,
    rows: BTreeMap<JobId, Row>,
    agents: BTreeMap<AgentId, AgentRow>,
    limits: BTreeMap<String, u32>,
    /// Tokens of leases that ended; reports with them must be rejected.
    dead: Vec<(JobId, Token)>,
    max_token: u64,
    next_id: u64,
    now: u64,
}

impl Server {
    fn new() -> Server {
        Server {
            sched: Scheduler::new(Config::default()),
            rows: BTreeMap::new(),
            agents: BTreeMap::new(),
            limits: BTreeMap::new(),
            dead: Vec::new(),
            max_token: 0,
            next_id: 1,
            now: 0,
        }
    }

    fn limit(&self, group: &str) -> u32 {
        self.limits.get(group).copied().unwrap_or(1)
    }

    /// Persists `t` the way the store does, failing on anything the store would refuse.
    fn apply(&mut self, t: &Transition) {
        let now = self.now;
        let row = self
            .rows
            .get_mut(&t.job)
            .expect("transitions name stored jobs");
        assert_eq!(
            row.state, t.from,
            "compare-and-set on the state of job {}",
            t.job
        );
        if t.from.is_held() && t.to != JobState::Leased {
            let current = row.lease.as_ref().map(|l| l.token);
            assert_eq!(
                t.token, current,
                "a decision on a held job checks its token"
            );
        }
        if t.from == t.to {
            row.reason = t.reason.clone();
            if let (Some(at), Some(lease)) = (t.expires_at, row.lease.as_mut()) {
                assert!(at >= lease.expires_at, "a lease never shortens");
                lease.expires_at = at;
            }
            return;
        }
        row.state = t.to;
        row.reason = t.reason.clone();
        match t.to {
            JobState::Leased => {
                assert_eq!(t.from, JobState::Queued, "only a queued job is leased");
                let token = t.token.expect("a lease has a token");
                assert!(
                    token.0 > self.max_token,
                    "every lease has a new, larger token"
                );
                self.max_token = token.0;
                row.lease = Some(Lease {
                    job: t.job,
                    agent: t.agent.clone().expect("a lease has an agent"),
                    token,
                    expires_at: t.expires_at.expect("a lease has an expiry"),
                });
            }
            JobState::Running => assert_eq!(t.from, JobState::Leased),
            JobState::Queued => {
                assert!(t.from.is_held(), "only a held job goes back to the queue");
                row.attempts += 1;
                if let Some(JobReason::AgentLost { attempt, .. }) = &t.reason {
                    row.agent_lost += 1;
                    assert_eq!(*attempt, row.attempts);
                    let lease = row.lease.as_ref().expect("held");
                    assert!(lease.expires_at <= now, "only an expired lease is lost");
                }
                assert!(
                    row.agent_lost <= row.spec.retries,
                    "job {} requeued after lost agents more than its {} retries",
                    t.job,
                    row.spec.retries
                );
                let lease = row.lease.take().expect("held");
                self.dead.push((t.job, lease.token));
            }
            _ => {
                assert!(t.to.is_terminal());
                if let Some(JobReason::RetriesExhausted { .. }) = &t.reason {
                    // User requeues count as attempts too.
                    assert!(
                        row.attempts >= row.spec.retries && row.agent_lost <= row.spec.retries,
                        "error only once retries are used"
                    );
                }
                if let Some(lease) = row.lease.take() {
                    self.dead.push((t.job, lease.token));
                }
            }
        }
    }

    fn apply_all(&mut self, ts: &[Transition]) {
        for t in ts {
            self.apply(t);
        }
    }

    fn add(
        &mut self,
        priority: Priority,
        group: Option<usize>,
        labels: usize,
        needs: &[Index],
        retries: u32,
    ) {
        let id = JobId(self.next_id);
        self.next_id += 1;
        // Needs among the last few jobs, as within a run.
        let earlier = (id.0 as usize - 1).min(6);
        let mut need_ids: Vec<JobId> = needs
            .iter()
            .filter(|_| earlier > 0)
            .map(|i| JobId(id.0 - 1 - i.index(earlier) as u64))
            .collect();
        need_ids.sort();
        need_ids.dedup();
        let needs = need_ids
            .iter()
            .map(|n| {
                let row = &self.rows[n];
                Need {
                    job: *n,
                    lane: row.spec.lane.clone(),
                    state: row.state,
                }
            })
            .collect();
        let spec = JobSpec {
            id,
            repo: "app".into(),
            run: id.0 / 3,
            lane: format!("lane{}", id.0),
            priority,
            needs,
            group: group.map(|g| GROUPS[g].to_owned()),
            labels: set(JOB_LABELS[labels]),
            retries,
        };
        self.rows.insert(
            id,
            Row {
                spec: spec.clone(),
                state: JobState::Queued,
                reason: None,
                attempts: 0,
                agent_lost: 0,
                lease: None,
            },
        );
        let ts = self.sched.add_job(spec).expect("the needs are stored jobs");
        self.apply_all(&ts);
    }

    /// What a lease for `agent` must return, computed from the database by brute force.
    fn expected_lease(&self, agent: &AgentId) -> Option<JobId> {
        let a = self.agents.get(agent).filter(|a| a.online)?;
        let holding = self.held().filter(|(_, l)| &l.agent == agent).count();
        if holding >= a.capacity as usize {
            return None;
        }
        self.rows
            .iter()
            .filter(|(_, r)| r.state == JobState::Queued)
            .filter(|(_, r)| {
                r.spec
                    .needs
                    .iter()
                    .all(|n| self.rows[&n.job].state == JobState::Passed)
            })
            .filter(|(_, r)| r.spec.labels.is_subset(&a.labels))
            .filter(|(_, r)| {
                r.spec
                    .group
                    .as_ref()
                    .is_none_or(|g| (self.held_in(g) as u32) < self.limit(g))
            })
            .min_by_key(|(id, r)| (r.spec.priority, **id))
            .map(|(id, _)| *id)
    }

    fn held(&self) -> impl Iterator<Item = (&Row, &Lease)> {
        self.rows
            .values()
            .filter_map(|r| r.lease.as_ref().map(|l| (r, l)))
    }

    fn held_in(&self, group: &str) -> usize {
        self.held()
            .filter(|(r, _)| r.spec.group.as_deref() == Some(group))
            .count()
    }

    fn lease(&mut self, agent: &AgentId) -> Option<Lease> {
        let expected = self.expected_lease(agent);
        let lease = self.sched.lease(agent, self.now);
        assert_eq!(lease.as_ref().map(|l| l.job), expected, "lease for {agent}");
        let lease = lease?;
        let row = &self.rows[&lease.job];
        assert!(
            row.lease.is_none(),
            "job {} leased twice at once",
            lease.job
        );
        self.apply(&lease.transition());
        if let Some(g) = self.rows[&lease.job].spec.group.clone() {
            assert!(
                self.held_in(&g) as u32 <= self.limit(&g),
                "group {g} over its limit"
            );
        }
        Some(lease)
    }

    /// The live leases, in job order.
    fn live(&self) -> Vec<Lease> {
        self.held().map(|(_, l)| l.clone()).collect()
    }

    fn heartbeat(&mut self, lease: &Lease) -> bool {
        let result = self.sched.heartbeat(lease.job, lease.token, self.now);
        self.check_fence(lease, result.is_ok());
        if let Ok(at) = result {
            assert_eq!(at, self.now + Config::default().lease);
            if let Some(l) = self.rows.get_mut(&lease.job).and_then(|r| r.lease.as_mut()) {
                l.expires_at = at;
            }
        }
        result.is_ok()
    }

    fn start(&mut self, lease: &Lease) {
        let result = self.sched.started(lease.job, lease.token, self.now);
        self.check_fence(lease, result.is_ok());
        if let Ok(Some(t)) = result {
            self.apply(&t);
        }
    }

    fn finish(&mut self, lease: &Lease, outcome: JobState) {
        let result = self
            .sched
            .finished(lease.job, lease.token, outcome, self.now);
        self.check_fence(lease, result.is_ok());
        if let Ok(ts) = result {
            assert_eq!(
                ts.first().map(|t| (t.job, t.to)),
                Some((lease.job, outcome))
            );
            self.apply_all(&ts);
        }
    }

    /// A report is accepted exactly when it presents the current token of an unexpired lease.
    fn check_fence(&self, lease: &Lease, accepted: bool) {
        let live = self.rows[&lease.job]
            .lease
            .as_ref()
            .is_some_and(|l| l.token == lease.token && self.now < l.expires_at);
        assert_eq!(
            accepted, live,
            "report for job {} with token {}",
            lease.job, lease.token
        );
    }

    fn tick(&mut self) {
        let ts = self.sched.tick(self.now);
        self.apply_all(&ts);
        assert!(
            self.held().all(|(_, l)| l.expires_at > self.now),
            "a tick ends every expired lease"
        );
    }

    fn restart(&mut self) {
        let jobs = self
            .rows
            .values()
            .filter(|r| !r.state.is_terminal())
            .map(|r| {
                let mut spec = r.spec.clone();
                for need in &mut spec.needs {
                    need.state = self.rows[&need.job].state;
                }
                RestoredJob {
                    spec,
                    state: r.state,
                    attempts: r.attempts,
                    reason: r.reason.clone(),
                    lease: r.lease.clone(),
                }
            })
            .collect();
        let (sched, ts) =
            Scheduler::restore(Config::default(), jobs, Token(self.max_token + 1), self.now)
                .expect("the database is consistent");
        self.sched = sched;
        self.apply_all(&ts);
        for (group, &limit) in &self.limits {
            self.sched.set_group_limit(group, limit);
        }
        for (id, a) in &self.agents {
            if a.online {
                self.sched.agent_online(id.clone(), &a.labels, a.capacity);
            }
        }
    }

    /// The scheduler's view equals the database's, and no ended lease can report.
    fn check(&mut self) {
        for (id, row) in &self.rows {
            let open = !row.state.is_terminal();
            assert_eq!(
                self.sched.state(*id),
                open.then_some(row.state),
                "state of job {id}"
            );
            assert_eq!(self.sched.lease_of(*id), row.lease, "lease of job {id}");
            if row.state == JobState::Queued {
                let reason = self.sched.reason(*id).expect("a queued job has a reason");
                self.check_reason(row, &reason);
            }
        }
        let mut open_runs: BTreeMap<(String, u64), u32> = BTreeMap::new();
        for row in self.rows.values().filter(|r| !r.state.is_terminal()) {
            *open_runs
                .entry((row.spec.repo.clone(), row.spec.run))
                .or_insert(0) += 1;
        }
        for row in self.rows.values() {
            let (repo, run) = (&row.spec.repo, row.spec.run);
            let expected = open_runs.get(&(repo.clone(), run)).copied().unwrap_or(0);
            assert_eq!(
                self.sched.open_in_run(repo, run),
                expected,
                "open jobs of run {repo}#{run}"
            );
        }
        for &(job, token) in &self.dead {
            assert!(
                self.sched.check(job, token, self.now).is_err(),
                "a report with the ended lease {token} of job {job} was accepted"
            );
        }
        let ts = self.sched.update_reasons();
        assert!(
            ts.iter()
                .all(|t| t.from == JobState::Queued && t.to == JobState::Queued)
        );
        self.apply_all(&ts);
    }

    /// The reason of a queued job says what keeps it from the oracle's lease.
    fn check_reason(&self, row: &Row, reason: &JobReason) {
        let waiting: Vec<String> = row
            .spec
            .needs
            .iter()
            .filter(|n| self.rows[&n.job].state != JobState::Passed)
            .map(|n| n.lane.clone())
            .collect();
        let fits: Vec<&AgentRow> = self
            .agents
            .values()
            .filter(|a| a.online && row.spec.labels.is_subset(&a.labels))
            .collect();
        let full = row
            .spec
            .group
            .as_ref()
            .is_some_and(|g| self.held_in(g) as u32 >= self.limit(g));
        let expected = if !waiting.is_empty() {
            "waiting-for-needs"
        } else if fits.is_empty() {
            "waiting-for-agent"
        } else if full {
            "blocked-by-group"
        } else {
            "waiting-for-capacity"
        };
        assert_eq!(reason.kind(), expected, "reason of job {}", row.spec.id);
        match reason {
            JobReason::WaitingForNeeds { lanes } => assert_eq!(lanes, &waiting),
            JobReason::BlockedByGroup { holders, .. } => {
                let g = row.spec.group.as_deref();
                let named: Vec<String> = self
                    .held()
                    .filter(|(r, _)| r.spec.group.as_deref() == g)
                    .map(|(r, _)| r.spec.lane.clone())
                    .collect();
                let lanes: Vec<String> = holders.iter().map(|h| h.lane.clone()).collect();
                assert_eq!(lanes, named, "the holders are named");
            }
            _ => {}
        }
    }
}

#[derive(Clone, Debug)]
enum Op {
    Add {
        priority: Priority,
        group: Option<usize>,
        labels: usize,
        needs: Vec<Index>,
        retries: u32,
    },
    Online {
        agent: usize,
        labels: usize,
        capacity: u32,
    },
    Offline {
        agent: usize,
    },
    Lease {
        agent: usize,
    },
    Heartbeat(Index),
    Start(Index),
    Finish(Index, usize),
    Advance(u64),
    Tick,
    Cancel(Index),
    Requeue(Index),
    SetLimit {
        group: usize,
        limit: u32,
    },
    Restart,
}

fn priority() -> impl Strategy<Value = Priority> {
    prop::sample::select(Priority::ALL.to_vec())
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (
            priority(),
            prop::option::of(0..GROUPS.len()),
            0..JOB_LABELS.len(),
            prop::collection::vec(any::<Index>(), 0..2),
            0u32..3,
        )
            .prop_map(|(priority, group, labels, needs, retries)| Op::Add {
                priority,
                group,
                labels,
                needs,
                retries
            }),
        1 => (0..AGENTS, 0..AGENT_LABELS.len(), 0u32..3)
            .prop_map(|(agent, labels, capacity)| Op::Online { agent, labels, capacity }),
        1 => (0..AGENTS).prop_map(|agent| Op::Offline { agent }),
        6 => (0..AGENTS).prop_map(|agent| Op::Lease { agent }),
        2 => any::<Index>().prop_map(Op::Heartbeat),
        1 => any::<Index>().prop_map(Op::Start),
        3 => (any::<Index>(), 0..OUTCOMES.len()).prop_map(|(i, o)| Op::Finish(i, o)),
        // Exactly a lease's length, too: a report at the expiry instant is already stale.
        2 => prop_oneof![0u64..5_000, 25_000u64..40_000, Just(30_000)].prop_map(Op::Advance),
        1 => Just(Op::Tick),
        1 => any::<Index>().prop_map(Op::Cancel),
        1 => any::<Index>().prop_map(Op::Requeue),
        1 => (0..GROUPS.len(), 0u32..3).prop_map(|(group, limit)| Op::SetLimit { group, limit }),
        1 => Just(Op::Restart),
    ]
}

fn agent_id(i: usize) -> AgentId {
    AgentId(format!("agent{i}"))
}

fn run(server: &mut Server, op: &Op) {
    match op {
        Op::Add {
            priority,
            group,
            labels,
            needs,
            retries,
        } => server.add(*priority, *group, *labels, needs, *retries),
        Op::Online {
            agent,
            labels,
            capacity,
        } => {
            let labels = set(AGENT_LABELS[*labels]);
            server
                .sched
                .agent_online(agent_id(*agent), &labels, *capacity);
            server.agents.insert(
                agent_id(*agent),
                AgentRow {
                    labels,
                    capacity: *capacity,
                    online: true,
                },
            );
        }
        Op::Offline { agent } => {
            server.sched.agent_offline(&agent_id(*agent));
            if let Some(a) = server.agents.get_mut(&agent_id(*agent)) {
                a.online = false;
            }
        }
        Op::Lease { agent } => {
            server.lease(&agent_id(*agent));
        }
        // Reports come for live leases and, as often, for ended ones.
        Op::Heartbeat(i) => {
            if let Some(lease) = pick_report(server, i) {
                server.heartbeat(&lease);
            }
        }
        Op::Start(i) => {
            if let Some(lease) = pick_report(server, i) {
                server.start(&lease);
            }
        }
        Op::Finish(i, outcome) => {
            if let Some(lease) = pick_report(server, i) {
                server.finish(&lease, OUTCOMES[*outcome]);
            }
        }
        // Reports may come between the expiry and the tick that acts on it.
        Op::Advance(ms) => server.now += ms,
        Op::Tick => server.tick(),
        Op::Cancel(i) => {
            if server.next_id > 1 {
                let job = JobId(1 + i.index(server.next_id as usize - 1) as u64);
                let ts = server.sched.cancel(&[job], JobReason::CancelledByUser);
                let open = !server.rows[&job].state.is_terminal();
                assert_eq!(ts.first().map(|t| t.job), open.then_some(job));
                server.apply_all(&ts);
            }
        }
        Op::Requeue(i) => {
            if server.next_id > 1 {
                let job = JobId(1 + i.index(server.next_id as usize - 1) as u64);
                let t = server.sched.requeue(job);
                assert_eq!(t.is_some(), server.rows[&job].state.is_held());
                if let Some(t) = t {
                    server.apply(&t);
                }
            }
        }
        Op::SetLimit { group, limit } => {
            server.sched.set_group_limit(GROUPS[*group], *limit);
            server.limits.insert(GROUPS[*group].to_owned(), *limit);
        }
        Op::Restart => server.restart(),
    }
}

/// A live lease (three times as likely) or an ended one.
fn pick_report(server: &Server, i: &Index) -> Option<Lease> {
    let live = server.live();
    let dead = &server.dead;
    let n = 3 * live.len() + dead.len();
    if n == 0 {
        return None;
    }
    let k = i.index(n);
    Some(match live.get(k / 3) {
        Some(lease) if k < 3 * live.len() => lease.clone(),
        _ => {
            let (job, token) = dead[k - 3 * live.len()];
            Lease {
                job,
                agent: agent_id(0),
                token,
                expires_at: 0,
            }
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Every decision persists as a compare-and-set the database accepts; no job is leased
    /// twice at once; leases follow the rules exactly (the oracle); no group goes over its
    /// limit; lost agents requeue a job at most `retries` times; only the current, unexpired
    /// token is accepted; every queued job's reason is the first rule that holds it back.
    #[test]
    fn scheduling_is_safe(ops in prop::collection::vec(op(), 1..200)) {
        let mut server = Server::new();
        for agent in 0..AGENTS {
            run(&mut server, &Op::Online { agent, labels: agent + 1, capacity: 2 });
        }
        for op in &ops {
            run(&mut server, op);
            server.check();
        }
    }

    /// With agents that keep heartbeating and finish what they lease (after a bad start of
    /// crashed agents, cancels and restarts), every job ends.
    #[test]
    fn with_working_agents_every_job_ends(
        chaos in prop::collection::vec(op(), 0..60),
        jobs in prop::collection::vec(
            (priority(), prop::option::of(0..GROUPS.len()), 0..JOB_LABELS.len(),
             prop::collection::vec(any::<Index>(), 0..3), 0u32..3),
            1..40,
        ),
        outcomes in prop::collection::vec(0..OUTCOMES.len(), 64),
    ) {
        let mut server = Server::new();
        for op in &chaos {
            run(&mut server, op);
        }
        for (priority, group, labels, needs, retries) in &jobs {
            server.add(*priority, *group, *labels, needs, *retries);
        }
        // Working agents: every group can run, one agent has every label.
        for (g, group) in GROUPS.iter().enumerate() {
            let limit = 1 + g as u32;
            server.sched.set_group_limit(group, limit);
            server.limits.insert((*group).to_owned(), limit);
        }
        for i in 0..AGENTS {
            let labels = set(AGENT_LABELS[AGENT_LABELS.len() - 1 - i % 2]);
            server.sched.agent_online(agent_id(i), &labels, 2);
            server.agents.insert(agent_id(i), AgentRow { labels, capacity: 2, online: true });
        }
        let mut k = 0;
        for _round in 0..1_000 {
            if server.rows.values().all(|r| r.state.is_terminal()) {
                break;
            }
            // Leases the chaos phase let expire end here.
            server.now += 10_000;
            server.tick();
            for i in 0..AGENTS {
                while server.lease(&agent_id(i)).is_some() {}
            }
            for lease in server.live() {
                if server.heartbeat(&lease) {
                    server.start(&lease);
                    server.finish(&lease, OUTCOMES[outcomes[k % outcomes.len()]]);
                    k += 1;
                }
            }
            server.check();
        }
        let open: Vec<(JobId, JobState)> = server
            .rows
            .iter()
            .filter(|(_, r)| !r.state.is_terminal())
            .map(|(id, r)| (*id, r.state))
            .collect();
        prop_assert!(open.is_empty(), "jobs never ended: {:?}", open);
        prop_assert_eq!(server.sched.counts(), (0, 0));
    }
}
