//! Opening a database: migrations, their idempotence, the refusal of a newer schema.

use crate::common::{Fixture, TestResult, repo, t};
use lanes_store::{SCHEMA_VERSION, Store, StoreError};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection};
use std::path::Path;

async fn raw(path: &Path) -> Result<SqliteConnection, sqlx::Error> {
    SqliteConnectOptions::new().filename(path).connect().await
}

/// The applied migrations and the schema, as text, to compare before and after.
async fn schema(path: &Path) -> Result<Vec<String>, sqlx::Error> {
    let mut conn = raw(path).await?;
    let mut out: Vec<String> =
        sqlx::query_scalar("SELECT version || ' ' || description FROM _sqlx_migrations ORDER BY 1")
            .fetch_all(&mut conn)
            .await?;
    out.extend(
        sqlx::query_scalar::<_, String>(
            "SELECT coalesce(sql, name) FROM sqlite_master ORDER BY name",
        )
        .fetch_all(&mut conn)
        .await?,
    );
    conn.close().await?;
    Ok(out)
}

#[tokio::test]
async fn migrations_apply_to_a_fresh_database_and_reopening_changes_nothing() -> TestResult {
    let fx = Fixture::new()?;
    let store = fx.open().await?;
    store.add_repo(&repo("app"), t(0)).await?;
    store.close().await?;

    let first = schema(&fx.db()).await?;
    assert_eq!(first.first().map(String::as_str), Some("1 initial"));
    assert!(first.iter().any(|s| s.contains("CREATE TABLE jobs")));

    let store = fx.open().await?;
    assert_eq!(
        store.list_repos().await?.len(),
        1,
        "data survives reopening"
    );
    store.close().await?;
    assert_eq!(schema(&fx.db()).await?, first, "reopening applied nothing");

    let mut conn = raw(&fx.db()).await?;
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut conn)
        .await?;
    assert_eq!(mode, "wal");
    Ok(())
}

#[tokio::test]
async fn a_database_from_a_newer_lanes_is_refused_and_left_as_it_was() -> TestResult {
    let fx = Fixture::new()?;
    fx.open().await?.close().await?;
    let newer = SCHEMA_VERSION + 1;
    let mut conn = raw(&fx.db()).await?;
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (?, 'from the future', TRUE, x'00', 0)",
    )
    .bind(newer)
    .execute(&mut conn)
    .await?;
    conn.close().await?;
    let before = schema(&fx.db()).await?;

    let err = fx.open().await.expect_err("a newer schema must be refused");
    assert!(
        matches!(err, StoreError::SchemaTooNew { found, known } if found == newer && known == SCHEMA_VERSION),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("newer than this lanes knows"),
        "{err}"
    );
    assert_eq!(schema(&fx.db()).await?, before);
    Ok(())
}

#[tokio::test]
async fn an_edited_applied_migration_is_refused() -> TestResult {
    let fx = Fixture::new()?;
    fx.open().await?.close().await?;
    let mut conn = raw(&fx.db()).await?;
    sqlx::query("UPDATE _sqlx_migrations SET checksum = x'00' WHERE version = 1")
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    let err = fx
        .open()
        .await
        .expect_err("a changed migration must be refused");
    assert!(matches!(err, StoreError::Migrate(_)), "{err:?}");
    Ok(())
}

#[tokio::test]
async fn after_close_the_database_file_alone_holds_everything() -> TestResult {
    let fx = Fixture::new()?;
    let store = fx.open().await?;
    for i in 0..50 {
        store.add_repo(&repo(&format!("r{i}")), t(i)).await?;
    }
    // Another process has the database open (idle): the store's connections are not the last
    // ones, so SQLite would not fold the log on its own when they close.
    let mut other = raw(&fx.db()).await?;
    sqlx::query("SELECT count(*) FROM repos")
        .execute(&mut other)
        .await?;
    store.close().await?;
    // A copy of the file without its log, as a careless backup makes it.
    let copy = tempfile::tempdir()?;
    let db = copy.path().join("lanes.db");
    std::fs::copy(fx.db(), &db)?;
    let store = lanes_store::SqliteStore::open(&db).await?;
    assert_eq!(store.list_repos().await?.len(), 50);
    store.close().await?;
    other.close().await?;
    Ok(())
}
