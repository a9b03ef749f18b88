//! The web UI: server-rendered pages over the same [`Forge`] the JSON API serves, sign-in with
//! the admin token, actions as HTML forms, and live updates over server-sent events.
//!
//! Every page works without JavaScript; `assets/lanes.js` only swaps in re-rendered live parts
//! (`/-/events`) and tails job logs. Pages read the forge and the store; actions call the same
//! forge methods as the API. This module decides nothing about runs or jobs. Reference:
//! docs/ui.md.

mod actions;
mod agents;
mod ansi;
mod assets;
mod branch;
mod cache;
mod events;
mod groups;
mod home;
mod joblog;
mod lane;
mod page;
mod run;
pub(crate) mod session;
mod view;

pub use session::Sessions;

use crate::forge::Forge;
use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use lanes_store::Store;
use page::{UiError, UiResult, Viewer};
use serde::Deserialize;
use std::sync::Arc;

/// What the UI's handlers share.
#[derive(Debug)]
pub(crate) struct Ui<S> {
    pub(crate) forge: Arc<Forge<S>>,
    pub(crate) sessions: Sessions,
}

type Shared<S> = State<Arc<Ui<S>>>;

/// The UI's routes over `forge`, signing in against `sessions`. No fallback: the caller's
/// answers the paths no route has ([`not_found`] for the UI's).
pub fn router<S: Store + 'static>(forge: Arc<Forge<S>>, sessions: Sessions) -> Router {
    let ui = Arc::new(Ui { forge, sessions });
    let open = Router::new()
        .route("/sign-in", get(sign_in_form).post(actions::sign_in::<S>))
        .route("/sign-out", post(actions::sign_out::<S>))
        .route("/-/assets/{file}", get(assets::asset))
        .route("/-/favicon/{file}", get(assets::favicon));
    let guarded = Router::new()
        .route("/", get(home_page::<S>))
        .route("/agents", get(agents_page::<S>))
        .route("/groups", get(groups_page::<S>))
        .route("/cache", get(cache_page::<S>))
        .route("/-/events", get(events::events::<S>))
        .route("/{repo}/branches/{*branch}", get(branch_page::<S>))
        .route("/{repo}/runs/{number}", get(run_page::<S>))
        .route("/{repo}/runs/{number}/lanes/{lane}", get(lane_page::<S>))
        .route("/{repo}/runs/{number}/lanes/{lane}/raw", get(raw_log::<S>))
        .route(
            "/{repo}/runs/{number}/cancel",
            post(actions::cancel_run::<S>),
        )
        .route(
            "/{repo}/runs/{number}/rerun-failed",
            post(actions::rerun_failed::<S>),
        )
        .route(
            "/{repo}/runs/{number}/jobs/{id}/{action}",
            post(actions::job_action::<S>),
        )
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&ui),
            access::<S>,
        ));
    open.merge(guarded)
        .layer(axum::middleware::from_fn(headers))
        .with_state(ui)
}

/// The UI's answer for a path no route has: an HTML 404 page.
pub fn not_found() -> Response {
    UiError::not_found("There is no page here.").into_response()
}

/// Headers every UI response gets: pages are not framed by other sites, and not cached (they
/// change with every job).
async fn headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; \
             frame-ancestors 'none'; form-action 'self'",
        ),
    );
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// Who may see a page or act, by the API's rule (docs/api.md): reads need a session or the
/// admin token unless `--public-read`; actions always do, and with a session cookie they must
/// come from this site.
async fn access<S: Store + 'static>(
    State(ui): Shared<S>,
    mut request: Request,
    next: Next,
) -> Response {
    let headers = request.headers();
    let by_cookie = ui.sessions.signed_in(headers);
    let by_token = match session::bearer(headers) {
        Some(token) if !by_cookie => match ui.forge.store().verify_admin_token(token).await {
            Ok(valid) => valid,
            Err(e) => return UiError::from(e).into_response(),
        },
        _ => false,
    };
    let signed_in = by_cookie || by_token;
    let read = request.method() == Method::GET || request.method() == Method::HEAD;
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let may_read = read && ui.forge.config().public_read;
    if !(signed_in || may_read) {
        let message = if read {
            "This forge needs the admin token to be read."
        } else {
            "Sign in to act on runs and jobs."
        };
        // An action's sign-in comes back to the page it was on, not to the action's URL.
        let next = if read { path } else { "/".to_owned() };
        return UiError::sign_in(&next, message).into_response();
    }
    if !read && by_cookie && !session::same_origin(request.headers()) {
        return UiError::new(
            StatusCode::FORBIDDEN,
            "This form came from another site; lanes only takes actions from its own pages.",
        )
        .into_response();
    }
    request.extensions_mut().insert(Viewer { signed_in });
    let response = next.run(request).await;
    if signed_in {
        page::for_signed_in(response)
    } else {
        response
    }
}

