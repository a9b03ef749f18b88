//! The JSON API (`/api/v1`, reference in docs/api.md) and `/metrics`, over axum.
//!
//! Handlers translate between HTTP and [`Forge`] calls; they decide nothing. [`ROUTES`] is the
//! one list of routes: the router is built from it and a test checks the OpenAPI document
//! (`openapi.json`, served at `/api/v1/openapi.json`) lists exactly these.

use crate::agent_api;
use crate::error::ForgeError;
use crate::forge::{Forge, JobEvent};
use crate::metrics::Gauges;
use crate::status::branch_status_of;
use axum::Router;
use axum::extract::{FromRequestParts, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::stream::{self, Stream};

use crate::status::BranchStatus;
use crate::wire;
use axum::Json;
use lanes_api::events::{LogChunk, LogEnd, StreamError};
use lanes_api::forge as api;
use lanes_store::{JobId, RunDetail, RunFilter, RunStatus, RunTrigger, Store};
use serde::Deserialize;
#[cfg(test)]
use serde_json::Value;
use std::collections::HashMap;
use std::convert::Infallible;
use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;
use std::time::Duration;

/// The OpenAPI document of [`ROUTES`].
pub const OPENAPI: &str = include_str!("openapi.json");

/// Every route: method and path (axum syntax; `{*branch}` takes the rest of the path).
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/api/v1/repos"),
    ("GET", "/api/v1/repos/{repo}/branches"),
    ("GET", "/api/v1/repos/{repo}/branches/{*branch}"),
    ("POST", "/api/v1/repos/{repo}/refs-changed"),
    ("GET", "/api/v1/repos/{repo}/runs"),
    ("GET", "/api/v1/repos/{repo}/runs/{number}"),
    ("POST", "/api/v1/repos/{repo}/runs/{number}/cancel"),
    ("POST", "/api/v1/repos/{repo}/runs/{number}/rerun-failed"),
    ("GET", "/api/v1/jobs/{id}"),
    ("GET", "/api/v1/jobs/{id}/log"),
    ("GET", "/api/v1/jobs/{id}/log/stream"),
    ("POST", "/api/v1/jobs/{id}/cancel"),
    ("POST", "/api/v1/jobs/{id}/rerun"),
    ("POST", "/api/v1/jobs/{id}/requeue"),
    ("GET", "/api/v1/groups"),
    ("GET", "/api/v1/agents"),
    ("POST", "/api/v1/agents"),
    ("POST", "/api/v1/agent/lease"),
    ("POST", "/api/v1/agent/status"),
    ("POST", "/api/v1/agent/jobs/{id}/started"),
    ("POST", "/api/v1/agent/jobs/{id}/heartbeat"),
    ("POST", "/api/v1/agent/jobs/{id}/log"),
    ("POST", "/api/v1/agent/jobs/{id}/secrets"),
    ("POST", "/api/v1/agent/jobs/{id}/steps"),
    ("POST", "/api/v1/agent/jobs/{id}/finish"),
    ("GET", "/api/v1/openapi.json"),
    ("GET", "/api/v1/health"),
    ("GET", "/metrics"),
];

/// Most bytes one log request returns.
const LOG_PAGE: usize = 1 << 20;

type Shared<S> = State<Arc<Forge<S>>>;

/// An API error: JSON with a stable code.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    pub(crate) fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<String>,
    ) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }
}

impl From<ForgeError> for ApiError {
    fn from(e: ForgeError) -> ApiError {
        let (status, message) = e.reply();
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        ApiError::new(status, e.code(), message)
    }
}

impl From<lanes_store::StoreError> for ApiError {
    fn from(e: lanes_store::StoreError) -> ApiError {
        ForgeError::from(e).into()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = api::Error {
            error: api::ErrorDetail {
                code: serde_json::from_value(serde_json::Value::from(self.code))
                    .unwrap_or_else(|_| lanes_api::Lenient::Unknown(self.code.into())),
                message: self.message,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// A path segment that must be a positive integer (a job's id, a run's number): the same `400`
/// on every route, whatever the segment holds; one that parses but names nothing is `404`.
fn positive(what: &str, text: &str) -> Result<i64, ApiError> {
    match text.parse::<i64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad-request",
            format!("`{text}` is not a {what}: {what}s are positive integers"),
        )),
    }
}

async fn path_params(
    parts: &mut axum::http::request::Parts,
) -> Result<HashMap<String, String>, ApiError> {
    match Path::<HashMap<String, String>>::from_request_parts(parts, &()).await {
        Ok(Path(params)) => Ok(params),
        Err(e) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad-request",
            e.body_text(),
        )),
    }
}

