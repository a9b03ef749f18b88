//! The agent endpoints: the [`lanes_agent::Link`] interface over HTTP, for remote agents.
//!
//! An admin registers an agent (`POST /api/v1/agents`) and gets its token once; the agent sends
//! that token on every call. Each report about a job also carries the lease's fencing token, and
//! only the agent holding the lease may report: a report from another agent, with a stale token
//! or after the lease expired is `409 stale-token`, and the agent must stop the job.

use crate::api::JobPath;
use crate::api::{ApiError, detached};
use crate::error::ForgeError;
use crate::forge::{Forge, LOCAL_AGENT};
use crate::input;
use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use lanes_agent::HostStatus;
use lanes_api::agent::{
    Fenced, FinishBody, LogAck, Registered, Registration, SecretAnswer, SecretsAnswer,
    SecretsRequest, StepBody,
};
use lanes_store::{AgentRecord, NewAgent, Store, StoreError};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

type Shared<S> = State<Arc<Forge<S>>>;

/// The longest a lease request waits for a job.
const MAX_WAIT: Duration = Duration::from_secs(60);

/// A JSON request body read as `T`. A number written with a fraction of zero (`4.0`) is the
/// integer it names, as JSON Schema counts it (the OpenAPI document says `integer`); anything
/// else that does not read as `T` is `400 bad-request`, saying what.
pub(crate) struct JsonBody<T>(pub(crate) T);

impl<T, St> axum::extract::FromRequest<St> for JsonBody<T>
where
    T: serde::de::DeserializeOwned,
    St: Send + Sync,
{
    type Rejection = Response;

    async fn from_request(request: axum::extract::Request, state: &St) -> Result<Self, Response> {
        let axum::Json(mut value) = axum::Json::<serde_json::Value>::from_request(request, state)
            .await
            .map_err(IntoResponse::into_response)?;
        integral_numbers(&mut value);
        T::deserialize(value).map(JsonBody).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad-request",
                format!("the body is not the JSON this route takes: {e}"),
            )
            .into_response()
        })
    }
}

/// Rewrites every number with a zero fraction that fits an integer (`4.0`) as that integer.
fn integral_numbers(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Number(n) if n.is_f64() => {
            let Some(f) = n.as_f64() else { return };
            if f.fract() != 0.0 {
                return;
            }
            // Exactly representable integers only: beyond 2^63 an f64 is not one integer.
            if (0.0..9_223_372_036_854_775_807.0).contains(&f) {
                *value = serde_json::Value::from(f as u64);
            } else if (-9_223_372_036_854_775_808.0..0.0).contains(&f) {
                *value = serde_json::Value::from(f as i64);
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(integral_numbers),
        serde_json::Value::Object(fields) => fields.values_mut().for_each(integral_numbers),
        _ => {}
    }
}

/// `POST /api/v1/agents` (admin): registers an agent and returns its token, once.
pub(crate) async fn register<S: Store + 'static>(
    State(forge): Shared<S>,
    JsonBody(body): JsonBody<Registration>,
) -> Result<Response, ApiError> {
    input::text("name", &body.name, input::MAX_NAME)?;
    input::list("labels", &body.labels, input::MAX_LABELS, input::MAX_NAME)?;
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
        axum::Json(Registered {
            name: record.name,
            labels: record.labels,
            capacity: record.capacity,
            token,
        }),
    )
        .into_response())
}

/// Authenticates a call to an agent endpoint before anything reads its body: the agent whose
/// token it carries goes into the request's extensions, for [`Caller`].
pub(crate) async fn authenticate<S: Store + 'static>(
    forge: Arc<Forge<S>>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Some(token) = crate::ui::session::bearer(request.headers()) else {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "agent endpoints need the agent's token: `Authorization: Bearer <token>`",
        )
        .into_response();
    };
    match forge.store().verify_agent_token(token).await {
        Ok(Some(agent)) => {
            request.extensions_mut().insert(Caller(agent));
            next.run(request).await
        }
        Ok(None) => ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "the token is not a registered agent's",
        )
        .into_response(),
        Err(e) => ApiError::from(ForgeError::from(e)).into_response(),
    }
}

/// The agent that makes a call, as [`authenticate`] found it.
#[derive(Clone, Debug)]
pub(crate) struct Caller(AgentRecord);

#[derive(Debug, Deserialize)]
pub(crate) struct LeaseQuery {
    wait_ms: Option<u64>,
}

