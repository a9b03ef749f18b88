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
    /// Check this host against the catalog: its pins, the step sandbox, cgroups, free disk.
    Doctor(DoctorArgs),
    /// Look after the step cache.
    #[command(subcommand)]
    Cache(CacheCommand),
    /// Show a branch's CI status on the forge: its latest run and each lane's job.
    Status(StatusArgs),
    /// Wait until the forge has run a branch's head, then show its status (exit 0 passed, 1 not,
    /// 3 timed out).
    Wait(WaitArgs),
    /// Print a lane's job log from the forge, or follow it while it runs.
    Logs(LogsArgs),
    /// Rerun a lane's job, or every job of a run that did not pass.
    Rerun(RerunArgs),
    /// Cancel a lane's job, or every open job of a run.
    Cancel(CancelArgs),
    /// Tell the forge about pushes: the repository's post-receive hook.
    #[command(subcommand)]
    Hook(HookCommand),
    /// Run the forge: watch repositories, turn every new branch head into a run, schedule its
    /// jobs onto agents (a built-in one by default), serve the JSON API.
    Serve(ServeArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// The server's configuration file (TOML; see docs/forge.md).
    #[arg(long, value_name = "PATH")]
    pub(crate) config: Option<PathBuf>,
    /// Where the database and the job logs live [default: $XDG_DATA_HOME/lanes, else
    /// ~/.local/share/lanes]
    #[arg(long, value_name = "DIR", env = "LANES_DATA_DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// The address to serve the API on [default: 127.0.0.1:8080]
    #[arg(long, value_name = "ADDR")]
    pub(crate) listen: Option<String>,
    /// A local git repository (bare or not) to watch; repeatable. Named after its directory,
    /// without `.git`.
    #[arg(long = "repo", value_name = "PATH")]
    pub(crate) repos: Vec<PathBuf>,
    /// How often to read the repositories' refs: 10s, 1m [default: 10s]
    #[arg(long, value_name = "DURATION")]
    pub(crate) poll_interval: Option<String>,
    /// Do not run the built-in agent: only remote agents run jobs.
    #[arg(long)]
    pub(crate) no_local_agent: bool,
    /// Jobs the built-in agent runs at once [default: the number of cores]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) agent_capacity: Option<u32>,
    /// Answer read requests (GET) without a token.
    #[arg(long)]
    pub(crate) public_read: bool,
    /// How often agents heartbeat their jobs: 10s [default: 10s]
    #[arg(long, value_name = "DURATION")]
    pub(crate) heartbeat: Option<String>,
    /// How long a lease lasts without a heartbeat: 30s [default: 30s]
    #[arg(long, value_name = "DURATION")]
    pub(crate) lease: Option<String>,
    /// Run steps without the sandbox: they can read the forge's data, tokens and other jobs.
    /// Only for development with trusted code [default: every step behind the sandbox; the
    /// forge refuses to start when it cannot make one].
    #[arg(long)]
    pub(crate) no_sandbox: bool,
    /// Who steps run as: a user name, UID or UID:GID [default when root: `lanes-step` if it
    /// exists, else `nobody`; never the forge's own user]
    #[arg(long, value_name = "USER")]
    pub(crate) step_user: Option<String>,
    /// A directory under a hidden one (the forge user's home) that steps may read and run, such
    /// as a rustup install: `--step-expose ~/.rustup --step-expose ~/.cargo/bin` (repeatable)
    #[arg(long, value_name = "DIR")]
    pub(crate) step_expose: Vec<PathBuf>,
}