/// A job's id in a path (`{id}`), on the API's and the agents' routes alike.
#[derive(Clone, Copy, Debug)]
pub(crate) struct JobPath(pub(crate) i64);

impl JobPath {
    /// The id as the forge's agent calls take it.
    pub(crate) fn positive(self) -> u64 {
        self.0.unsigned_abs()
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for JobPath {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<JobPath, ApiError> {
        let params = path_params(parts).await?;
        let id = params.get("id").map_or("", String::as_str);
        Ok(JobPath(positive("job id", id)?))
    }
}

/// A run in a path (`{repo}/runs/{number}`).
#[derive(Clone, Debug)]
pub(crate) struct RunPath {
    pub(crate) repo: String,
    pub(crate) number: u64,
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for RunPath {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<RunPath, ApiError> {
        let mut params = path_params(parts).await?;
        let number = params.get("number").map_or("", String::as_str);
        let number = positive("run number", number)?.unsigned_abs();
        Ok(RunPath {
            repo: params.remove("repo").unwrap_or_default(),
            number,
        })
    }
}

/// Runs a forge operation to its end even if the client goes away: hyper drops a handler's
/// future when its connection closes, and an operation stopped between the scheduler's decision
/// and its write would leave the two apart.
pub(crate) async fn detached<T: Send + 'static>(
    operation: impl std::future::Future<Output = Result<T, ForgeError>> + Send + 'static,
) -> ApiResult<T> {
    match tokio::spawn(operation).await {
        Ok(result) => Ok(result?),
        Err(e) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("the operation failed: {e}"),
        )),
    }
}

/// The router of [`ROUTES`] over `forge`.
pub fn router<S: Store + 'static>(forge: Arc<Forge<S>>) -> Router {
    let mut router: Router<Arc<Forge<S>>> = Router::new();
    for (method, path) in ROUTES {
        let route = match (*method, *path) {
            ("GET", "/api/v1/repos") => get(repos::<S>),
            ("GET", "/api/v1/repos/{repo}/branches") => get(branches::<S>),
            ("GET", "/api/v1/repos/{repo}/branches/{*branch}") => get(branch::<S>),
            ("POST", "/api/v1/repos/{repo}/refs-changed") => post(refs_changed::<S>),
            ("GET", "/api/v1/repos/{repo}/runs") => get(runs::<S>),
            ("GET", "/api/v1/repos/{repo}/runs/{number}") => get(run::<S>),
            ("POST", "/api/v1/repos/{repo}/runs/{number}/cancel") => post(cancel_run::<S>),
            ("POST", "/api/v1/repos/{repo}/runs/{number}/rerun-failed") => post(rerun_failed::<S>),
            ("GET", "/api/v1/jobs/{id}") => get(job::<S>),
            ("GET", "/api/v1/jobs/{id}/log") => get(log::<S>),
            ("GET", "/api/v1/jobs/{id}/log/stream") => get(log_stream::<S>),
            ("POST", "/api/v1/jobs/{id}/cancel") => post(cancel_job::<S>),
            ("POST", "/api/v1/jobs/{id}/rerun") => post(rerun_job::<S>),
            ("POST", "/api/v1/jobs/{id}/requeue") => post(requeue_job::<S>),
            ("GET", "/api/v1/groups") => get(groups::<S>),
            ("GET", "/api/v1/agents") => get(agents::<S>),
            ("POST", "/api/v1/agents") => post(agent_api::register::<S>),
            ("POST", "/api/v1/agent/lease") => post(agent_api::lease::<S>),
            ("POST", "/api/v1/agent/status") => post(agent_api::status::<S>),
            ("POST", "/api/v1/agent/jobs/{id}/started") => post(agent_api::started::<S>),
            ("POST", "/api/v1/agent/jobs/{id}/heartbeat") => post(agent_api::heartbeat::<S>),
            ("POST", "/api/v1/agent/jobs/{id}/log") => post(agent_api::log::<S>),
            ("POST", "/api/v1/agent/jobs/{id}/secrets") => post(agent_api::secrets::<S>),
            ("POST", "/api/v1/agent/jobs/{id}/steps") => post(agent_api::step::<S>),
            ("POST", "/api/v1/agent/jobs/{id}/finish") => post(agent_api::finish::<S>),
            ("GET", "/api/v1/openapi.json") => get(openapi),
            ("GET", "/api/v1/health") => get(health::<S>),
            ("GET", "/metrics") => get(metrics::<S>),
            _ => unreachable!("every route in ROUTES has a handler"),
        };
        router = router.route(path, route);
    }
    // The web UI shares the server. Its sessions also let a signed-in browser read the API
    // (`GET` only, so a forged cross-site request can never act): its live log tail reads
    // `/api/v1/jobs/{id}/log/stream`, and a browser cannot send `Authorization` there.
    let sessions = crate::ui::Sessions::default();
    let readers = sessions.clone();
    let api = router
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&forge),
            move |state: Shared<S>, request: Request, next: Next| {
                let by_cookie =
                    request.method() == Method::GET && readers.signed_in(request.headers());
                async move {
                    if by_cookie {
                        next.run(request).await
                    } else {
                        auth::<S>(state, request, next).await
                    }
                }
            },
        ))
        .layer(axum::middleware::from_fn(json_errors))
        .with_state(Arc::clone(&forge));
    // A path no route has: the API's JSON error under the API's paths, the UI's page elsewhere.
    api.merge(crate::ui::router(forge, sessions))
        .fallback(|request: Request| async move {
            let path = request.uri().path();
            if path.starts_with("/api/") || path == "/metrics" || path.starts_with("/metrics/") {
                ApiError::new(StatusCode::NOT_FOUND, "not-found", "no such route").into_response()
            } else {
                crate::ui::not_found()
            }
        })
}

