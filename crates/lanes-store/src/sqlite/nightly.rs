//! Nightly slots: which cron slots of a lane have been claimed. A claim is written with its run by
//! `create_run` (`write.rs`), so a slot runs once; this module answers what the forge asks before
//! it claims the next one.

use super::codec::opt_ts;
use super::read;
use crate::store::StoreResult;
use jiff::Timestamp;
use sqlx::sqlite::SqliteConnection;

/// The newest slot claimed for `lane` of `repo`. The primary key `(repo_id, lane, slot)` makes
/// the `max` one index lookup.
pub(crate) async fn last_nightly_slot(
    conn: &mut SqliteConnection,
    repo: &str,
    lane: &str,
) -> StoreResult<Option<Timestamp>> {
    let repo = read::repo_id(conn, repo).await?;
    let slot: Option<i64> =
        sqlx::query_scalar("SELECT max(slot) FROM nightly_slots WHERE repo_id = ? AND lane = ?")
            .bind(repo.0)
            .bind(lane)
            .fetch_one(&mut *conn)
            .await?;
    opt_ts("nightly_slots.slot", slot)
}
