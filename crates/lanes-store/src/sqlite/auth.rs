//! Agents and admin tokens: only hashes of tokens are written.

use super::codec::{duplicate, json, ms};
use super::read;
use crate::agent::{AgentRecord, AgentState, NewAgent};
use crate::error::StoreError;
use crate::store::StoreResult;
use crate::token::{generate_token, hash_token};
use jiff::Timestamp;
use sqlx::sqlite::SqliteConnection;

pub(crate) async fn register_agent(
    conn: &mut SqliteConnection,
    agent: &NewAgent,
    token: &str,
    now: Timestamp,
) -> StoreResult<AgentRecord> {
    sqlx::query(
        "INSERT INTO agents (name, labels, capacity, token_hash, state, created_at) \
         VALUES (?, ?, ?, ?, 'online', ?)",
    )
    .bind(&agent.name)
    .bind(json("labels", &agent.labels)?)
    .bind(i64::from(agent.capacity))
    .bind(hash_token(token).as_slice())
    .bind(ms(now))
    .execute(&mut *conn)
    .await
    .map_err(duplicate(|| {
        format!("agent `{}` (or its token)", agent.name)
    }))?;
    read::agent(conn, &agent.name).await
}

pub(crate) async fn agent_heartbeat(
    conn: &mut SqliteConnection,
    name: &str,
    now: Timestamp,
) -> StoreResult<()> {
    let changed = sqlx::query("UPDATE agents SET last_heartbeat = ? WHERE name = ?")
        .bind(ms(now))
        .bind(name)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    if changed == 0 {
        return Err(StoreError::NotFound(format!("agent `{name}`")));
    }
    Ok(())
}

pub(crate) async fn set_agent_state(
    conn: &mut SqliteConnection,
    name: &str,
    state: AgentState,
) -> StoreResult<()> {
    let changed = sqlx::query("UPDATE agents SET state = ? WHERE name = ?")
        .bind(state.as_str())
        .bind(name)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    if changed == 0 {
        return Err(StoreError::NotFound(format!("agent `{name}`")));
    }
    Ok(())
}

pub(crate) async fn ensure_admin_token(
    conn: &mut SqliteConnection,
    now: Timestamp,
) -> StoreResult<Option<String>> {
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM admin_tokens")
        .fetch_one(&mut *conn)
        .await?;
    if count > 0 {
        return Ok(None);
    }
    let token = generate_token()?;
    sqlx::query("INSERT INTO admin_tokens (token_hash, created_at) VALUES (?, ?)")
        .bind(hash_token(&token).as_slice())
        .bind(ms(now))
        .execute(&mut *conn)
        .await?;
    Ok(Some(token))
}

pub(crate) async fn verify_admin_token(
    conn: &mut SqliteConnection,
    token: &str,
) -> StoreResult<bool> {
    let found: Option<i64> = sqlx::query_scalar("SELECT id FROM admin_tokens WHERE token_hash = ?")
        .bind(hash_token(token).as_slice())
        .fetch_optional(&mut *conn)
        .await?;
    Ok(found.is_some())
}