/// The API's error code of an HTTP status. Client errors without a code of their own (`415`,
/// `422`: a body that is not the JSON asked for) are `bad-request`, server errors but `503` are
/// `internal`.
pub(crate) fn error_code(status: StatusCode) -> &'static str {
    match status {
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not-found",
        StatusCode::METHOD_NOT_ALLOWED => "method-not-allowed",
        StatusCode::REQUEST_TIMEOUT => "timeout",
        StatusCode::CONFLICT => "conflict",
        StatusCode::PAYLOAD_TOO_LARGE => "too-large",
        StatusCode::URI_TOO_LONG => "uri-too-long",
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => "headers-too-large",
        StatusCode::SERVICE_UNAVAILABLE => "busy",
        s if s.is_client_error() => "bad-request",
        _ => "internal",
    }
}

/// axum's own rejections (a path segment that is not a number, a body that is not JSON, a
/// missing query parameter, a wrong method) are plain text: they become the API's JSON errors
/// with a code for their status, so every error a client sees has the same shape.
async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let body = axum::body::to_bytes(response.into_body(), 64 << 10)
        .await
        .unwrap_or_default();
    let message = String::from_utf8_lossy(&body).trim().to_owned();
    let status = match error_code(status) {
        "bad-request" => StatusCode::BAD_REQUEST,
        "internal" => StatusCode::INTERNAL_SERVER_ERROR,
        _ => status,
    };
    let code = error_code(status);
    let message = if message.is_empty() {
        status.canonical_reason().unwrap_or("error").to_lowercase()
    } else {
        message
    };
    ApiError::new(status, code, message).into_response()
}

