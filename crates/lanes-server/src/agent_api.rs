//! The agent endpoints: the [`lanes_agent::Link`] interface over HTTP, for remote agents.
//!
//! An admin registers an agent (`POST /api/v1/agents`) and gets its token once; the agent sends
//! that token on every call. Each report about a job also carries the lease's fencing token, and
//! only the agent holding the lease may report: a report from another agent, with a stale token
//! or after the lease expired is `409 stale-token`, and the agent must stop the job.

use crate::api::{ApiError, detached};
use crate::error::ForgeError;
use crate::forge::{Forge, LOCAL_AGENT};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use lanes_agent::{FinishReport, HostStatus, StepReport};
use lanes_store::{AgentRecord, NewAgent, Store, StoreError};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

type Shared<S> = State<Arc<Forge<S>>>;

/// The longest a lease request waits for a job.
const MAX_WAIT: Duration = Duration::from_secs(60);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Registration {
    name: String,
    #[serde(default)]
    labels: Vec<String>,
    #[serde(default = "one")]
    capacity: u32,
}

fn one() -> u32 {
    1
}

/// `POST /api/v1/agents` (admin): registers an agent and returns its token, once.
pub(crate) async fn register<S: Store + 'static>(
    State(forge): Shared<S>,
    axum::Json(body): axum::Json<Registration>,
) -> Result<Response, ApiError> {
    let valid = !body.name.is_empty()
        && body
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !valid || body.name == LOCAL_AGENT {
        return Err(ForgeError::BadRequest(format!(
            "`{}` cannot name an agent: use letters, digits, `-`, `_` or `.`; `{LOCAL_AGENT}` \
             is the built-in agent's",
            body.name
        ))
        .into());
    }
    if body.capacity == 0 {
        return Err(ForgeError::BadRequest("an agent's capacity is at least 1".into()).into());
    }
    let token = lanes_store::token::generate_token().map_err(ForgeError::from)?;
    let agent = NewAgent {
        name: body.name,
        labels: body.labels,
        capacity: body.capacity,
    };
    let record = forge
        .store()
        .register_agent(&agent, &token, Timestamp::now())
        .await
        .map_err(|e| match e {
            StoreError::Duplicate(_) => {
                ForgeError::Conflict(format!("an agent called `{}` exists", agent.name))
            }
            e => e.into(),
        })?;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({
            "name": record.name,
            "labels": record.labels,
            "capacity": record.capacity,
            "token": token,
        })),
    )
        .into_response())
}

/// The agent whose token the request carries.
async fn caller<S: Store + 'static>(
    forge: &Forge<S>,
    headers: &HeaderMap,
) -> Result<AgentRecord, ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "agent endpoints need the agent's token: `Authorization: Bearer <token>`",
            )
        })?;
    forge
        .store()
        .verify_agent_token(token)
        .await
        .map_err(ForgeError::from)?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "the token is not a registered agent's",
            )
        })
}

#[derive(Debug, Deserialize)]
pub(crate) struct LeaseQuery {
    wait_ms: Option<u64>,
}

/// `POST /api/v1/agent/lease?wait_ms=`: the next job for the calling agent, or 204 after the
/// wait. Connecting counts as coming online.
pub(crate) async fn lease<S: Store + 'static>(
    State(forge): Shared<S>,
    headers: HeaderMap,
    Query(q): Query<LeaseQuery>,
) -> Result<Response, ApiError> {
    let agent = caller(&forge, &headers).await?;
    forge.agent_connected(&agent).await;
    let wait = Duration::from_millis(q.wait_ms.unwrap_or(30_000)).min(MAX_WAIT);
    let f = Arc::clone(&forge);
    let name = agent.name.clone();
    match detached(async move { f.lease(&name, wait).await }).await? {
        Some(assignment) => Ok(axum::Json(assignment).into_response()),
        None => Ok(StatusCode::NO_CONTENT.into_response()),
    }
}

