//! The cache page (`/cache`): the step cache as the forge's jobs used it: the hit rate by day,
//! the time hits saved, and the lane steps that miss most, with what their misses say about why.
//!
//! Computed from the steps of the newest [`JOBS`] jobs that ended (`Store::ended_jobs`, two
//! queries), each counted on the day (UTC) it ended.

use super::Ui;
use super::page::{Base, Rendered, UiResult, Viewer};
use super::view;
use askama::Template;
use lanes_store::{CacheUse, Store};
use std::collections::BTreeMap;

/// How many of the newest ended jobs the page adds up.
pub(crate) const JOBS: u32 = 2_000;

#[derive(Debug)]
pub(crate) struct Day {
    pub(crate) day: String,
    pub(crate) hits: usize,
    pub(crate) misses: usize,
    pub(crate) rate: String,
    /// The bar's hit and miss parts, in percent of the busiest day.
    pub(crate) hit_width: usize,
    pub(crate) miss_width: usize,
}

#[derive(Debug)]
pub(crate) struct Misser {
    pub(crate) lane: String,
    pub(crate) step: String,
    pub(crate) misses: usize,
    pub(crate) hits: usize,
    pub(crate) why: String,
    pub(crate) last: Option<view::Link>,
}

#[derive(Template)]
#[template(path = "cache.html")]
pub(crate) struct CacheLive {
    pub(crate) jobs: u32,
    pub(crate) hits: usize,
    pub(crate) misses: usize,
    pub(crate) disabled: usize,
    pub(crate) rate: String,
    pub(crate) saved: String,
    pub(crate) days: Vec<Day>,
    pub(crate) missers: Vec<Misser>,
}

fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn rate(hits: usize, misses: usize) -> String {
    if hits + misses == 0 {
        "—".to_owned()
    } else {
        format!("{:.0}%", 100.0 * hits as f64 / (hits + misses) as f64)
    }
}

#[derive(Default)]
struct Tally {
    hits: usize,
    misses: usize,
    /// Each missed key with the jobs that missed it.
    miss_keys: BTreeMap<String, Vec<i64>>,
    /// Each hit key with the first job that hit it.
    first_hit: BTreeMap<String, i64>,
    failed_misses: usize,
    last: Option<(i64, String)>,
}

/// The page.
pub(crate) async fn render<S: Store + 'static>(ui: &Ui<S>, viewer: Viewer) -> UiResult<Rendered> {
    let jobs = ui.forge.store().ended_jobs(JOBS).await?;
    let (mut hits, mut misses, mut disabled, mut saved) = (0, 0, 0, 0u64);
    let mut days: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut steps: BTreeMap<(String, String), Tally> = BTreeMap::new();
    for job in &jobs {
        let day = job
            .finished_at
            .map_or_else(String::new, |t| t.strftime("%Y-%m-%d").to_string());
        for s in &job.steps {
            let entry = days.entry(day.clone()).or_default();
            let tally = steps.entry((job.lane.clone(), s.name.clone())).or_default();
            match s.cache {
                CacheUse::Hit => {
                    hits += 1;
                    entry.0 += 1;
                    tally.hits += 1;
                    saved += s.saved_ms.unwrap_or(0);
                    if let Some(key) = &s.key {
                        let first = tally.first_hit.entry(key.clone()).or_insert(job.id.0);
                        *first = (*first).min(job.id.0);
                    }
                }
                CacheUse::Miss => {
                    misses += 1;
                    entry.1 += 1;
                    tally.misses += 1;
                    if let Some(key) = &s.key {
                        tally
                            .miss_keys
                            .entry(key.clone())
                            .or_default()
                            .push(job.id.0);
                    }
                    if !s.status.is_success() {
                        tally.failed_misses += 1;
                    }
                    if tally.last.as_ref().is_none_or(|(id, _)| job.id.0 > *id) {
                        tally.last = Some((job.id.0, view::job_href(job)));
                    }
                }
                CacheUse::Disabled => disabled += 1,
            }
        }
    }
    let mut missers: Vec<Misser> = steps
        .into_iter()
        .filter(|(_, t)| t.misses > 0)
        .map(|((lane, step), t)| {
            // A key missed after it had been a hit means the entry was gone (evicted, or
            // another machine's cache); a key missed before any hit is new inputs; a step that
            // did not pass is never recorded, so its key misses again next time.
            let again = t
                .miss_keys
                .iter()
                .filter(|(key, jobs)| {
                    t.first_hit
                        .get(*key)
                        .is_some_and(|hit| jobs.iter().any(|j| j > hit))
                })
                .count();
            let mut why = Vec::new();
            if t.miss_keys.len() > again {
                let n = t.miss_keys.len() - again;
                why.push(format!(
                    "{} (new inputs)",
                    count(n, "key never seen before", "keys never seen before")
                ));
            }
            if again > 0 {
                why.push(format!(
                    "{} after a hit (the entry was gone)",
                    count(again, "key missed", "keys missed")
                ));
            }
            if t.failed_misses > 0 {
                why.push(format!(
                    "{} (not recorded)",
                    count(
                        t.failed_misses,
                        "run that did not pass",
                        "runs that did not pass"
                    )
                ));
            }
            Misser {
                lane,
                step,
                misses: t.misses,
                hits: t.hits,
                why: why.join("; "),
                last: t.last.map(|(id, href)| view::Link {
                    href,
                    text: format!("job {id}"),
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
                day,
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