/// Which forge, and which of its repositories: shared by the commands that talk to `lanes serve`.
#[derive(Debug, Args)]
pub(crate) struct ForgeArgs {
    /// The forge's address, http:// only [default: http://127.0.0.1:8080]
    #[arg(long, value_name = "URL", env = "LANES_SERVER")]
    pub(crate) server: Option<String>,
    /// The repository's name on the forge [default: the one named like this repository's
    /// directory, else the forge's only one]
    #[arg(long, value_name = "NAME", env = "LANES_REPO")]
    pub(crate) repo: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// The branch [default: the current branch]
    #[arg(value_name = "BRANCH")]
    pub(crate) branch: Option<String>,
    #[command(flatten)]
    pub(crate) forge: ForgeArgs,
    /// Print the forge's branch-status object instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct WaitArgs {
    /// The branch [default: the current branch]
    #[arg(value_name = "BRANCH")]
    pub(crate) branch: Option<String>,
    /// Wait for the run of this commit [default: the local branch's head, else the forge's]
    #[arg(long, value_name = "REV")]
    pub(crate) head: Option<String>,
    /// Give up after this long (exit 3): 90s, 30m, 1h30m [default: wait as long as it takes]
    #[arg(long, value_name = "DURATION")]
    pub(crate) timeout: Option<String>,
    /// Stop once every required lane has finished, without waiting for the others.
    #[arg(long)]
    pub(crate) required: bool,
    #[command(flatten)]
    pub(crate) forge: ForgeArgs,
    /// Print the forge's branch-status object instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct LogsArgs {
    /// The branch.
    #[arg(value_name = "BRANCH")]
    pub(crate) branch: String,
    /// The lane.
    #[arg(value_name = "LANE")]
    pub(crate) lane: String,
    /// Keep printing while the job runs; exit 0 if it passed, 1 if not.
    #[arg(short, long)]
    pub(crate) follow: bool,
    /// The run [default: the branch's latest run]
    #[arg(long = "run", value_name = "N")]
    pub(crate) run: Option<u64>,
    #[command(flatten)]
    pub(crate) forge: ForgeArgs,
}

/// The job or run `rerun` and `cancel` act on.
#[derive(Debug, Args)]
pub(crate) struct JobTarget {
    /// The branch [default: the current branch; not needed with --run]
    #[arg(value_name = "BRANCH")]
    pub(crate) branch: Option<String>,
    /// Only this lane's newest job [default: the whole run]
    #[arg(long, value_name = "LANE")]
    pub(crate) lane: Option<String>,
    /// The run [default: the branch's latest run]
    #[arg(long = "run", value_name = "N")]
    pub(crate) run: Option<u64>,
    #[command(flatten)]
    pub(crate) forge: ForgeArgs,
    /// Print the forge's answer instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct RerunArgs {
    #[command(flatten)]
    pub(crate) target: JobTarget,
}

#[derive(Debug, Args)]
pub(crate) struct CancelArgs {
    #[command(flatten)]
    pub(crate) target: JobTarget,
}

#[derive(Debug, Subcommand)]
pub(crate) enum HookCommand {
    /// Write a post-receive hook into a repository that tells the forge about every push.
    Install(HookInstallArgs),
    /// Tell the forge to read a repository's refs now (what the hook runs). Never fails.
    Notify(HookNotifyArgs),
}

#[derive(Debug, Args)]
pub(crate) struct HookInstallArgs {
    /// The repository (bare or not) the forge watches.
    #[arg(long, value_name = "PATH")]
    pub(crate) repo: PathBuf,
    /// The forge's address the hook calls, http:// only [default: http://127.0.0.1:8080]
    #[arg(long, value_name = "URL", env = "LANES_SERVER")]
    pub(crate) server: Option<String>,
    /// The repository's name on the forge [default: its directory name, without `.git`]
    #[arg(long, value_name = "NAME")]
    pub(crate) name: Option<String>,
    /// Replace a post-receive hook that lanes did not write.
    #[arg(long)]
    pub(crate) force: bool,
}

#[derive(Debug, Args)]
pub(crate) struct HookNotifyArgs {
    /// The forge's address [default: http://127.0.0.1:8080]
    #[arg(long, value_name = "URL", env = "LANES_SERVER")]
    pub(crate) server: Option<String>,
    /// The repository's name on the forge.
    #[arg(long, value_name = "NAME")]
    pub(crate) repo: String,
}

#[derive(Debug, Args)]
pub(crate) struct DoctorArgs {
    #[command(flatten)]
    pub(crate) revision: RevisionArgs,
    /// Run the `ensure` command of each pin that does not match, then check it again.
    #[arg(long)]
    pub(crate) ensure: bool,
    /// Print one JSON document instead of text.
    #[arg(long)]
    pub(crate) json: bool,
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