/// `POST /api/v1/agent/status`: the calling agent's host status (its scopes and cache), kept
/// for the agents page. Counts as a sign of life, like a lease call.
pub(crate) async fn status<S: Store + 'static>(
    State(forge): Shared<S>,
    headers: HeaderMap,
    axum::Json(body): axum::Json<HostStatus>,
) -> Result<StatusCode, ApiError> {
    let agent = caller(&forge, &headers).await?;
    forge.agent_connected(&agent).await;
    forge.set_host_status(&agent.name, body);
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Fenced {
    token: u64,
}

/// Refuses a report about `job` from an agent that does not hold its lease.
async fn holder<S: Store + 'static>(
    forge: &Forge<S>,
    headers: &HeaderMap,
    job: u64,
) -> Result<AgentRecord, ApiError> {
    let agent = caller(forge, headers).await?;
    if forge.holder(job).await.as_deref() != Some(agent.name.as_str()) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "stale-token",
            format!("agent `{}` does not hold job {job}: stop it", agent.name),
        ));
    }
    let beat = forge
        .store()
        .agent_heartbeat(&agent.name, Timestamp::now())
        .await;
    forge.unwritten(beat.map_err(Into::into), || {
        format!("the heartbeat of agent {}", agent.name)
    });
    forge.agent_connected(&agent).await;
    Ok(agent)
}

/// `POST /api/v1/agent/jobs/{id}/started`.
pub(crate) async fn started<S: Store + 'static>(
    State(forge): Shared<S>,
    headers: HeaderMap,
    Path(job): Path<u64>,
    axum::Json(body): axum::Json<Fenced>,
) -> Result<StatusCode, ApiError> {
    holder(&forge, &headers, job).await?;
    detached(async move { forge.started(job, body.token).await }).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v1/agent/jobs/{id}/heartbeat`.
pub(crate) async fn heartbeat<S: Store + 'static>(
    State(forge): Shared<S>,
    headers: HeaderMap,
    Path(job): Path<u64>,
    axum::Json(body): axum::Json<Fenced>,
) -> Result<StatusCode, ApiError> {
    holder(&forge, &headers, job).await?;
    detached(async move { forge.heartbeat(job, body.token).await }).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SecretsBody {
    token: u64,
    names: Vec<String>,
}

/// `POST /api/v1/agent/jobs/{id}/secrets`: the secrets the job's lane asks for, each as
/// `{"value": ...}` or `{"refused": why}` (docs/security.md).
pub(crate) async fn secrets<S: Store + 'static>(
    State(forge): Shared<S>,
    headers: HeaderMap,
    Path(job): Path<u64>,
    axum::Json(body): axum::Json<SecretsBody>,
) -> Result<Response, ApiError> {
    holder(&forge, &headers, job).await?;
    let granted =
        detached(async move { forge.secrets(job, body.token, &body.names).await }).await?;
    let out: serde_json::Map<String, serde_json::Value> = granted
        .into_iter()
        .map(|(name, answer)| {
            let answer = match answer {
                Ok(value) => json!({ "value": value }),
                Err(why) => json!({ "refused": why }),
            };
            (name, answer)
        })
        .collect();
    // Never kept by a proxy or a browser.
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(json!({ "secrets": out })),
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
pub(crate) struct LogQuery {
    token: u64,
    offset: u64,
}

/// `POST /api/v1/agent/jobs/{id}/log?token=&offset=` with the bytes as the body.
pub(crate) async fn log<S: Store + 'static>(
    State(forge): Shared<S>,
    headers: HeaderMap,
    Path(job): Path<u64>,
    Query(q): Query<LogQuery>,
    body: Bytes,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    holder(&forge, &headers, job).await?;
    let bytes = body.to_vec();
    let acknowledged =
        detached(async move { forge.append_log(job, q.token, q.offset, bytes).await }).await?;
    Ok(axum::Json(json!({"acknowledged": acknowledged})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StepBody {
    token: u64,
    step: StepReport,
}

/// `POST /api/v1/agent/jobs/{id}/steps`.
pub(crate) async fn step<S: Store + 'static>(
    State(forge): Shared<S>,
    headers: HeaderMap,
    Path(job): Path<u64>,
    axum::Json(body): axum::Json<StepBody>,
) -> Result<StatusCode, ApiError> {
    holder(&forge, &headers, job).await?;
    detached(async move { forge.step(job, body.token, body.step).await }).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FinishBody {
    token: u64,
    finish: FinishReport,
}

/// `POST /api/v1/agent/jobs/{id}/finish`.
pub(crate) async fn finish<S: Store + 'static>(
    State(forge): Shared<S>,
    headers: HeaderMap,
    Path(job): Path<u64>,
    axum::Json(body): axum::Json<FinishBody>,
) -> Result<StatusCode, ApiError> {
    holder(&forge, &headers, job).await?;
    detached(async move { forge.finish(job, body.token, body.finish).await }).await?;
    Ok(StatusCode::NO_CONTENT)
}
