//! The groups page (`/groups`): each concurrency group with its limit, the jobs holding it and
//! since when, and the jobs waiting for it and for how long.

use super::Ui;
use super::page::{Base, Rendered, UiResult, Viewer};
use super::view::{self, Link};
use askama::Template;
use jiff::Timestamp;
use lanes_store::{JobId, Store};

#[derive(Debug)]
pub(crate) struct Member {
    pub(crate) link: Link,
    /// Held for / waited for.
    pub(crate) time: String,
}

#[derive(Debug)]
pub(crate) struct GroupRow {
    pub(crate) name: String,
    pub(crate) limit: u32,
    pub(crate) holders: Vec<Member>,
    pub(crate) waiters: Vec<Member>,
    pub(crate) full: bool,
}

#[derive(Template)]
#[template(path = "groups.html")]
pub(crate) struct GroupsLive {
    pub(crate) groups: Vec<GroupRow>,
}

/// The page.
pub(crate) async fn render<S: Store + 'static>(ui: &Ui<S>, viewer: Viewer) -> UiResult<Rendered> {
    let now = Timestamp::now();
    let store = ui.forge.store();
    let mut groups = Vec::new();
    for g in ui.forge.groups().await {
        let member = async |id: u64, h: &lanes_core::job::Holder, holding: bool| {
            let job = store
                .job(JobId(i64::try_from(id).unwrap_or(i64::MAX)))
                .await
                .ok();
            let since = job
                .as_ref()
                .and_then(|j| if holding { j.leased_at } else { j.queued_at });
            Member {
                link: Link {
                    href: view::lane_href(&h.repo, h.run, &h.lane),
                    text: format!("{} #{} {}", h.repo, h.run, h.lane),
                },
                time: since.map_or_else(String::new, |t| view::compact(view::between(t, now))),
            }
        };
        let mut holders = Vec::new();
        for (id, h) in &g.holders {
            holders.push(member(id.0, h, true).await);
        }
        let mut waiters = Vec::new();
        for (id, h) in &g.waiters {
            waiters.push(member(id.0, h, false).await);
        }
        groups.push(GroupRow {
            full: g.holders.len() >= g.limit as usize,
            name: g.name,
            limit: g.limit,
            holders,
            waiters,
        });
    }
    let waiting = groups.iter().any(|g| !g.waiters.is_empty());
    let mut base = Base::new(viewer, "groups", "/groups".to_owned());
    base.title = "Groups".to_owned();
    base.status = if waiting { "pending" } else { "none" };
    Ok(Rendered {
        base,
        live: GroupsLive { groups }.render()?,
        extra: String::new(),
    })
}
