//! What the forge logs when something ordinary goes wrong: said once, at the right level. Its
//! own test binary, as it installs the process's log subscriber.

use jiff::Timestamp;
use lanes_server::ForgeConfig;
use lanes_store::{SqliteStore, StoreOptions};
use sqlx::Connection;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod common;
use common::{Forge, TestResult};

/// Everything logged, as text.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("poisoned"))?
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("the log")).into_owned()
    }
}

type OneLane = (
    Forge,
    std::path::PathBuf,
    Arc<lanes_server::Forge<SqliteStore>>,
);

/// A forge over a repository with one required lane, on a store whose writes give up after
/// 200 ms of waiting for the lock; the repository (kept alive by the caller) and the database.
async fn one_lane_forge() -> Result<OneLane, Box<dyn std::error::Error>> {
    let f = Forge::new(Timestamp::now()).await?;
    let db = f.dir.path().join("lanes.db");
    let store = SqliteStore::open_with(
        &db,
        &StoreOptions {
            busy_timeout: Duration::from_millis(200),
            ..StoreOptions::default()
        },
    )
    .await?;
    f.commit(&[(
        "lanes.toml",
        "version = 1\n[lane.test]\nclass = \"required\"\nstep = [{ name = \"t\", run = \"true\" }]\n",
    )])?;
    let forge = lanes_server::Forge::open(
        store,
        ForgeConfig {
            data_dir: f.dir.path().to_owned(),
            schedule: lanes_core::schedule::Config::default(),
            public_read: false,
            secrets: Default::default(),
        },
    )
    .await?;
    Ok((f, db, forge))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_written_after_a_lock_timeout_is_scheduled_without_an_error() -> TestResult {
    let log = Captured::default();
    let writer = log.clone();
    tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();
    let (_f, db, forge) = one_lane_forge().await?;

    // Another process holds the write lock past the busy timeout: the push's run cannot be
    // written, and the forge reads the database again at its next step.
    let mut other = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display())).await?;
    sqlx::query("BEGIN IMMEDIATE").execute(&mut other).await?;
    assert!(forge.poll_repo("app").await.is_err());
    sqlx::query("ROLLBACK").execute(&mut other).await?;
    assert_eq!(forge.poll_repo("app").await?, vec![1]);

    forge.agent_online("a", BTreeSet::new(), 1).await;
    let lease = forge.lease("a", Duration::from_secs(5)).await?;
    assert!(lease.is_some(), "the run's job is scheduled");
    let text = log.text();
    assert!(!text.contains("already scheduled"), "{text}");
    assert!(!text.contains("ERROR"), "{text}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_nobody_waits_for_is_logged_with_what_was_lost_and_counted() -> TestResult {
    let log = Captured::default();
    let writer = log.clone();
    // This thread only: the test body's futures run on it.
    let _logging = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish(),
    );
    let (_f, db, forge) = one_lane_forge().await?;
    assert_eq!(forge.poll_repo("app").await?, vec![1]);
    let written = || {
        forge
            .metrics()
            .render(&lanes_server::metrics::Gauges::default())
            .lines()
            .any(|l| l == "lanes_store_write_errors_total 1")
    };
    assert!(!written());

    // The job waits for an agent; one comes online while another process holds the write
    // lock: the job's new waiting reason cannot be written, and nobody waits for that write.
    let mut other = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display())).await?;
    sqlx::query("BEGIN IMMEDIATE").execute(&mut other).await?;
    forge.agent_online("a", BTreeSet::new(), 1).await;
    sqlx::query("ROLLBACK").execute(&mut other).await?;

    let text = log.text();
    assert!(
        text.contains("failed to write the waiting reasons after agent a came online"),
        "{text}"
    );
    assert!(written(), "{}", forge.metrics().render(&Default::default()));
    let lease = forge.lease("a", Duration::from_secs(5)).await?;
    assert!(lease.is_some(), "the forge carries on from the database");
    Ok(())
}