/// Authentication, before anything reads a body: actions always need the admin token, reads
/// unless `--public-read`; the OpenAPI document and the hook's refs-changed are open (docs/api.md
/// says why); the agent endpoints need an agent's own token ([`agent_api::authenticate`]).
async fn auth<S: Store + 'static>(
    State(forge): Shared<S>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    let open = path == "/api/v1/openapi.json"
        || (request.method() == Method::POST && path.ends_with("/refs-changed"))
        || (request.method() == Method::GET && forge.config().public_read);
    if open {
        return next.run(request).await;
    }
    if path.starts_with("/api/v1/agent/") {
        return agent_api::authenticate(forge, request, next).await;
    }
    let Some(token) = crate::ui::session::bearer(request.headers()) else {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this endpoint needs a token: send `Authorization: Bearer <token>` (the CLI reads \
             LANES_TOKEN)",
        )
        .into_response();
    };
    match forge.store().verify_admin_token(token).await {
        Ok(true) => next.run(request).await,
        Ok(false) => ApiError::new(StatusCode::FORBIDDEN, "forbidden", "the token is not valid")
            .into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

async fn repos<S: Store + 'static>(State(forge): Shared<S>) -> ApiResult<Json<Vec<api::Repo>>> {
    let repos = forge.store().list_repos().await?;
    Ok(Json(repos.iter().map(wire::repo).collect()))
}

/// The newest push run of `branch` (nightly and manual runs do not decide a branch's status).
async fn latest_push_run<S: Store>(
    store: &S,
    repo: &str,
    branch: &str,
    head: Option<&str>,
) -> ApiResult<Option<RunDetail>> {
    // The run of the head the branch points at now: after a push back to an older head (A, B,
    // then A again) that is A's run, not B's newer one.
    let mut newest = None;
    // Page back past nightly and manual runs, however many there are.
    let mut before = None;
    // A head without a run is rare (its run failed to be created); do not page through a long
    // branch's whole history looking for it.
    for _page in 0..20 {
        let runs = store
            .list_runs(&RunFilter {
                repo: Some(repo.to_owned()),
                branch: Some(branch.to_owned()),
                before,
                limit: 50,
                ..RunFilter::default()
            })
            .await?;
        for run in runs.iter().filter(|r| r.trigger == RunTrigger::Push) {
            if head.is_none_or(|h| h == run.head) {
                return Ok(Some(store.run(repo, run.number).await?));
            }
            newest.get_or_insert(run.number);
        }
        match runs.last() {
            Some(last) if runs.len() == 50 => before = Some(last.id),
            _ => break,
        }
    }
    // No run for that head (yet): the newest push run, as before the head was seen.
    match newest {
        Some(number) => Ok(Some(store.run(repo, number).await?)),
        None => Ok(None),
    }
}

async fn branches<S: Store + 'static>(
    State(forge): Shared<S>,
    Path(repo): Path<String>,
) -> ApiResult<Json<Vec<api::BranchSummary>>> {
    forge.store().repo(&repo).await?;
    let mut out = Vec::new();
    for summary in forge.store().branches(&repo).await? {
        let latest = latest_push_run(
            forge.store(),
            &repo,
            &summary.branch,
            summary.head.as_deref(),
        )
        .await?;
        out.push(api::BranchSummary {
            status: latest.as_ref().map(|d| branch_status_of(d).into()),
            latest_run: latest.as_ref().map(|d| wire::run(&d.run, None)),
            branch: summary.branch,
            head: summary.head,
        });
    }
    Ok(Json(out))
}

async fn branch<S: Store + 'static>(
    State(forge): Shared<S>,
    Path((repo, branch)): Path<(String, String)>,
) -> ApiResult<Json<api::BranchState>> {
    forge.store().repo(&repo).await?;
    let summary = forge
        .store()
        .branches(&repo)
        .await?
        .into_iter()
        .find(|b| b.branch == branch)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not-found",
                format!("no branch `{branch}` in repository {repo}"),
            )
        })?;
    let latest = latest_push_run(forge.store(), &repo, &branch, summary.head.as_deref()).await?;
    Ok(Json(api::BranchState {
        status: latest
            .as_ref()
            .map_or(BranchStatus::Pending, branch_status_of)
            .into(),
        run: latest.as_ref().map(wire::detail),
        repo,
        branch,
        head: summary.head,
    }))
}

async fn refs_changed<S: Store + 'static>(
    State(forge): Shared<S>,
    Path(repo): Path<String>,
) -> ApiResult<(StatusCode, Json<api::RefsChanged>)> {
    let created = detached(async move { forge.poll_repo(&repo).await }).await?;
    Ok((StatusCode::ACCEPTED, Json(api::RefsChanged { created })))
}