/// `POST /api/v1/agent/lease?wait_ms=`: the next job for the calling agent, or 204 after the
/// wait. Connecting counts as coming online.
pub(crate) async fn lease<S: Store + 'static>(
    State(forge): Shared<S>,
    Extension(Caller(agent)): Extension<Caller>,
    Query(q): Query<LeaseQuery>,
) -> Result<Response, ApiError> {
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
    Extension(Caller(agent)): Extension<Caller>,
    JsonBody(body): JsonBody<HostStatus>,
) -> Result<StatusCode, ApiError> {
    input::host_status(&body)?;
    forge.agent_connected(&agent).await;
    forge.set_host_status(&agent.name, body);
    Ok(StatusCode::NO_CONTENT)
}

/// Refuses a report about `job` from an agent that does not hold its lease.
async fn holder<S: Store + 'static>(
    forge: &Forge<S>,
    agent: AgentRecord,
    job: u64,
) -> Result<AgentRecord, ApiError> {
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
    Extension(Caller(agent)): Extension<Caller>,
    job: JobPath,
    JsonBody(body): JsonBody<Fenced>,
) -> Result<StatusCode, ApiError> {
    let job = job.positive();
    holder(&forge, agent, job).await?;
    detached(async move { forge.started(job, body.token).await }).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v1/agent/jobs/{id}/heartbeat`.
pub(crate) async fn heartbeat<S: Store + 'static>(
    State(forge): Shared<S>,
    Extension(Caller(agent)): Extension<Caller>,
    job: JobPath,
    JsonBody(body): JsonBody<Fenced>,
) -> Result<StatusCode, ApiError> {
    let job = job.positive();
    holder(&forge, agent, job).await?;
    detached(async move { forge.heartbeat(job, body.token).await }).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v1/agent/jobs/{id}/secrets`: the secrets the job's lane asks for, each as
/// `{"value": ...}` or `{"refused": why}` (docs/security.md).
pub(crate) async fn secrets<S: Store + 'static>(
    State(forge): Shared<S>,
    Extension(Caller(agent)): Extension<Caller>,
    job: JobPath,
    JsonBody(body): JsonBody<SecretsRequest>,
) -> Result<Response, ApiError> {
    let job = job.positive();
    input::secret_names(&body.names)?;
    holder(&forge, agent, job).await?;
    let granted =
        detached(async move { forge.secrets(job, body.token, &body.names).await }).await?;
    let secrets = granted
        .into_iter()
        .map(|(name, answer)| {
            let answer = match answer {
                Ok(value) => SecretAnswer::Value(value),
                Err(why) => SecretAnswer::Refused(why),
            };
            (name, answer)
        })
        .collect();
    // Never kept by a proxy or a browser.
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(SecretsAnswer { secrets }),
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
    Extension(Caller(agent)): Extension<Caller>,
    job: JobPath,
    Query(q): Query<LogQuery>,
    body: Bytes,
) -> Result<axum::Json<LogAck>, ApiError> {
    let job = job.positive();
    holder(&forge, agent, job).await?;
    let bytes = body.to_vec();
    let acknowledged =
        detached(async move { forge.append_log(job, q.token, q.offset, bytes).await }).await?;
    Ok(axum::Json(LogAck { acknowledged }))
}

/// `POST /api/v1/agent/jobs/{id}/steps`.
pub(crate) async fn step<S: Store + 'static>(
    State(forge): Shared<S>,
    Extension(Caller(agent)): Extension<Caller>,
    job: JobPath,
    JsonBody(body): JsonBody<StepBody>,
) -> Result<StatusCode, ApiError> {
    let job = job.positive();
    input::step(&body.step, "step")?;
    holder(&forge, agent, job).await?;
    detached(async move { forge.step(job, body.token, body.step).await }).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v1/agent/jobs/{id}/finish`.
pub(crate) async fn finish<S: Store + 'static>(
    State(forge): Shared<S>,
    Extension(Caller(agent)): Extension<Caller>,
    job: JobPath,
    JsonBody(body): JsonBody<FinishBody>,
) -> Result<StatusCode, ApiError> {
    let job = job.positive();
    input::finish(&body.finish)?;
    holder(&forge, agent, job).await?;
    detached(async move { forge.finish(job, body.token, body.finish).await }).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_number_with_a_zero_fraction_reads_as_the_integer_it_names() {
        let mut value = serde_json::json!({"token": 4.0, "steps": [{"index": 2.0}], "x": 1.5});
        integral_numbers(&mut value);
        assert_eq!(
            value,
            serde_json::json!({"token": 4, "steps": [{"index": 2}], "x": 1.5})
        );
        let fenced: Fenced = serde_json::from_value(value.clone()["token"].take())
            .map(|token| Fenced { token })
            .expect("an integer");
        assert_eq!(fenced.token, 4);
        let mut huge = serde_json::json!(3.0e24);
        integral_numbers(&mut huge);
        assert!(huge.is_f64(), "too large for an integer: stays what it was");
    }
}
