//! What an agent tells the forge about its host: the scopes it has served (their cache mounts,
//! and which of its jobs uses each scope now) and how much its step cache holds. The forge's
//! agents page shows it.
//!
//! The agent sends a [`HostStatus`] when it starts, within [`MIN_GAP`] of a job starting or
//! ending, and every [`EVERY`] otherwise. Which scopes are in use comes from the agent's own
//! jobs ([`Activity`]), not from probing the mounts' locks (a probe would make a lane that takes
//! the lock at that moment wait, and say so in its log), so a `lanes run` on the same host is
//! not counted. The cache is measured by walking its store: every [`EVERY`], and [`REMEASURE`]
//! after the last measurement when jobs started or ended since.

use crate::link::Link;
use lanes_cache::LocalStore;
use lanes_exec::slot::NO_SCOPE;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// A status goes out at least this often.
pub const EVERY: Duration = Duration::from_secs(60);

/// Two statuses are at least this far apart: a burst of jobs ending sends one.
pub const MIN_GAP: Duration = Duration::from_secs(1);

/// After jobs start or end, the cache is measured again once its last measurement is this old
/// (otherwise every [`EVERY`]): a walk of a large cache is not redone for every job.
pub const REMEASURE: Duration = Duration::from_secs(10);

pub use lanes_api::agent::{CacheUsage, HostStatus, ScopeStatus};

/// One running attempt of a job, as [`Activity`] counts it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunningJob {
    /// Its lane's scope, or [`NO_SCOPE`].
    pub scope: String,
    /// Its lane's cache mounts (reported before the lane has taken and created them).
    pub mounts: Vec<String>,
}

/// The agent's running jobs, by job and lease token (a requeued job may come back to the same
/// agent while its old attempt stops), shared by its workers: what [`HostStatus`]'s `jobs` says.
/// A change wakes the status reporter.
#[derive(Clone, Debug)]
pub struct Activity {
    jobs: Arc<Mutex<BTreeMap<(u64, u64), RunningJob>>>,
    changed: Arc<watch::Sender<u64>>,
}

impl Default for Activity {
    fn default() -> Activity {
        Activity {
            jobs: Arc::default(),
            changed: Arc::new(watch::Sender::new(0)),
        }
    }
}

/// A job counted in [`Activity`] until this is dropped.
#[derive(Debug)]
#[must_use = "the job counts only while this is kept"]
pub struct Running {
    activity: Activity,
    attempt: (u64, u64),
}

impl Drop for Running {
    fn drop(&mut self) {
        self.activity.lock().remove(&self.attempt);
        self.activity.changed.send_modify(|n| *n += 1);
    }
}

impl Activity {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(u64, u64), RunningJob>> {
        self.jobs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Attempt `token` of `job` runs a lane of `scope` (`None`: no scope) with `mounts` until
    /// the returned guard is dropped.
    pub fn running(&self, job: u64, token: u64, scope: Option<&str>, mounts: &[String]) -> Running {
        self.lock().insert(
            (job, token),
            RunningJob {
                scope: scope.unwrap_or(NO_SCOPE).to_owned(),
                mounts: mounts.to_vec(),
            },
        );
        self.changed.send_modify(|n| *n += 1);
        Running {
            activity: self.clone(),
            attempt: (job, token),
        }
    }