#[derive(Debug, Deserialize)]
struct RunsQuery {
    branch: Option<String>,
    status: Option<String>,
    before: Option<u64>,
    limit: Option<u32>,
}

async fn runs<S: Store + 'static>(
    State(forge): Shared<S>,
    Path(repo): Path<String>,
    Query(q): Query<RunsQuery>,
) -> ApiResult<Json<Vec<api::Run>>> {
    forge.store().repo(&repo).await?;
    let status = match q.status.as_deref() {
        Some(s) => Some(RunStatus::parse(s).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad-request",
                format!(
                    "unknown run status `{s}`: one of pending, running, passed, failed, \
                     cancelled, error"
                ),
            )
        })?),
        None => None,
    };
    let before = match q.before {
        Some(n) => Some(forge.store().run(&repo, n).await?.run.id),
        None => None,
    };
    let runs = forge
        .store()
        .list_runs(&RunFilter {
            repo: Some(repo),
            branch: q.branch,
            status,
            before,
            limit: q.limit.unwrap_or(50).clamp(1, 500),
        })
        .await?;
    Ok(Json(runs.iter().map(|r| wire::run(r, None)).collect()))
}

async fn run<S: Store + 'static>(
    State(forge): Shared<S>,
    RunPath { repo, number }: RunPath,
) -> ApiResult<Json<api::Run>> {
    let detail = forge.store().run(&repo, number).await?;
    Ok(Json(wire::detail(&detail)))
}

async fn cancel_run<S: Store + 'static>(
    State(forge): Shared<S>,
    RunPath { repo, number }: RunPath,
) -> ApiResult<Json<api::Run>> {
    let f = Arc::clone(&forge);
    let r = repo.clone();
    detached(async move { f.cancel_run(&r, number).await }).await?;
    let detail = forge.store().run(&repo, number).await?;
    Ok(Json(wire::detail(&detail)))
}

async fn rerun_failed<S: Store + 'static>(
    State(forge): Shared<S>,
    RunPath { repo, number }: RunPath,
) -> ApiResult<Json<api::Jobs>> {
    let f = Arc::clone(&forge);
    let r = repo.clone();
    let jobs = detached(async move { f.rerun_failed(&r, number).await }).await?;
    let detail = forge.store().run(&repo, number).await?;
    let lanes = wire::lanes_of(&detail.jobs);
    Ok(Json(api::Jobs {
        jobs: jobs.iter().map(|j| wire::job(j, &lanes)).collect(),
    }))
}

async fn job_with_lanes<S: Store>(store: &S, id: i64) -> ApiResult<Json<api::Job>> {
    let job = store.job(JobId(id)).await?;
    let mut lanes = HashMap::new();
    for need in &job.needs {
        if let Ok(n) = store.job(*need).await {
            lanes.insert(n.id, n.lane);
        }
    }
    Ok(Json(wire::job(&job, &lanes)))
}

async fn job<S: Store + 'static>(
    State(forge): Shared<S>,
    JobPath(id): JobPath,
) -> ApiResult<Json<api::Job>> {
    job_with_lanes(forge.store(), id).await
}

async fn cancel_job<S: Store + 'static>(
    State(forge): Shared<S>,
    JobPath(id): JobPath,
) -> ApiResult<Json<api::Job>> {
    let f = Arc::clone(&forge);
    detached(async move { f.cancel_job(JobId(id)).await }).await?;
    job_with_lanes(forge.store(), id).await
}

async fn rerun_job<S: Store + 'static>(
    State(forge): Shared<S>,
    JobPath(id): JobPath,
) -> ApiResult<Json<api::Job>> {
    let f = Arc::clone(&forge);
    let new = detached(async move { f.rerun_job(JobId(id)).await }).await?;
    job_with_lanes(forge.store(), new.id.0).await
}

async fn requeue_job<S: Store + 'static>(
    State(forge): Shared<S>,
    JobPath(id): JobPath,
) -> ApiResult<Json<api::Job>> {
    let f = Arc::clone(&forge);
    detached(async move { f.requeue(JobId(id)).await }).await?;
    job_with_lanes(forge.store(), id).await
}

#[derive(Debug, Deserialize)]
struct LogQuery {
    offset: Option<u64>,
    limit: Option<usize>,
}

