//! Opening the database: connection settings, the schema-version check and migrations.

use crate::error::StoreError;
use crate::store::StoreResult;
use sqlx::Connection;
use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use std::borrow::Cow;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::time::Duration;

/// The migrations this binary carries, in order: (version, description, SQL). Versions only
/// grow; an applied migration is never edited (its checksum is checked at open).
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "initial",
        include_str!("../../migrations/0001_initial.sql"),
    ),
    (
        2,
        "step miss",
        include_str!("../../migrations/0002_step_miss.sql"),
    ),
];

/// The newest schema version this binary knows.
pub const SCHEMA_VERSION: i64 = 2;

/// How hard a commit tries to reach the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Durability {
    /// `synchronous = FULL`: the WAL is fsynced at every commit, so a committed (acknowledged)
    /// write survives a power loss as well as a killed process. The default.
    #[default]
    Full,
    /// `synchronous = NORMAL`: survives a killed process, but a power loss can drop the last
    /// commits (including handed-out fencing tokens). For benchmarks and throwaway forges.
    Normal,
}

/// How to open a [`crate::SqliteStore`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreOptions {
    /// Commit durability.
    pub durability: Durability,
    /// Connections for reads (writes use one connection, so they never wait on each other's
    /// locks inside SQLite).
    pub readers: u32,
    /// How long a statement waits for another process's lock before failing.
    pub busy_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            durability: Durability::Full,
            readers: 4,
            busy_timeout: Duration::from_secs(5),
        }
    }
}

/// Opens the writer and reader pools and brings the schema up to date.
pub(crate) async fn open(
    path: &Path,
    options: &StoreOptions,
) -> StoreResult<(SqlitePool, SqlitePool)> {
    let base = SqliteConnectOptions::new()
        .filename(path)
        .foreign_keys(true)
        .busy_timeout(options.busy_timeout);
    let writer_options = base
        .clone()
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(match options.durability {
            Durability::Full => SqliteSynchronous::Full,
            Durability::Normal => SqliteSynchronous::Normal,
        });
    let writer = SqlitePoolOptions::new()
        .max_connections(1)
        // A COMMIT that fails (a full disk) leaves sqlx counting a transaction SQLite already
        // rolled back, and the rollback on drop fails in turn: every later `BEGIN` on that
        // connection would be refused ("begin_with at non-zero transaction depth") until a
        // restart. Such a connection is closed instead; the pool opens a fresh one.
        .after_release(|conn, _| {
            Box::pin(async move {
                if !conn.is_in_transaction() {
                    return Ok(true);
                }
                // The rollback queued on drop runs before this ping: after it, a healthy
                // connection is out of its transaction.
                conn.ping().await?;
                Ok(!conn.is_in_transaction())
            })
        })
        .connect_with(writer_options)
        .await?;
    migrate(&writer).await?;
    let readers = SqlitePoolOptions::new()
        .max_connections(options.readers.max(1))
        .connect_with(base.read_only(true))
        .await?;
    Ok((writer, readers))
}

async fn migrate(writer: &SqlitePool) -> StoreResult<()> {
    let mut conn = writer.acquire().await?;
    if let Some(found) = applied_version(&mut conn).await?
        && found > SCHEMA_VERSION
    {
        return Err(StoreError::SchemaTooNew {
            found,
            known: SCHEMA_VERSION,
        });
    }
    let migrator = Migrator::new(Embedded).await.map_err(StoreError::Migrate)?;
    migrator
        .run(&mut *conn)
        .await
        .map_err(StoreError::Migrate)?;
    Ok(())
}

/// The newest migration recorded in the database, if it has been migrated at all.
async fn applied_version(conn: &mut SqliteConnection) -> StoreResult<Option<i64>> {
    let table: Option<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
    )
    .fetch_optional(&mut *conn)
    .await?;
    if table.is_none() {
        return Ok(None);
    }
    Ok(
        sqlx::query_scalar::<_, Option<i64>>("SELECT max(version) FROM _sqlx_migrations")
            .fetch_one(&mut *conn)
            .await?,
    )
}

/// The migrations compiled into the binary, so a deployed `lanes` needs no files beside it.
#[derive(Debug)]
struct Embedded;

type Resolved = Pin<Box<dyn Future<Output = Result<Vec<Migration>, BoxDynError>> + Send>>;

impl MigrationSource<'static> for Embedded {
    fn resolve(self) -> Resolved {
        Box::pin(async {
            Ok(MIGRATIONS
                .iter()
                .map(|&(version, description, sql)| {
                    Migration::new(
                        version,
                        Cow::Borrowed(description),
                        MigrationType::Simple,
                        Cow::Borrowed(sql),
                        false,
                    )
                })
                .collect())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_version_is_the_last_migration() {
        assert_eq!(MIGRATIONS.last().map(|m| m.0), Some(SCHEMA_VERSION));
        assert!(MIGRATIONS.windows(2).all(|w| w[0].0 < w[1].0));
    }
}
