//! Run statistics: one line per finished `lanes run` in `ROOT/v1/events.jsonl`, and totals over
//! them and over what the store holds.
//!
//! Each line is appended with a single write to a file opened for appending, so lines from
//! concurrent runs never interleave. A line that does not parse (a write torn by a crash) is
//! skipped when reading.

use crate::error::{CacheError, IoContext};
use crate::scan::fanned_out;
use crate::store::LocalStore;
use serde::{Deserialize, Serialize};
use std::io::{ErrorKind, Write};

/// What one finished run did with the cache.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunEvent {
    /// The run's id.
    pub run_id: String,
    /// When the run finished, in milliseconds since the Unix epoch.
    pub finished_at_ms: u64,
    /// Steps restored from the cache.
    pub hits: u64,
    /// Steps looked up and not found, then run.
    pub misses: u64,
    /// Time the hits saved: the recorded durations of the steps they restored, in milliseconds.
    pub saved_ms: u64,
    /// Time spent running the steps that missed, in milliseconds.
    pub ran_ms: u64,
}

/// What the store holds and what it has done, over every recorded run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheStats {
    /// Action results stored.
    pub actions: u64,
    /// Blobs stored.
    pub blobs: u64,
    /// Bytes of the action results and blobs on disk.
    pub bytes: u64,
    /// Runs recorded.
    pub runs: u64,
    /// Hits over all recorded runs.
    pub hits: u64,
    /// Misses over all recorded runs.
    pub misses: u64,
    /// Milliseconds saved by hits over all recorded runs.
    pub saved_ms: u64,
}

impl LocalStore {
    /// Append `event` to the store's run log.
    pub fn record_run(&self, event: &RunEvent) -> Result<(), CacheError> {
        let mut line = serde_json::to_vec(event).expect("a run event always serializes");
        line.push(b'\n');
        let path = self.root().join("events.jsonl");
        let mut file = std::fs::File::options()
            .append(true)
            .create(true)
            .open(&path)
            .at("open", &path)?;
        file.write_all(&line).at("append to", &path)
    }

    /// Count what the store holds (the `actions`, `blobs` and `bytes` of [`CacheStats`]; the
    /// rest stays 0) without reading the run log.
    pub fn usage(&self) -> Result<CacheStats, CacheError> {
        let mut stats = CacheStats::default();
        for file in fanned_out(&self.root().join("actions"))? {
            stats.actions += 1;
            stats.bytes += file.size;
        }
        for file in fanned_out(&self.root().join("blobs"))? {
            stats.blobs += 1;
            stats.bytes += file.size;
        }
        Ok(stats)
    }

    /// Count what the store holds and add up the recorded runs.
    pub fn stats(&self) -> Result<CacheStats, CacheError> {
        let mut stats = self.usage()?;
        let path = self.root().join("events.jsonl");
        let events = match std::fs::read(&path) {
            Ok(events) => events,
            Err(e) if e.kind() == ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e).at("read", &path),
        };
        for line in events.split(|&b| b == b'\n') {
            let Ok(event) = serde_json::from_slice::<RunEvent>(line) else {
                continue;
            };
            stats.runs += 1;
            stats.hits += event.hits;
            stats.misses += event.misses;
            stats.saved_ms += event.saved_ms;
        }
        Ok(stats)
    }
}

/// A size for people, as `lanes cache stats` and the forge's agents page print it: `512 B`,
/// `3.4 KiB`, `1.2 GiB`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
