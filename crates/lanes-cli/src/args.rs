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
