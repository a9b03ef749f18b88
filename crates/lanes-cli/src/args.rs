//! Command-line arguments. clap types only: no behavior lives here.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// lanes: CI for monorepos. Selects the lanes a change affects and says why.
#[derive(Debug, Parser)]
#[command(name = "lanes", version, about, propagate_version = true)]
pub(crate) struct Cli {
    /// Run as if lanes was started in DIR.
    #[arg(short = 'C', global = true, value_name = "DIR")]
    pub(crate) directory: Option<PathBuf>,

    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Validate the lane catalog (lanes.toml) and report every error at once.
    Check(CheckArgs),
    /// List the lanes a change selects, each with its reasons, and the skipped ones with theirs.
    Select(SelectArgs),
    /// Print the fingerprint and key of each step of a lane.
    Fingerprint(FingerprintArgs),
    /// Run the selected lanes (or the named ones) here, reusing every step result seen before.
    Run(RunArgs),
    /// Say, step by step, whether a lane's steps would hit the cache, and why not.
    Explain(ExplainArgs),
    /// Look after the step cache.
    #[command(subcommand)]
    Cache(CacheCommand),
}

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// Lanes to run, with the lanes they need [default: the lanes the change selects]
    #[arg(value_name = "LANE")]
    pub(crate) lanes: Vec<String>,
    /// The branch the change is compared against, via its merge-base with the head [default:
    /// the remote's default branch, then main, then master]
    #[arg(long, value_name = "REV", env = "LANES_BASE")]
    pub(crate) base: Option<String>,
    #[command(flatten)]
    pub(crate) revision: RevisionArgs,
    /// Run every required and advisory lane, whatever changed.
    #[arg(long, conflicts_with = "lanes")]
    pub(crate) all: bool,
    /// Lanes run at once [default: the number of cores]
    #[arg(short = 'j', long = "jobs", value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) jobs: Option<u32>,
    /// Also write the JSON report here [default: only in the cache directory]
    #[arg(long, value_name = "PATH")]
    pub(crate) report: Option<PathBuf>,
    /// Run every step, reusing nothing (results are still recorded).
    #[arg(long)]
    pub(crate) no_cache: bool,
    /// Keep starting lanes after a required lane failed [default: stop starting new lanes].
    #[arg(long)]
    pub(crate) keep_going: bool,
    /// Stream every step's output as it runs.
    #[arg(short, long)]
    pub(crate) verbose: bool,
    /// Let steps see the repository and the cache directory by absolute path [default: hide
    /// them, on Linux].
    #[arg(long)]
    pub(crate) no_sandbox: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ExplainArgs {
    /// The lane.
    pub(crate) lane: String,
    /// Explain only this step.
    #[arg(long, value_name = "NAME")]
    pub(crate) step: Option<String>,
    #[command(flatten)]
    pub(crate) revision: RevisionArgs,
    /// Print a JSON object instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum CacheCommand {
    /// Entries, bytes, hits, misses and time saved.
    Stats {
        /// Print a JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Evict least recently used entries (never one a running `lanes run` uses).
    Gc {
        /// Evict until the cache is at most this big: 500M, 10G, 1T (powers of 1024) or bytes.
        #[arg(long, value_name = "SIZE")]
        max_size: Option<String>,
        /// Evict entries not used for this long: 30m, 12h, 7d.
        #[arg(long, value_name = "DURATION")]
        max_age: Option<String>,
        /// Print a JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    /// The catalog to check [default: lanes.toml at the root of the repository]
    #[arg(long, value_name = "PATH")]
    pub(crate) manifest: Option<PathBuf>,
    /// Print a JSON object instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

/// Which change to look at: shared by `select` and `fingerprint`.
#[derive(Debug, Args)]
pub(crate) struct RevisionArgs {
    /// The commit under test [default: the working tree, with staged, unstaged and untracked
    /// files]
    #[arg(long, value_name = "REV")]
    pub(crate) head: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct SelectArgs {
    /// The branch the change is compared against, via its merge-base with the head [default:
    /// the remote's default branch, then main, then master]
    #[arg(long, value_name = "REV", env = "LANES_BASE")]
    pub(crate) base: Option<String>,
    #[command(flatten)]
    pub(crate) revision: RevisionArgs,
    /// Select every required and advisory lane, whatever changed.
    #[arg(long)]
    pub(crate) all: bool,
    /// Print a JSON object instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct FingerprintArgs {
    /// The lane.
    pub(crate) lane: String,
    /// Show only this step (keys still chain through the steps before it).
    #[arg(long, value_name = "NAME")]
    pub(crate) step: Option<String>,
    #[command(flatten)]
    pub(crate) revision: RevisionArgs,
    /// Print a JSON object instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}