/// Reads acknowledged log bytes `[offset, min(acked, offset + max))` without ever writing the
/// file: the append path alone may truncate an unacknowledged tail.
fn read_log(
    data_dir: &std::path::Path,
    job: JobId,
    offset: u64,
    acked: u64,
    max: usize,
) -> std::io::Result<Vec<u8>> {
    if offset >= acked {
        return Ok(Vec::new());
    }
    let path = lanes_store::LogFile::path(data_dir, job);
    let mut file = std::fs::File::open(&path)?;
    file.seek(SeekFrom::Start(offset))?;
    let want = (acked - offset).min(max as u64);
    let mut buf = Vec::with_capacity(usize::try_from(want).unwrap_or(max));
    file.take(want).read_to_end(&mut buf)?;
    Ok(buf)
}

async fn read_log_async(
    data_dir: std::path::PathBuf,
    job: JobId,
    offset: u64,
    acked: u64,
    max: usize,
) -> ApiResult<Vec<u8>> {
    tokio::task::spawn_blocking(move || read_log(&data_dir, job, offset, acked, max))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!("failed to read the log of job {job}: {e}"),
            )
        })
}

async fn log<S: Store + 'static>(
    State(forge): Shared<S>,
    JobPath(id): JobPath,
    Query(q): Query<LogQuery>,
) -> ApiResult<Response> {
    let job = forge.store().job(JobId(id)).await?;
    let offset = q.offset.unwrap_or(0);
    let bytes = read_log_async(
        forge.config().data_dir.clone(),
        job.id,
        offset,
        job.log_len,
        q.limit.unwrap_or(LOG_PAGE).clamp(1, LOG_PAGE),
    )
    .await?;
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    let number = |n: u64| HeaderValue::from_str(&n.to_string()).expect("digits are a header");
    headers.insert("x-log-offset", number(offset.min(job.log_len)));
    headers.insert("x-log-length", number(job.log_len));
    headers.insert("x-job-status", HeaderValue::from_static(job.state.as_str()));
    Ok((headers, bytes).into_response())
}

/// An event's data: its JSON.
fn event_data<T: serde::Serialize>(event: &T) -> String {
    serde_json::to_string(event).unwrap_or_default()
}

/// The longest prefix of `bytes` that does not end inside a UTF-8 character.
fn utf8_prefix(bytes: &[u8]) -> usize {
    match std::str::from_utf8(bytes) {
        Ok(_) => bytes.len(),
        Err(e) if e.error_len().is_none() => e.valid_up_to(),
        Err(_) => bytes.len(),
    }
}

struct Tail<S> {
    forge: Arc<Forge<S>>,
    job: JobId,
    offset: u64,
    events: tokio::sync::broadcast::Receiver<JobEvent>,
    done: bool,
}

