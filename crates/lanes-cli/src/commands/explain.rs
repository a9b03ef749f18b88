//! `lanes explain`: would each step of a lane hit the cache, and if not, what changed since it
//! last ran.

use crate::args::ExplainArgs;
use crate::cache_dir::cache_dir;
use crate::commands::fingerprint::{check_step, find_lane, lane_keys};
use crate::error::{CliError, exit};
use crate::printer::Printer;
use crate::workspace::Workspace;
use lanes_cache::{CacheError, LocalStore, Lookup};
use lanes_core::explain::Difference;
use lanes_exec::explain_miss;
use serde::Serialize;
use std::fmt::Write as _;
use std::path::Path;

#[derive(Debug, Serialize)]
struct Output {
    lane: String,
    inputs: usize,
    steps: Vec<StepOutput>,
}

#[derive(Debug, Serialize)]
struct StepOutput {
    name: String,
    key: String,
    /// `hit`, `miss` or `disabled`.
    cache: &'static str,
    /// For a hit, how long the recorded run took.
    saved_ms: Option<u64>,
    /// For a miss, what differs from the last recorded run of the step.
    changes: Vec<Difference>,
    /// For a miss without differences (or without a recorded run), why it misses.
    note: Option<String>,
    /// The last recorded run of the step, when there is one.
    last: Option<Last>,
}

#[derive(Debug, Serialize)]
struct Last {
    key: String,
    status: String,
    recorded_at: String,
}

pub(crate) fn run(dir: &Path, args: &ExplainArgs, printer: &Printer) -> Result<u8, CliError> {
    let workspace = Workspace::open(dir, args.revision.head.as_deref())?;
    let catalog = workspace.catalog()?;
    let lane = find_lane(&catalog, &args.lane)?;
    check_step(lane, args.step.as_deref())?;
    let (inputs, _, fingerprints) = lane_keys(&catalog, lane, &workspace.files()?);
    let store = LocalStore::open(&cache_dir()?).map_err(cache_error)?;
    // Each key covers what the step before it left, known from the results recorded.
    let fingerprints = lanes_exec::chain_recorded(&store, &fingerprints);

    let mut steps = Vec::new();
    for (step, fingerprint) in lane.steps.iter().zip(&fingerprints) {
        if args.step.as_ref().is_some_and(|s| *s != step.name) {
            continue;
        }
        let key = fingerprint.key();
        let latest = store
            .latest(None, &lane.name, &step.name)
            .map_err(cache_error)?;
        let last = latest.as_ref().map(|h| Last {
            key: h.key.clone(),
            status: h.status.clone(),
            recorded_at: jiff::Timestamp::from_millisecond(h.recorded_at_ms as i64)
                .map(|t| t.to_string())
                .unwrap_or_default(),
        });
        let mut out = StepOutput {
            name: step.name.clone(),
            key: key.clone(),
            cache: "miss",
            saved_ms: None,
            changes: Vec::new(),
            note: None,
            last,
        };
        if !step.cache {
            out.cache = "disabled";
            out.note = Some("the step has `cache = false`: it runs every time".to_owned());
            steps.push(out);
            continue;
        }
        if let Lookup::Hit(result) = store.get_action(&key).map_err(cache_error)? {
            out.cache = "hit";
            out.saved_ms = Some(result.duration_ms);
            steps.push(out);
            continue;
        }
        let explained = explain_miss(&store, latest.as_ref(), &key, fingerprint, || {
            Some(inputs.iter().map(|f| (*f).clone()).collect())
        });
        out.changes = explained.changes;
        out.note = explained.note;
        steps.push(out);
    }

    let output = Output {
        lane: lane.name.clone(),
        inputs: inputs.len(),
        steps,
    };
    if args.json {
        printer.json(&output)?;
    } else {
        printer.out(&text(&output))?;
    }
    Ok(exit::SUCCESS)
}

fn text(output: &Output) -> String {
    let files = if output.inputs == 1 { "file" } else { "files" };
    let mut text = format!("lane {} ({} input {files})\n", output.lane, output.inputs);
    let width = output.steps.iter().map(|s| s.name.len()).max().unwrap_or(0);
    for step in &output.steps {
        let what = match (step.cache, step.saved_ms) {
            ("hit", Some(ms)) => format!("hit (saves {:.1}s)", ms as f64 / 1000.0),
            (cache, _) => cache.to_owned(),
        };
        let _ = writeln!(text, "  {:width$}  {what}  key {:.12}", step.name, step.key);
        for change in &step.changes {
            let _ = writeln!(text, "  {:width$}    {change}", "");
        }
        if let Some(note) = &step.note {
            let _ = writeln!(text, "  {:width$}    {note}", "");
        }
    }
    text
}

fn cache_error(e: CacheError) -> CliError {
    CliError::environment(format!("cannot read the cache: {e}"), None::<String>)
}
