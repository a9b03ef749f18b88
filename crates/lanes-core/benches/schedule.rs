//! The pure scheduler under a full queue: 10,000 queued jobs, 100 agents, 20 concurrency groups
//! with limits, labels on 20% of the jobs.
//!
//! The workload (deterministic, from a fixed seed): 30% of the jobs are in one of 20 groups
//! (limits 1 to 4), 20% ask for labels (`mac`, `linux`+`gpu` or `arm`), priorities are mixed;
//! the 100 agents hold up to 4 jobs each, 20% have `mac`, 20% `linux`+`gpu`, 10% `arm`. In the
//! steady state measured, agents take turns asking for a lease; one at capacity first finishes
//! its oldest job, and a new job replaces it, so the queue stays at 10,000. Since groups are
//! full most of the time, grouped jobs pile up at the front of the queue: the case a lease must
//! not pay for by walking past them.
//!
//! Measured, as medians (and the tail) of single calls: `lease`; beside it, the same workload
//! on the obvious implementation, a walk of one queue in serving order to the first job that
//! fits (the baseline the partitioned ready queue is measured against). Then `heartbeat`,
//! `finished`, `tick` with nothing expired, `update_reasons` over the whole queue, and `restore`
//! of the whole state.
//!
//! Run: `cargo bench -p lanes-core --bench schedule` (set `LANES_BENCH_LEASES` for the number of
//! lease calls, 20,000 by default: the baseline takes a
//! millisecond or more each). Results go to stdout as a table.

#![expect(
    clippy::print_stdout,
    reason = "a bench binary reports on the terminal"
)]

use lanes_core::job::{JobState, Priority};
use lanes_core::schedule::{AgentId, Config, JobId, JobSpec, Lease, RestoredJob, Scheduler};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

const QUEUED: usize = 10_000;
const AGENTS: usize = 100;
const CAPACITY: u32 = 4;
const GROUPS: usize = 20;

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs us without it: stay quick.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let leases: usize = std::env::var("LANES_BENCH_LEASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20_000);

    let mut rng = Rng(0x5eed_1a9e5);
    let agents: Vec<(AgentId, BTreeSet<String>)> = (0..AGENTS)
        .map(|i| (AgentId(format!("agent{i}")), agent_labels(i)))
        .collect();

    // The scheduler, filled.
    let mut sched = Scheduler::new(Config::default());
    for g in 0..GROUPS {
        sched.set_group_limit(&format!("group{g}"), 1 + (g % 4) as u32);
    }
    for (id, labels) in &agents {
        sched.agent_online(id.clone(), labels, CAPACITY);
    }
    let mut next_id = 1;
    let mut naive = Naive::new(&agents);
    let mut specs = HashMap::new();
    let mut add =
        |sched: &mut Scheduler, naive: &mut Naive, specs: &mut HashMap<JobId, JobSpec>| {
            let spec = job(&mut rng, &mut next_id);
            naive.add(&spec);
            specs.insert(spec.id, spec.clone());
            sched.add_job(spec).expect("fresh ids, no needs");
        };
    for _ in 0..QUEUED {
        add(&mut sched, &mut naive, &mut specs);
    }

    // Steady state: the same decisions on both, timed one call at a time.
    let mut now = 1_000_000;
    let mut held: Vec<VecDeque<Lease>> = vec![VecDeque::new(); AGENTS];
    let mut naive_held: Vec<VecDeque<u64>> = vec![VecDeque::new(); AGENTS];
    let mut hit_ns = Vec::with_capacity(leases);
    let mut naive_hit_ns = Vec::with_capacity(leases);
    let mut misses = 0;
    let mut finish_ns = Vec::new();
    let mut heartbeat_ns = Vec::new();
    for i in 0..leases {
        let a = i % AGENTS;
        now += 1;
        if held[a].len() as u32 >= CAPACITY {
            if let Some(old) = held[a].pop_front() {
                let start = Instant::now();
                sched
                    .finished(old.job, old.token, JobState::Passed, now)
                    .expect("live lease");
                finish_ns.push(start.elapsed());
                specs.remove(&old.job);
            }
            if let Some(old) = naive_held[a].pop_front() {
                naive.finish(a, old);
            }
        }
        if let Some(lease) = held[a].front() {
            let start = Instant::now();
            sched
                .heartbeat(lease.job, lease.token, now)
                .expect("live lease");
            heartbeat_ns.push(start.elapsed());
        }
        let start = Instant::now();
        let lease = sched.lease(&agents[a].0, now);
        let took = start.elapsed();
        let start = Instant::now();
        let naive_lease = naive.lease(a);
        let naive_took = start.elapsed();
        assert_eq!(
            lease.as_ref().map(|l| l.job.0),
            naive_lease,
            "both serve the same job"
        );
        match lease {
            Some(lease) => {
                hit_ns.push(took);
                naive_hit_ns.push(naive_took);
                held[a].push_back(lease);
                naive_held[a].extend(naive_lease);
                // A new job for the one taken: the queue stays full.
                add(&mut sched, &mut naive, &mut specs);
            }
            None => misses += 1,
        }
    }
    let (queued, holding) = sched.counts();
    let (mut miss_ns, mut naive_miss_ns) = saturated(&agents, leases / 10);

    let tick_ns = sample(1_001, || {
        sched.tick(now);
    });
    let first_reasons = time(|| {
        sched.update_reasons();
    });
    let reasons = sample(21, || {
        sched.update_reasons();
    });
    let restored = open_jobs(&sched, &specs, &held);
    let restore = sample(11, || {
        Scheduler::restore(Config::default(), restored.clone(), sched.next_token(), now)
            .expect("consistent");
    });

    println!(
        "scheduler, pure core: {queued} queued, {holding} held, {AGENTS} agents (capacity \
         {CAPACITY}), {GROUPS} groups; {leases} lease calls, {misses} found nothing"
    );
    println!(
        "{:<44} {:>10} {:>10} {:>10}",
        "operation", "median", "p99", "max"
    );
    row("lease, found a job", &mut hit_ns);
    row("baseline (walk one queue), found a job", &mut naive_hit_ns);
    row("lease, found nothing (all 10,000 blocked)", &mut miss_ns);
    row(
        "baseline, found nothing (all 10,000 blocked)",
        &mut naive_miss_ns,
    );
    row("heartbeat", &mut heartbeat_ns);
    row("finished (passed, no dependents)", &mut finish_ns);
    row("tick, nothing expired", &mut tick_ns.clone());
    println!(
        "{:<44} {:>10}",
        "update_reasons, first (every job changed)",
        show(first_reasons)
    );
    row("update_reasons, nothing changed", &mut reasons.clone());
    row("restore (every open job)", &mut restore.clone());
    let median = |v: &[Duration]| v.get(v.len() / 2).map_or(0.0, Duration::as_secs_f64);
    println!(
        "baseline / lease, medians: {:.0}x (found a job), {:.0}x (found nothing)",
        median(&naive_hit_ns) / median(&hit_ns).max(1e-12),
        median(&naive_miss_ns) / median(&miss_ns).max(1e-12)
    );
}

