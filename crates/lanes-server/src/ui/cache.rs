//! The cache page (`/cache`): the step cache as the forge's jobs used it: the hit rate by day,
//! the time hits saved, and the lane steps that miss most, with why: the kinds of reason the
//! agents reported for their misses (from each step's last run in the agent's cache, as
//! `lanes explain` says it) and the newest miss's own.
//!
//! Computed from the steps of the newest [`JOBS`] jobs that ended, counted by the store
//! (`Store::step_tallies`, one aggregate query), each on the day (UTC) its job ended.

use super::Ui;
use super::page::{Base, Rendered, UiResult, Viewer};
use super::view;
use askama::Template;
use lanes_core::explain::MissKind;
use lanes_store::{CacheUse, JobId, Store};
use std::collections::BTreeMap;

/// How many of the newest ended jobs the page adds up.
pub(crate) const JOBS: u32 = 2_000;

#[derive(Debug)]
pub(crate) struct Day {
    pub(crate) day: String,
    pub(crate) hits: u64,
    pub(crate) misses: u64,
    pub(crate) rate: String,
    /// The bar's hit and miss parts, in percent of the busiest day.
    pub(crate) hit_width: u64,
    pub(crate) miss_width: u64,
}

#[derive(Debug)]
pub(crate) struct Misser {
    pub(crate) lane: String,
    pub(crate) step: String,
    pub(crate) misses: u64,
    pub(crate) hits: u64,
    /// The kinds of reason with their counts, most first.
    pub(crate) why: Vec<String>,
    /// The newest miss and why it missed.
    pub(crate) last: Option<(view::Link, Option<String>)>,
}

#[derive(Template)]
#[template(path = "cache.html")]
pub(crate) struct CacheLive {
    pub(crate) jobs: u32,
    pub(crate) hits: u64,
    pub(crate) misses: u64,
    pub(crate) disabled: u64,
    pub(crate) rate: String,
    pub(crate) saved: String,
    pub(crate) days: Vec<Day>,
    pub(crate) missers: Vec<Misser>,
}

fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn rate(hits: u64, misses: u64) -> String {
    if hits + misses == 0 {
        "—".to_owned()
    } else {
        format!("{:.0}%", 100.0 * hits as f64 / (hits + misses) as f64)
    }
}

#[derive(Default)]
struct Tally {
    hits: u64,
    misses: u64,
    /// Misses by the kind of reason the agent reported (`None`: not reported).
    kinds: BTreeMap<Option<MissKind>, u64>,
    /// Misses whose step did not pass (nothing was recorded, so it misses again).
    failed: u64,
    /// The newest miss: its job, a link to it and why it missed.
    last: Option<(JobId, String, Option<String>)>,
}

/// The page.
pub(crate) async fn render<S: Store + 'static>(ui: &Ui<S>, viewer: Viewer) -> UiResult<Rendered> {
    let tallies = ui.forge.store().step_tallies(JOBS).await?;
    let (mut hits, mut misses, mut disabled, mut saved) = (0, 0, 0, 0u64);
    let mut days: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    let mut steps: BTreeMap<(&str, &str), Tally> = BTreeMap::new();
    for t in &tallies {
        let day = days.entry(&t.day).or_default();
        let step = steps.entry((&t.lane, &t.step)).or_default();
        match t.cache {
            CacheUse::Hit => {
                hits += t.count;
                day.0 += t.count;
                step.hits += t.count;
                saved += t.saved_ms;
            }
            CacheUse::Miss => {
                misses += t.count;
                day.1 += t.count;
                step.misses += t.count;
                *step.kinds.entry(t.miss_kind).or_default() += t.count;
                if !t.passed {
                    step.failed += t.count;
                }
                let latest = &t.latest;
                if step.last.as_ref().is_none_or(|(id, ..)| latest.job > *id) {
                    step.last = Some((
                        latest.job,
                        view::attempt_href(&latest.repo, latest.run_number, &t.lane, latest.job),
                        latest.miss_detail.clone(),
                    ));
                }
            }
            CacheUse::Disabled => disabled += t.count,
        }
    }
    let mut missers: Vec<Misser> = steps
        .into_iter()
        .filter(|(_, t)| t.misses > 0)
        .map(|((lane, step), t)| {
            let mut kinds: Vec<(Option<MissKind>, u64)> = t.kinds.into_iter().collect();
            kinds.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            let mut why: Vec<String> = kinds
                .into_iter()
                .map(|(kind, n)| {
                    let what = kind.map_or("reason not reported", MissKind::label);
                    format!("{what} ×{n}")
                })
                .collect();
            if t.failed > 0 {
                why.push(format!(
                    "{} (not recorded)",
                    count(t.failed, "did not pass", "did not pass")
                ));
            }
            Misser {
                lane: lane.to_owned(),
                step: step.to_owned(),
                misses: t.misses,
                hits: t.hits,
                why,
                last: t.last.map(|(id, href, detail)| {
                    (
                        view::Link {
                            href,
                            text: format!("job {id}"),
                        },
                        detail,
                    )
                }),
            }
        })
        .collect();
    missers.sort_by(|a, b| b.misses.cmp(&a.misses).then(a.lane.cmp(&b.lane)));
    missers.truncate(20);
    let most = days.values().map(|(h, m)| h + m).max().unwrap_or(1).max(1);
    let live = CacheLive {
        jobs: JOBS,
        hits,
        misses,
        disabled,
        rate: rate(hits, misses),
        saved: view::duration(saved),
        days: days
            .into_iter()
            .rev()
            .map(|(day, (h, m))| Day {
                day: day.to_owned(),
                hits: h,
                misses: m,
                rate: rate(h, m),
                hit_width: 100 * h / most,
                miss_width: 100 * m / most,
            })
            .collect(),
        missers,
    };
    let mut base = Base::new(viewer, "cache", "/cache".to_owned());
    base.title = "Cache".to_owned();
    Ok(Rendered {
        base,
        live: live.render()?,
        extra: String::new(),
    })
}
