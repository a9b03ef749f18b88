//! The forms: sign in and out, and the actions on runs and jobs, which call the same forge
//! methods as the API and then send the browser back to the run (POST, redirect, GET).

use super::page::{UiError, UiResult};
use super::{Shared, back, number, session};
use crate::error::ForgeError;
use axum::Form;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use lanes_store::{JobId, Store};
use serde::Deserialize;
use std::sync::Arc;

/// Runs a forge operation to its end even if the browser goes away (a closed tab drops the
/// handler's future; an operation cut between the scheduler's decision and its write would
/// leave the two apart), as the API's actions do.
async fn detached<T: Send + 'static>(
    operation: impl std::future::Future<Output = Result<T, ForgeError>> + Send + 'static,
) -> UiResult<T> {
    match tokio::spawn(operation).await {
        Ok(result) => Ok(result?),
        Err(e) => Err(UiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the operation failed: {e}"),
        )),
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct SignIn {
    token: String,
    next: Option<String>,
}

/// `POST /sign-in`: a valid admin token becomes a session cookie.
pub(crate) async fn sign_in<S: Store + 'static>(
    axum::extract::State(ui): Shared<S>,
    headers: HeaderMap,
    Form(form): Form<SignIn>,
) -> UiResult<Response> {
    // Signing someone in from another site would make them act as the attacker.
    if !session::same_origin(&headers) {
        return Err(UiError::new(
            StatusCode::FORBIDDEN,
            "This form came from another site.",
        ));
    }
    let next = session::safe_next(form.next.as_deref())
        .map_err(|e| UiError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    if !ui
        .forge
        .store()
        .verify_admin_token(form.token.trim())
        .await?
    {
        let mut e = UiError::sign_in(&next, "That token is not valid.");
        e.status = StatusCode::FORBIDDEN;
        return Err(e);
    }
    let id = ui.sessions.create()?;
    let mut response = Redirect::to(&next).into_response();
    let cookie = HeaderValue::from_str(&session::set_cookie(&id))
        .map_err(|e| UiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(response)
}

/// `POST /sign-out`: the session ends and its cookie goes.
pub(crate) async fn sign_out<S: Store + 'static>(
    axum::extract::State(ui): Shared<S>,
    headers: HeaderMap,
) -> Response {
    if session::same_origin(&headers) {
        ui.sessions.end(&headers);
    }
    let mut response = Redirect::to("/").into_response();
    if let Ok(cookie) = HeaderValue::from_str(&session::clear_cookie()) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

/// `POST /{repo}/runs/{n}/cancel`.
pub(crate) async fn cancel_run<S: Store + 'static>(
    axum::extract::State(ui): Shared<S>,
    Path((repo, n)): Path<(String, String)>,
) -> UiResult<Response> {
    let n = number(&n)?;
    let (forge, r) = (Arc::clone(&ui.forge), repo.clone());
    detached(async move { forge.cancel_run(&r, n).await }).await?;
    Ok(back(&repo, n, "cancel-run"))
}

/// `POST /{repo}/runs/{n}/rerun-failed`.
pub(crate) async fn rerun_failed<S: Store + 'static>(
    axum::extract::State(ui): Shared<S>,
    Path((repo, n)): Path<(String, String)>,
) -> UiResult<Response> {
    let n = number(&n)?;
    let (forge, r) = (Arc::clone(&ui.forge), repo.clone());
    detached(async move { forge.rerun_failed(&r, n).await }).await?;
    Ok(back(&repo, n, "rerun-failed"))
}

/// `POST /{repo}/runs/{n}/jobs/{id}/{cancel | rerun | requeue}`: the job must be of that run.
pub(crate) async fn job_action<S: Store + 'static>(
    axum::extract::State(ui): Shared<S>,
    Path((repo, n, id, action)): Path<(String, String, i64, String)>,
) -> UiResult<Response> {
    let n = number(&n)?;
    let job = ui.forge.store().job(JobId(id)).await?;
    if job.repo != repo || job.run_number != n {
        return Err(UiError::not_found(format!(
            "no job {id} in run #{n} of {repo}"
        )));
    }
    let forge = Arc::clone(&ui.forge);
    let did = match action.as_str() {
        "cancel" => {
            detached(async move { forge.cancel_job(JobId(id)).await.map(drop) }).await?;
            "cancel"
        }
        "rerun" => {
            detached(async move { forge.rerun_job(JobId(id)).await.map(drop) }).await?;
            "rerun"
        }
        "requeue" => {
            detached(async move { forge.requeue(JobId(id)).await.map(drop) }).await?;
            "requeue"
        }
        other => {
            return Err(UiError::not_found(format!(
                "no action `{other}`: cancel, rerun or requeue"
            )));
        }
    };
    Ok(back(&repo, n, did))
}