/// Lease calls that find nothing: every queued job is in a group, and every group is full.
/// Returns their times on the scheduler and on the baseline.
fn saturated(
    agents: &[(AgentId, BTreeSet<String>)],
    calls: usize,
) -> (Vec<Duration>, Vec<Duration>) {
    let mut rng = Rng(0x00b1_0ced);
    let mut sched = Scheduler::new(Config::default());
    let mut naive = Naive::new(agents);
    for g in 0..GROUPS {
        sched.set_group_limit(&format!("group{g}"), 1 + (g % 4) as u32);
    }
    for (id, labels) in agents {
        sched.agent_online(id.clone(), labels, CAPACITY);
    }
    let mut next_id = 1;
    for _ in 0..QUEUED {
        let mut spec = job(&mut rng, &mut next_id);
        spec.group = Some(format!("group{}", spec.id.0 % GROUPS as u64));
        naive.add(&spec);
        sched.add_job(spec).expect("fresh ids, no needs");
    }
    let (mut times, mut naive_times) = (Vec::new(), Vec::new());
    for i in 0..calls {
        let a = i % agents.len();
        let start = Instant::now();
        let lease = sched.lease(&agents[a].0, 0);
        let took = start.elapsed();
        let start = Instant::now();
        let naive_lease = naive.lease(a);
        let naive_took = start.elapsed();
        assert_eq!(
            lease.map(|l| l.job.0),
            naive_lease,
            "both serve the same job"
        );
        // The first calls fill the groups.
        if naive_lease.is_none() {
            times.push(took);
            naive_times.push(naive_took);
        }
    }
    (times, naive_times)
}