async fn log_stream<S: Store + 'static>(
    State(forge): Shared<S>,
    JobPath(id): JobPath,
    Query(q): Query<LogQuery>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let job = forge.store().job(JobId(id)).await?;
    let tail = Tail {
        events: forge.subscribe(),
        forge,
        job: job.id,
        offset: q.offset.unwrap_or(0).min(job.log_len),
        done: false,
    };
    let stream = stream::unfold(tail, |mut tail| async move {
        if tail.done {
            return None;
        }
        loop {
            let job = match tail.forge.store().job(tail.job).await {
                Ok(job) => job,
                Err(e) => {
                    tail.done = true;
                    let event = Event::default()
                        .event("error")
                        .data(event_data(&StreamError {
                            message: e.to_string(),
                        }));
                    return Some((Ok(event), tail));
                }
            };
            if tail.offset < job.log_len {
                let data_dir = tail.forge.config().data_dir.clone();
                match read_log_async(data_dir, tail.job, tail.offset, job.log_len, 64 << 10).await {
                    Ok(bytes) => {
                        // A chunk cut inside a character waits for the rest, unless the log
                        // ends there.
                        let cut = utf8_prefix(&bytes);
                        let whole = job.state.is_terminal()
                            && tail.offset + bytes.len() as u64 == job.log_len;
                        let take = if cut == 0 && whole { bytes.len() } else { cut };
                        // Nothing whole to send yet: wait for the rest of the character.
                        if take > 0 {
                            let text = String::from_utf8_lossy(&bytes[..take]).into_owned();
                            let event = Event::default().event("log").data(event_data(&LogChunk {
                                offset: tail.offset,
                                text,
                            }));
                            tail.offset += take as u64;
                            return Some((Ok(event), tail));
                        }
                    }
                    Err(e) => {
                        tail.done = true;
                        let event = Event::default()
                            .event("error")
                            .data(event_data(&StreamError { message: e.message }));
                        return Some((Ok(event), tail));
                    }
                }
            }
            if job.state.is_terminal() {
                tail.done = true;
                let event = Event::default().event("end").data(event_data(&LogEnd {
                    status: job.state.into(),
                }));
                return Some((Ok(event), tail));
            }
            // Wait for this job's next event; a lagging receiver or a quiet second re-reads.
            let wait = async {
                loop {
                    match tail.events.recv().await {
                        Ok(JobEvent::Log { job, .. } | JobEvent::State { job })
                            if job == tail.job =>
                        {
                            return;
                        }
                        Ok(_) => continue,
                        Err(_) => return,
                    }
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(1), wait).await;
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

async fn groups<S: Store + 'static>(State(forge): Shared<S>) -> ApiResult<Json<Vec<api::Group>>> {
    let mut out = Vec::new();
    for group in forge.groups().await {
        let mut waiters = Vec::new();
        for (id, h) in &group.waiters {
            let queued_at = forge
                .store()
                .job(JobId(i64::try_from(id.0).unwrap_or(i64::MAX)))
                .await
                .ok()
                .and_then(|j| j.queued_at);
            waiters.push(api::GroupWaiter {
                job: id.0,
                repo: h.repo.clone(),
                run: h.run,
                lane: h.lane.clone(),
                queued_at,
            });
        }
        out.push(api::Group {
            name: group.name,
            limit: group.limit,
            holders: group
                .holders
                .iter()
                .map(|(id, h)| api::GroupJob {
                    job: id.0,
                    repo: h.repo.clone(),
                    run: h.run,
                    lane: h.lane.clone(),
                })
                .collect(),
            waiters,
        });
    }
    Ok(Json(out))
}

async fn agents<S: Store + 'static>(State(forge): Shared<S>) -> ApiResult<Json<Vec<api::Agent>>> {
    let views = crate::agents::agent_views(&forge).await?;
    Ok(Json(views.into_iter().map(wire::agent).collect()))
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// `GET /api/v1/health`: whether the forge can take work now.
async fn health<S: Store + 'static>(State(forge): Shared<S>) -> Json<api::Health> {
    let full = forge.disk_full();
    Json(api::Health {
        disk_full: full.is_some(),
        disk_full_since: full.as_ref().map(|(since, _)| *since),
        message: full.map(|(_, why)| {
            format!(
                "the data directory's disk is full ({why}): no new jobs start until space returns"
            )
        }),
    })
}

async fn metrics<S: Store + 'static>(State(forge): Shared<S>) -> ApiResult<Response> {
    let (queued, running) = forge.queue_counts().await;
    let groups = forge
        .groups()
        .await
        .into_iter()
        .map(|g| (g.name, (g.holders.len() as u64, g.limit)))
        .collect();
    let gauges = Gauges {
        queued,
        running,
        groups,
        disk_full: forge.disk_full().is_some(),
    };
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        forge.metrics().render(&gauges),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn the_openapi_document_lists_exactly_the_routes() {
        let doc: Value = serde_json::from_str(OPENAPI).expect("openapi.json is JSON");
        let mut documented = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("path item").keys() {
                if method != "parameters" {
                    documented.insert((method.to_uppercase(), path.clone()));
                }
            }
        }
        let routed: BTreeSet<(String, String)> = ROUTES
            .iter()
            .map(|(m, p)| ((*m).to_owned(), p.replace("{*", "{")))
            .collect();
        assert_eq!(documented, routed);
    }

    #[test]
    fn a_utf8_prefix_never_ends_inside_a_character() {
        let text = "aé".as_bytes();
        assert_eq!(utf8_prefix(text), 3);
        assert_eq!(utf8_prefix(&text[..2]), 1);
        assert_eq!(utf8_prefix(b"\xff\xfeabc"), 5);
    }
}
