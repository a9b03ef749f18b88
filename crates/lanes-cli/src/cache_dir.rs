//! Where `lanes run` keeps its cache, lane directories, logs and reports.
//!
//! ```text
//! $LANES_CACHE_DIR (default $XDG_CACHE_HOME/lanes, else ~/.cache/lanes)
//!   v1/              the step cache (lanes-cache): blobs, action results, history, stats
//!   work/LANE/N/     lane directories: src/ (the fileset), home/, tmp/; slot N is locked by N.lock
//!   mounts/SCOPE/    cache mounts: NAME/ and NAME.lock
//!   runs/RUN_ID/     report.json and logs/LANE/STEP.log of each run
//! ```

use crate::error::CliError;
use std::path::PathBuf;

/// How many finished runs keep their logs and report under `runs/`.
pub(crate) const KEEP_RUNS: usize = 50;

/// The cache directory, from the environment.
pub(crate) fn cache_dir() -> Result<PathBuf, CliError> {
    let var = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(dir) = var("LANES_CACHE_DIR") {
        return Ok(std::path::absolute(&dir).unwrap_or(dir));
    }
    if let Some(dir) = var("XDG_CACHE_HOME").filter(|d| d.is_absolute()) {
        return Ok(dir.join("lanes"));
    }
    if let Some(home) = var("HOME") {
        return Ok(home.join(".cache").join("lanes"));
    }
    Err(CliError::environment(
        "no cache directory: LANES_CACHE_DIR, XDG_CACHE_HOME and HOME are all unset",
        "set LANES_CACHE_DIR to a directory lanes may write to".to_owned(),
    ))
}