/// A small deterministic generator (xorshift), so both implementations see the same jobs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn job(rng: &mut Rng, next_id: &mut u64) -> JobSpec {
    let id = *next_id;
    *next_id += 1;
    let priority = match rng.below(10) {
        0 => Priority::Manual,
        1..=5 => Priority::Required,
        6..=8 => Priority::Advisory,
        _ => Priority::Nightly,
    };
    let group = (rng.below(10) < 3).then(|| format!("group{}", rng.below(GROUPS as u64)));
    let labels: &[&str] = match rng.below(10) {
        0 => &["mac"],
        1 if rng.below(2) == 0 => &["gpu", "linux"],
        1 => &["arm"],
        _ => &[],
    };
    JobSpec {
        id: JobId(id),
        repo: format!("repo{}", id % 7),
        run: id / 12,
        lane: format!("lane{}", id % 40),
        priority,
        needs: Vec::new(),
        group,
        labels: labels.iter().map(|l| (*l).to_owned()).collect(),
        retries: 2,
    }
}

fn agent_labels(i: usize) -> BTreeSet<String> {
    let labels: &[&str] = match i % 10 {
        0 | 1 => &["mac"],
        2 | 3 => &["gpu", "linux"],
        4 => &["arm", "linux"],
        _ => &["linux"],
    };
    labels.iter().map(|l| (*l).to_owned()).collect()
}

/// The obvious implementation: one queue in serving order, walked to the first job that fits.
struct Naive {
    queue: BTreeSet<(Priority, u64)>,
    jobs: HashMap<u64, (Option<String>, BTreeSet<String>)>,
    group_held: HashMap<String, u32>,
    agent_labels: Vec<BTreeSet<String>>,
    agent_held: Vec<u32>,
}

impl Naive {
    fn new(agents: &[(AgentId, BTreeSet<String>)]) -> Naive {
        Naive {
            queue: BTreeSet::new(),
            jobs: HashMap::new(),
            group_held: HashMap::new(),
            agent_labels: agents.iter().map(|(_, l)| l.clone()).collect(),
            agent_held: vec![0; agents.len()],
        }
    }

    fn limit(group: &str) -> u32 {
        let g: u32 = group.trim_start_matches("group").parse().expect("groupN");
        1 + g % 4
    }

    fn add(&mut self, spec: &JobSpec) {
        self.queue.insert((spec.priority, spec.id.0));
        self.jobs
            .insert(spec.id.0, (spec.group.clone(), spec.labels.clone()));
    }

    fn lease(&mut self, agent: usize) -> Option<u64> {
        if self.agent_held[agent] >= CAPACITY {
            return None;
        }
        let &(priority, id) = self.queue.iter().find(|(_, id)| {
            let (group, labels) = &self.jobs[id];
            labels.is_subset(&self.agent_labels[agent])
                && group
                    .as_ref()
                    .is_none_or(|g| self.group_held.get(g).copied().unwrap_or(0) < Naive::limit(g))
        })?;
        self.queue.remove(&(priority, id));
        if let Some(g) = &self.jobs[&id].0 {
            *self.group_held.entry(g.clone()).or_default() += 1;
        }
        self.agent_held[agent] += 1;
        Some(id)
    }

    fn finish(&mut self, agent: usize, id: u64) {
        if let Some((Some(g), _)) = self.jobs.remove(&id) {
            *self.group_held.entry(g).or_default() -= 1;
        }
        self.agent_held[agent] -= 1;
    }
}

/// The open jobs as the database would hold them, to time `restore`.
fn open_jobs(
    sched: &Scheduler,
    specs: &HashMap<JobId, JobSpec>,
    held: &[VecDeque<Lease>],
) -> Vec<RestoredJob> {
    let leases: HashMap<JobId, &Lease> = held.iter().flatten().map(|l| (l.job, l)).collect();
    let mut jobs: Vec<RestoredJob> = specs
        .values()
        .filter_map(|spec| {
            Some(RestoredJob {
                state: sched.state(spec.id)?,
                lease: leases.get(&spec.id).map(|l| (*l).clone()),
                spec: spec.clone(),
                attempts: 0,
                reason: None,
            })
        })
        .collect();
    jobs.sort_by_key(|j| j.spec.id);
    jobs
}

fn time(f: impl FnOnce()) -> Duration {
    let start = Instant::now();
    f();
    start.elapsed()
}

fn sample(runs: usize, mut f: impl FnMut()) -> Vec<Duration> {
    f(); // warm up
    (0..runs).map(|_| time(&mut f)).collect()
}

fn row(name: &str, times: &mut [Duration]) {
    if times.is_empty() {
        println!("{name:<44} {:>10}", "-");
        return;
    }
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
    println!(
        "{name:<44} {:>10} {:>10} {:>10}",
        show(at(0.5)),
        show(at(0.99)),
        show(at(1.0))
    );
}

fn show(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns < 10_000 {
        format!("{ns} ns")
    } else if ns < 10_000_000 {
        format!("{:.1} µs", ns as f64 / 1e3)
    } else {
        format!("{:.1} ms", ns as f64 / 1e6)
    }
}
