//! The forge's counters, shown at `/metrics` in Prometheus text format with the gauges read from
//! the scheduler at scrape time.

use lanes_core::job::JobState;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds of the job duration histogram, in seconds.
const BUCKETS: [f64; 10] = [
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];

#[derive(Debug, Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// Counters that only grow.
#[derive(Debug, Default)]
pub struct Metrics {
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    lease_expiries: AtomicU64,
    runs_created: AtomicU64,
    store_write_errors: AtomicU64,
    write_batches: AtomicU64,
    batched_calls: AtomicU64,
    durations: Mutex<BTreeMap<&'static str, Histogram>>,
    http: std::sync::Arc<HttpMetrics>,
}

/// The HTTP server's gauges and counters (crate::http).
#[derive(Debug, Default)]
pub struct HttpMetrics {
    connections: AtomicU64,
    connections_refused: AtomicU64,
    connections_evicted: AtomicU64,
    requests_in_flight: AtomicU64,
    requests_refused: AtomicU64,
    head_timeouts: AtomicU64,
    body_timeouts: AtomicU64,
}

impl HttpMetrics {
    pub(crate) fn connections_open(&self, n: u64) {
        self.connections.store(n, Ordering::Relaxed);
    }

    pub(crate) fn connection_refused(&self) {
        self.connections_refused.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn connection_evicted(&self) {
        self.connections_evicted.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn request_started(&self) {
        self.requests_in_flight.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn request_ended(&self) {
        self.requests_in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn request_refused(&self) {
        self.requests_refused.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn head_timed_out(&self) {
        self.head_timeouts.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn body_timed_out(&self) {
        self.body_timeouts.fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String) {
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# HELP lanes_http_connections Open HTTP connections.\n\
             # TYPE lanes_http_connections gauge\n\
             lanes_http_connections {}\n\
             # HELP lanes_http_connections_refused_total Connections answered 503 busy at accept: \
             every open connection carried a request.\n\
             # TYPE lanes_http_connections_refused_total counter\n\
             lanes_http_connections_refused_total {}\n\
             # HELP lanes_http_connections_evicted_total Idle or half-sent connections closed to \
             make room for a new one.\n\
             # TYPE lanes_http_connections_evicted_total counter\n\
             lanes_http_connections_evicted_total {}\n\
             # HELP lanes_http_requests_in_flight Requests being handled.\n\
             # TYPE lanes_http_requests_in_flight gauge\n\
             lanes_http_requests_in_flight {}\n\
             # HELP lanes_http_requests_refused_total Requests answered 503 busy: max-requests \
             were in flight.\n\
             # TYPE lanes_http_requests_refused_total counter\n\
             lanes_http_requests_refused_total {}\n\
             # HELP lanes_http_timeouts_total Requests answered 408: a head or a body that did not \
             arrive in time.\n\
             # TYPE lanes_http_timeouts_total counter\n\
             lanes_http_timeouts_total{{phase=\"header\"}} {}\n\
             lanes_http_timeouts_total{{phase=\"body\"}} {}",
            n(&self.connections),
            n(&self.connections_refused),
            n(&self.connections_evicted),
            n(&self.requests_in_flight),
            n(&self.requests_refused),
            n(&self.head_timeouts),
            n(&self.body_timeouts),
        );
    }
}

/// The gauges of one scrape.
#[derive(Debug, Default)]
pub struct Gauges {
    /// Queued jobs by waiting reason.
    pub queued: BTreeMap<String, u64>,
    /// Leased or running jobs.
    pub running: u64,
    /// Per group: (holders, limit).
    pub groups: BTreeMap<String, (u64, u32)>,
    /// The data directory's disk is full: no new leases.
    pub disk_full: bool,
}

impl Metrics {
    /// The HTTP server's counters, shared with it.
    pub fn http(&self) -> std::sync::Arc<HttpMetrics> {
        std::sync::Arc::clone(&self.http)
    }

    pub(crate) fn cache_hit(&self) {
        self.cache_hits.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn cache_miss(&self) {
        self.cache_misses.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn lease_expired(&self) {
        self.lease_expiries.fetch_add(1, Ordering::Relaxed);
    }

    /// One transaction wrote the changes of `calls` agent calls (leases and reports).
    pub(crate) fn batch_written(&self, calls: u64) {
        self.write_batches.fetch_add(1, Ordering::Relaxed);
        self.batched_calls.fetch_add(calls, Ordering::Relaxed);
    }

    /// Write transactions for agent calls, and the calls they wrote.
    pub fn batches(&self) -> (u64, u64) {
        (
            self.write_batches.load(Ordering::Relaxed),
            self.batched_calls.load(Ordering::Relaxed),
        )
    }

    pub(crate) fn run_created(&self) {
        self.runs_created.fetch_add(1, Ordering::Relaxed);
    }

    /// A write of the forge's state failed where nobody waits for it: logged, and counted here.
    pub(crate) fn store_write_failed(&self) {
        self.store_write_errors.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn job_finished(&self, state: JobState, ms: u64) {
        let seconds = ms as f64 / 1000.0;
        let mut durations = self
            .durations
            .lock()
            .expect("metrics lock is never poisoned");
        let h = durations.entry(state.as_str()).or_default();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += seconds;
    }

    /// The Prometheus text exposition of these counters and `gauges`.
    pub fn render(&self, gauges: &Gauges) -> String {
        let mut out = format!(
            "# HELP lanes_disk_full 1 while the data directory's disk is full (no new leases).\n\
             # TYPE lanes_disk_full gauge\nlanes_disk_full {}\n",
            u8::from(gauges.disk_full)
        );
        out.push_str(
            "# HELP lanes_queue_jobs Queued jobs by waiting reason.\n\
             # TYPE lanes_queue_jobs gauge\n",
        );
        for (reason, n) in &gauges.queued {
            let _ = writeln!(out, "lanes_queue_jobs{{reason=\"{reason}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP lanes_running_jobs Leased or running jobs.\n# TYPE lanes_running_jobs gauge\n\
             lanes_running_jobs {}",
            gauges.running
        );
        out.push_str(
            "# HELP lanes_group_holders Jobs holding each concurrency group.\n\
             # TYPE lanes_group_holders gauge\n",
        );
        for (group, (holders, _)) in &gauges.groups {
            let _ = writeln!(out, "lanes_group_holders{{group=\"{group}\"}} {holders}");
        }
        out.push_str(
            "# HELP lanes_group_limit The limit of each concurrency group.\n\
             # TYPE lanes_group_limit gauge\n",
        );
        for (group, (_, limit)) in &gauges.groups {
            let _ = writeln!(out, "lanes_group_limit{{group=\"{group}\"}} {limit}");
        }
        let _ = writeln!(
            out,
            "# HELP lanes_cache_steps_total Steps by cache result.\n\
             # TYPE lanes_cache_steps_total counter\n\
             lanes_cache_steps_total{{result=\"hit\"}} {}\n\
             lanes_cache_steps_total{{result=\"miss\"}} {}",
            self.cache_hits.load(Ordering::Relaxed),
            self.cache_misses.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP lanes_lease_expiries_total Leases that expired (agent lost).\n\
             # TYPE lanes_lease_expiries_total counter\n\
             lanes_lease_expiries_total {}",
            self.lease_expiries.load(Ordering::Relaxed)
        );
        let (batches, calls) = self.batches();
        let _ = writeln!(
            out,
            "# HELP lanes_write_batches_total Transactions that wrote agents' leases and reports.\n\
             # TYPE lanes_write_batches_total counter\n\
             lanes_write_batches_total {batches}\n\
             # HELP lanes_batched_calls_total Agent calls (leases and reports) those transactions \
             wrote.\n\
             # TYPE lanes_batched_calls_total counter\n\
             lanes_batched_calls_total {calls}"
        );
        let _ = writeln!(
            out,
            "# HELP lanes_runs_created_total Runs created.\n\
             # TYPE lanes_runs_created_total counter\n\
             lanes_runs_created_total {}",
            self.runs_created.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP lanes_store_write_errors_total Writes of the forge's state that failed with \
             no caller to tell (each is in the log).\n\
             # TYPE lanes_store_write_errors_total counter\n\
             lanes_store_write_errors_total {}",
            self.store_write_errors.load(Ordering::Relaxed)
        );
        self.http.render(&mut out);
        out.push_str(
            "# HELP lanes_job_duration_seconds Job run time, started to finished, by outcome.\n\
             # TYPE lanes_job_duration_seconds histogram\n",
        );
        let durations = self
            .durations
            .lock()
            .expect("metrics lock is never poisoned");
        for (status, h) in durations.iter() {
            for (bound, n) in BUCKETS.iter().zip(h.counts) {
                let _ = writeln!(
                    out,
                    "lanes_job_duration_seconds_bucket{{status=\"{status}\",le=\"{bound}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "lanes_job_duration_seconds_bucket{{status=\"{status}\",le=\"+Inf\"}} {}\n\
                 lanes_job_duration_seconds_sum{{status=\"{status}\"}} {}\n\
                 lanes_job_duration_seconds_count{{status=\"{status}\"}} {}",
                h.count, h.sum, h.count
            );
        }
        out
    }
}