    /// Each running attempt, by job and token.
    pub fn jobs(&self) -> BTreeMap<(u64, u64), RunningJob> {
        self.lock().clone()
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

/// The scopes under `cache_root/mounts/` with their mounts, and the scopes and mounts of `jobs`.
/// Blocking.
pub fn scopes(cache_root: &Path, jobs: &BTreeMap<(u64, u64), RunningJob>) -> Vec<ScopeStatus> {
    let mut scopes: BTreeMap<String, ScopeStatus> = BTreeMap::new();
    let dirs = |path: &Path| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(path)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort();
        names
    };
    let mounts = cache_root.join("mounts");
    for scope in dirs(&mounts) {
        let held = dirs(&mounts.join(&scope));
        scopes.insert(
            scope.clone(),
            ScopeStatus {
                name: scope,
                mounts: held,
                jobs: Vec::new(),
            },
        );
    }
    for (&(job, _), running) in jobs {
        let scope = scopes
            .entry(running.scope.clone())
            .or_insert_with(|| ScopeStatus {
                name: running.scope.clone(),
                ..ScopeStatus::default()
            });
        if !scope.jobs.contains(&job) {
            scope.jobs.push(job);
        }
        for mount in &running.mounts {
            if !scope.mounts.contains(mount) {
                scope.mounts.push(mount.clone());
            }
        }
    }
    let mut scopes: Vec<ScopeStatus> = scopes.into_values().collect();
    for scope in &mut scopes {
        scope.mounts.sort();
    }
    scopes
}

/// What `store` holds, or `None` (logged) when it cannot be read (the reporter then keeps the
/// last size it found). Blocking: walks the store.
pub fn cache_usage(store: &LocalStore) -> Option<CacheUsage> {
    match store.usage() {
        Ok(usage) => Some(CacheUsage {
            actions: usage.actions,
            blobs: usage.blobs,
            bytes: usage.bytes,
        }),
        Err(e) => {
            tracing::warn!(error = %e, "cannot measure the step cache");
            None
        }
    }
}

/// Sends the host's status through `link` now, after each change of `activity` (at most every
/// [`MIN_GAP`]), when the cache is measured again after a change, and every [`EVERY`], until
/// `stop`. A status the forge could not take is replaced by the next one; nothing else depends
/// on it.
pub(crate) async fn report_status<L: Link>(
    link: &L,
    cache_root: &Path,
    store: &LocalStore,
    activity: &Activity,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    let mut changes = activity.subscribe();
    let mut cache: Option<(Instant, Option<CacheUsage>)> = None;
    // Jobs started or ended since the cache was last measured.
    let mut dirty = false;
    loop {
        // Seen before the jobs are read: a change from here on wakes the next round.
        changes.borrow_and_update();
        let now = Instant::now();
        let age = cache.map(|(at, _)| now.duration_since(at));
        let measure = age.is_none_or(|age| age >= EVERY || (dirty && age >= REMEASURE));
        let (root, store_, jobs) = (cache_root.to_owned(), store.clone(), activity.jobs());
        let measured = tokio::task::spawn_blocking(move || {
            let scopes = scopes(&root, &jobs);
            (scopes, measure.then(|| cache_usage(&store_)))
        })
        .await;
        let Ok((scopes, usage)) = measured else {
            return;
        };
        if let Some(usage) = usage {
            // A walk that failed (a file removed under it) keeps the last size it found.
            let usage = usage.or(cache.and_then(|(_, last)| last));
            cache = Some((now, usage));
            dirty = false;
        }
        let status = HostStatus {
            platform: crate::host::platform(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            scopes,
            cache: cache.and_then(|(_, usage)| usage),
        };
        if let Err(e) = link.host_status(status).await {
            tracing::debug!(error = %e, "the forge did not take the host status");
        }
        tokio::select! {
            () = tokio::time::sleep(MIN_GAP) => {}
            () = &mut stop => return,
        }
        // A change while the gap ran is seen at once below.
        let since = cache.map_or(Duration::ZERO, |(at, _)| at.elapsed());
        let wake = if dirty {
            REMEASURE.saturating_sub(since)
        } else {
            EVERY.saturating_sub(MIN_GAP)
        };
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    return;
                }
                dirty = true;
            }
            () = tokio::time::sleep(wake) => {}
            () = &mut stop => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_come_from_the_mount_directories_and_the_running_jobs() {
        let root = tempfile::tempdir().expect("tempdir");
        let mounts = root.path().join("mounts");
        std::fs::create_dir_all(mounts.join("compile/target")).expect("mkdir");
        std::fs::create_dir_all(mounts.join("compile/npm")).expect("mkdir");
        std::fs::create_dir_all(mounts.join(NO_SCOPE).join("target")).expect("mkdir");
        // A lock file is not a mount.
        std::fs::write(mounts.join("compile/target.lock"), "").expect("write");
        let activity = Activity::default();
        let compile = activity.running(7, 1, Some("compile"), &[]);
        let _runtime = activity.running(9, 2, Some("runtime"), &["devices".to_owned()]);
        // A second attempt of job 9 (requeued to this agent while the first stops) counts once
        // and outlives the first.
        let first_attempt = activity.running(9, 1, Some("runtime"), &["devices".to_owned()]);
        drop(first_attempt);
        let got = scopes(root.path(), &activity.jobs());
        assert_eq!(
            got,
            [
                ScopeStatus {
                    name: NO_SCOPE.into(),
                    mounts: vec!["target".into()],
                    jobs: vec![],
                },
                ScopeStatus {
                    name: "compile".into(),
                    mounts: vec!["npm".into(), "target".into()],
                    jobs: vec![7],
                },
                ScopeStatus {
                    name: "runtime".into(),
                    mounts: vec!["devices".into()],
                    jobs: vec![9],
                },
            ]
        );
        drop(compile);
        let got = scopes(root.path(), &activity.jobs());
        assert!(got[1].jobs.is_empty(), "an ended job leaves its scope");
    }
}
