//! `lanes select`: the lanes a change selects, with reasons.

use crate::args::SelectArgs;
use crate::error::{CliError, exit};
use crate::printer::Printer;
use crate::workspace::{CATALOG_PATH, Workspace};
use lanes_core::select::LaneSelection;
use lanes_core::{Reason, Trigger};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// The `--json` document. Field order is the documented order.
#[derive(Debug, Serialize)]
struct Output<'a> {
    base: &'a str,
    merge_base: &'a str,
    head: Option<&'a str>,
    changed: &'a [String],
    lanes: &'a [LaneSelection],
}

pub(crate) fn run(dir: &Path, args: &SelectArgs, printer: &Printer) -> Result<u8, CliError> {
    let workspace = Workspace::open(dir, args.revision.head.as_deref())?;
    let catalog = workspace.catalog()?;
    let repo = &workspace.repo;
    let base_rev = match args.base.as_deref().filter(|b| !b.is_empty()) {
        Some(rev) => rev.to_owned(),
        None => repo.default_base()?,
    };
    let base = repo.resolve(&base_rev)?;
    let head = workspace.head_commit()?;
    let merge_base = repo.merge_base(&base, &head)?;
    let changed = workspace.changed_since(&merge_base)?;
    let trigger = if args.all {
        Trigger::All
    } else {
        Trigger::Changed {
            paths: &changed,
            catalog_path: CATALOG_PATH,
        }
    };
    let selection = lanes_core::select(&catalog, trigger);

    if args.json {
        printer.json(&Output {
            base: base.as_str(),
            merge_base: merge_base.as_str(),
            head: workspace.head.as_ref().map(|h| h.as_str()),
            changed: &changed,
            lanes: &selection.lanes,
        })?;
        return Ok(exit::SUCCESS);
    }

    let mut text = String::new();
    let head_text = match &workspace.head {
        Some(h) => short(h.as_str()).to_owned(),
        None => "working tree".to_owned(),
    };
    let _ = writeln!(
        text,
        "base {base_rev} ({}), merge-base {}, head {head_text}: {} changed path{}",
        short(base.as_str()),
        short(merge_base.as_str()),
        changed.len(),
        plural(changed.len())
    );
    let selected: Vec<&LaneSelection> = selection.selected().collect();
    let _ = writeln!(
        text,
        "selected {} of {} lanes",
        selected.len(),
        selection.lanes.len()
    );
    let width = selected.iter().map(|l| l.name.len()).max().unwrap_or(0);
    for lane in &selected {
        let more = match lane.reasons.len() {
            1 => String::new(),
            n => format!(" (+{} more)", n - 1),
        };
        let _ = writeln!(
            text,
            "  {:width$}  {:8}  {}{more}",
            lane.name,
            lane.class.as_str(),
            describe(&lane.reasons[0]),
        );
    }
    let mut skipped: BTreeMap<String, usize> = BTreeMap::new();
    for lane in selection.skipped() {
        *skipped.entry(describe(&lane.reasons[0])).or_default() += 1;
    }
    let total: usize = skipped.values().sum();
    if total > 0 {
        let counts: Vec<String> = skipped
            .iter()
            .map(|(why, n)| format!("{why}: {n}"))
            .collect();
        let _ = writeln!(
            text,
            "skipped {total} lane{} ({})",
            plural(total),
            counts.join(", ")
        );
    }
    printer.out(&text)?;
    Ok(exit::SUCCESS)
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// A reason in words (lanes-core's one wording).
pub(crate) fn describe(reason: &Reason) -> String {
    reason.to_string()
}