fn viewer(request: &axum::http::Extensions) -> Viewer {
    request.get::<Viewer>().copied().unwrap_or_default()
}

#[derive(Debug, Deserialize)]
struct NextQuery {
    next: Option<String>,
}

async fn sign_in_form(Query(q): Query<NextQuery>) -> UiResult<Response> {
    let next = session::safe_next(q.next.as_deref())
        .map_err(|e| UiError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    Ok(page::sign_in_page(&next, ""))
}

async fn home_page<S: Store + 'static>(
    State(ui): Shared<S>,
    ext: axum::http::Extensions,
) -> UiResult<page::Rendered> {
    home::render(&ui, viewer(&ext)).await
}

async fn agents_page<S: Store + 'static>(
    State(ui): Shared<S>,
    ext: axum::http::Extensions,
) -> UiResult<page::Rendered> {
    agents::render(&ui, viewer(&ext)).await
}

async fn groups_page<S: Store + 'static>(
    State(ui): Shared<S>,
    ext: axum::http::Extensions,
) -> UiResult<page::Rendered> {
    groups::render(&ui, viewer(&ext)).await
}

async fn cache_page<S: Store + 'static>(
    State(ui): Shared<S>,
    ext: axum::http::Extensions,
) -> UiResult<page::Rendered> {
    cache::render(&ui, viewer(&ext)).await
}

#[derive(Debug, Deserialize)]
struct BranchQuery {
    before: Option<u64>,
}

async fn branch_page<S: Store + 'static>(
    State(ui): Shared<S>,
    ext: axum::http::Extensions,
    Path((repo, branch)): Path<(String, String)>,
    Query(q): Query<BranchQuery>,
) -> UiResult<page::Rendered> {
    branch::render(&ui, viewer(&ext), &repo, &branch, q.before).await
}

#[derive(Debug, Deserialize)]
struct RunQuery {
    did: Option<String>,
}

/// A run number that is not one is a page that does not exist, not a malformed request.
fn number(raw: &str) -> UiResult<u64> {
    raw.parse()
        .map_err(|_| UiError::not_found(format!("`{raw}` is not a run number")))
}

async fn run_page<S: Store + 'static>(
    State(ui): Shared<S>,
    ext: axum::http::Extensions,
    Path((repo, n)): Path<(String, String)>,
    Query(q): Query<RunQuery>,
) -> UiResult<page::Rendered> {
    run::render(&ui, viewer(&ext), &repo, number(&n)?, q.did.as_deref()).await
}

#[derive(Debug, Deserialize)]
struct LaneQuery {
    job: Option<i64>,
}

async fn lane_page<S: Store + 'static>(
    State(ui): Shared<S>,
    ext: axum::http::Extensions,
    Path((repo, n, lane)): Path<(String, String, String)>,
    Query(q): Query<LaneQuery>,
) -> UiResult<page::Rendered> {
    lane::render(&ui, viewer(&ext), &repo, number(&n)?, &lane, q.job).await
}

/// The whole acknowledged log as plain text.
async fn raw_log<S: Store + 'static>(
    State(ui): Shared<S>,
    Path((repo, n, lane_name)): Path<(String, String, String)>,
    Query(q): Query<LaneQuery>,
) -> UiResult<Response> {
    let (detail, id) = lane::find(ui.forge.store(), &repo, number(&n)?, &lane_name, q.job).await?;
    let len = detail
        .jobs
        .iter()
        .find(|j| j.id == id)
        .map_or(0, |j| j.log_len);
    let data_dir = ui.forge.config().data_dir.clone();
    let bytes = tokio::task::spawn_blocking(move || lane::read_all(&data_dir, id, len))
        .await
        .map_err(|e| UiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| {
            UiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("failed to read the log of job {id}: {e}"),
            )
        })?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], bytes).into_response())
}

/// Where an action sends the browser back to.
fn back(repo: &str, number: u64, did: &str) -> Response {
    Redirect::to(&format!("{}?did={did}", view::run_href(repo, number))).into_response()
}
