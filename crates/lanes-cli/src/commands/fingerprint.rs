//! `lanes fingerprint`: what each step's key is made of.

use crate::args::FingerprintArgs;
use crate::cache_dir::cache_dir;
use crate::error::{CliError, exit};
use crate::printer::Printer;
use crate::workspace::Workspace;
use lanes_cache::LocalStore;
use lanes_core::fingerprint::StepFingerprint;
use lanes_core::{Catalog, FileEntry, Lane};
use serde::Serialize;
use std::fmt::Write as _;
use std::path::Path;

#[derive(Debug, Serialize)]
struct Output<'a> {
    lane: &'a str,
    steps: Vec<StepOutput<'a>>,
}

#[derive(Debug, Serialize)]
struct StepOutput<'a> {
    name: &'a str,
    key: String,
    fingerprint: &'a StepFingerprint,
}

/// The lane called `name`, or a usage error listing the lanes.
pub(crate) fn find_lane<'c>(catalog: &'c Catalog, name: &str) -> Result<&'c Lane, CliError> {
    catalog.lane(name).ok_or_else(|| {
        let names: Vec<&str> = catalog.lanes.iter().map(|l| l.name.as_str()).collect();
        CliError::usage(
            format!("no lane `{name}` in the catalog"),
            format!("lanes: {}", names.join(", ")),
        )
    })
}

/// Check that `lane` has a step called `step` (when one is asked for).
pub(crate) fn check_step(lane: &Lane, step: Option<&str>) -> Result<(), CliError> {
    if let Some(step) = step
        && !lane.steps.iter().any(|s| s.name == step)
    {
        let names: Vec<&str> = lane.steps.iter().map(|s| s.name.as_str()).collect();
        return Err(CliError::usage(
            format!("lane `{}` has no step `{step}`", lane.name),
            format!("steps: {}", names.join(", ")),
        ));
    }
    Ok(())
}

/// A lane's input files (sorted), their digest, and the fingerprint of each of its steps, as
/// `lanes run` (and the forge's agents) compute them on this machine.
pub(crate) fn lane_keys(
    catalog: &Catalog,
    lane: &Lane,
    files: &[FileEntry],
) -> (Vec<FileEntry>, String, Vec<StepFingerprint>) {
    let keys = lanes_engine::host::lane_keys(catalog, lane, files);
    let inputs = keys.inputs.into_iter().cloned().collect();
    (inputs, keys.digest, keys.fingerprints)
}

pub(crate) fn run(dir: &Path, args: &FingerprintArgs, printer: &Printer) -> Result<u8, CliError> {
    let workspace = Workspace::open(dir, args.revision.head.as_deref())?;
    let catalog = workspace.catalog()?;
    let lane = find_lane(&catalog, &args.lane)?;
    check_step(lane, args.step.as_deref())?;
    let files = workspace.files()?;
    let keys = lanes_engine::host::lane_keys(&catalog, lane, &files);
    // Each key covers what the step before it left: known from the results this cache recorded
    // (without a cache, only the first key is the one a run uses).
    let store = cache_dir()
        .ok()
        .filter(|dir| dir.join("v1").is_dir())
        .and_then(|dir| LocalStore::open(&dir).ok());
    let fingerprints = match store {
        Some(store) => lanes_exec::chain_recorded(&store, &keys.fingerprints),
        None => keys.fingerprints.clone(),
    };
    let steps: Vec<StepOutput<'_>> = fingerprints
        .iter()
        .filter(|f| args.step.as_ref().is_none_or(|s| *s == f.step))
        .map(|f| StepOutput {
            name: &f.step,
            key: f.key(),
            fingerprint: f,
        })
        .collect();

    if args.json {
        printer.json(&Output {
            lane: &lane.name,
            steps,
        })?;
        return Ok(exit::SUCCESS);
    }
    let mut text = format!(
        "lane {}: {} input files, digest {}\n",
        lane.name,
        keys.inputs.len(),
        keys.digest
    );
    for step in &steps {
        let f = step.fingerprint;
        let _ = writeln!(text, "step {}\n  key          {}", step.name, step.key);
        let _ = writeln!(text, "  shell        {}", f.shell);
        let _ = writeln!(
            text,
            "  command      {}",
            f.command.replace('\n', "\n               ")
        );
        for (k, v) in &f.env {
            let _ = writeln!(text, "  env          {k}={v}");
        }
        for (k, v) in &f.pass_env {
            let _ = writeln!(
                text,
                "  pass-env     {k} {}",
                v.as_deref().map_or("(unset)".to_owned(), |d| format!(
                    "(value digest {})",
                    &d[..12]
                ))
            );
        }
        for (k, v) in &f.pins {
            let _ = writeln!(text, "  pin          {k}={v}");
        }
        let _ = writeln!(
            text,
            "  network      {}",
            if f.network { "on" } else { "off" }
        );
        if !f.cache_mounts.is_empty() {
            let mounts: Vec<&str> = f.cache_mounts.iter().map(String::as_str).collect();
            let _ = writeln!(text, "  cache-mounts {}", mounts.join(", "));
        }
        if let Some(outputs) = &f.outputs {
            let _ = writeln!(text, "  outputs      {}", outputs.join(", "));
        }
        let _ = writeln!(text, "  platform     {}", f.platform);
        let _ = writeln!(
            text,
            "  previous     {}",
            f.previous.as_deref().unwrap_or("(first step)")
        );
        if f.previous.is_some() {
            let _ = writeln!(
                text,
                "  left         {}",
                f.previous_outputs
                    .as_deref()
                    .unwrap_or("(unknown until the previous step runs)")
            );
        }
    }
    printer.out(&text)?;
    Ok(exit::SUCCESS)
}
