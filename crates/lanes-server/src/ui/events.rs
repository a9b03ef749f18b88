//! Live updates (`GET /-/events?page=PATH`): server-sent events carrying the re-rendered live
//! part of the page at `PATH`, its title and its status, each time it changes.
//!
//! The page is rendered again shortly after any job changes state (the forge's
//! [`JobEvent`] broadcast, the one the API's log tail listens to), and every few seconds so new
//! runs, ages and queue waits move too; an event goes out only when the HTML differs from the
//! last one sent. One endpoint serves every page, so what updates live is exactly what the page
//! shows without JavaScript.

use super::page::{Rendered, UiError, UiResult, Viewer};
use super::{Shared, Ui, agents, branch, cache, groups, home, lane, run};
use crate::forge::JobEvent;
use axum::extract::Query;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{self, Stream};
use lanes_store::Store;
use serde::Deserialize;
use serde_json::json;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

/// How long to gather a burst of job events into one render.
const SETTLE: Duration = Duration::from_millis(100);

/// A page with nothing happening is rendered again this often.
const QUIET: Duration = Duration::from_secs(3);

/// The least time between two renders of a page for one client: the agents and cache pages add
/// up the newest ended jobs' steps, so they are not redone for every job event of a busy forge.
fn gap(target: &Target) -> Duration {
    match target {
        Target::Agents | Target::Cache => Duration::from_secs(2),
        _ => Duration::from_millis(250),
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct EventsQuery {
    page: String,
}

/// What a page path names.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Target {
    Home,
    Agents,
    Groups,
    Cache,
    Branch(String, String, Option<u64>),
    Run(String, u64),
    Lane(String, u64, String, Option<i64>),
}

fn decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = segment.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn query_value(query: &str, key: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| decode(v))
}

/// The page `path` (with its query) names, as the router would route it.
fn target(path: &str) -> Option<Target> {
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segments.as_slice() {
        [""] => Some(Target::Home),
        ["agents"] => Some(Target::Agents),
        ["groups"] => Some(Target::Groups),
        ["cache"] => Some(Target::Cache),
        [repo, "branches", rest @ ..] if !rest.is_empty() => Some(Target::Branch(
            decode(repo)?,
            decode(&rest.join("/"))?,
            query_value(query, "before").and_then(|b| b.parse().ok()),
        )),
        [repo, "runs", n] => Some(Target::Run(decode(repo)?, n.parse().ok()?)),
        [repo, "runs", n, "lanes", lane] => Some(Target::Lane(
            decode(repo)?,
            n.parse().ok()?,
            decode(lane)?,
            query_value(query, "job").and_then(|j| j.parse().ok()),
        )),
        _ => None,
    }
}

async fn render<S: Store + 'static>(ui: &Ui<S>, viewer: Viewer, t: &Target) -> UiResult<Rendered> {
    match t {
        Target::Home => home::render(ui, viewer).await,
        Target::Agents => agents::render(ui, viewer).await,
        Target::Groups => groups::render(ui, viewer).await,
        Target::Cache => cache::render(ui, viewer).await,
        Target::Branch(repo, b, before) => branch::render(ui, viewer, repo, b, *before).await,
        Target::Run(repo, n) => run::render(ui, viewer, repo, *n, None).await,
        Target::Lane(repo, n, l, job) => lane::render_live(ui, viewer, repo, *n, l, *job)
            .await
            .map(|(r, _)| r),
    }
}

struct Watch<S> {
    ui: Arc<Ui<S>>,
    viewer: Viewer,
    target: Target,
    events: tokio::sync::broadcast::Receiver<JobEvent>,
    last: String,
    first: bool,
}

/// `GET /-/events?page=PATH`.
pub(crate) async fn events<S: Store + 'static>(
    axum::extract::State(ui): Shared<S>,
    ext: axum::http::Extensions,
    Query(q): Query<EventsQuery>,
) -> UiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let target = target(&q.page)
        .ok_or_else(|| UiError::not_found(format!("no page `{}` updates live", q.page)))?;
    let watch = Watch {
        events: ui.forge.subscribe(),
        viewer: super::viewer(&ext),
        ui,
        target,
        last: String::new(),
        first: true,
    };
    let stream = stream::unfold(watch, |mut w| async move {
        loop {
            if !w.first {
                tokio::time::sleep(gap(&w.target)).await;
                wait(&mut w.events).await;
            }
            w.first = false;
            let event = match render(&w.ui, w.viewer, &w.target).await {
                Ok(r) if r.live == w.last => continue,
                Ok(r) => {
                    w.last.clone_from(&r.live);
                    Event::default().event("page").data(
                        json!({
                            "html": r.live,
                            "title": format!("{} · lanes", r.base.title),
                            "status": r.base.status,
                        })
                        .to_string(),
                    )
                }
                // A run that went away, a store that failed: say so once a while, keep trying.
                Err(e) => Event::default()
                    .event("problem")
                    .data(json!({"message": e.message}).to_string()),
            };
            return Some((Ok(event), w));
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// Until a job changed state (then a moment more, to take the rest of the burst) or
/// [`QUIET`] passed.
async fn wait(events: &mut tokio::sync::broadcast::Receiver<JobEvent>) {
    let changed = async {
        loop {
            match events.recv().await {
                Ok(JobEvent::State { .. }) | Err(RecvError::Lagged(_)) => return true,
                Ok(JobEvent::Log { .. }) => continue,
                Err(RecvError::Closed) => return false,
            }
        }
    };
    match tokio::time::timeout(QUIET, changed).await {
        Ok(true) => {
            tokio::time::sleep(SETTLE).await;
            // Drain what came in the meantime: one render covers it.
            while events.try_recv().is_ok() {}
        }
        Ok(false) => tokio::time::sleep(QUIET).await,
        Err(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_paths_name_the_pages_the_router_serves() {
        assert_eq!(target("/"), Some(Target::Home));
        assert_eq!(target("/agents"), Some(Target::Agents));
        assert_eq!(
            target("/app/branches/feature/x%3Cy%3E?before=4"),
            Some(Target::Branch("app".into(), "feature/x<y>".into(), Some(4)))
        );
        assert_eq!(target("/app/runs/3"), Some(Target::Run("app".into(), 3)));
        assert_eq!(
            target("/app/runs/3/lanes/test?job=9"),
            Some(Target::Lane("app".into(), 3, "test".into(), Some(9)))
        );
        assert_eq!(target("/app/runs/x"), None);
        assert_eq!(target("/nope/nope"), None);
    }
}
