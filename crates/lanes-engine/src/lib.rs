//! The engine `lanes run` and the forge's agents share, so a laptop and an agent compute the
//! same keys, read the same catalog and run a lane the same way:
//!
//! - [`catalog`]: the one loader of the catalog (and its pins file) at a commit or in a working
//!   tree, strict about UTF-8; the CLI, the agents and the forge's trigger all use it;
//! - [`fileset`]: a lane's files in a git repository, as the executor's `Fileset`;
//! - [`host`]: the host's part of step keys, the base environment, pins held against the host;
//! - [`summary`]: a lane's one-line summary, as `lanes run` and the job log print it.
//!
//! Running the lane itself is `lanes_exec::run_lane`; git access is `lanes-git`'s.

pub mod catalog;
pub mod fileset;
pub mod host;
pub mod summary;

/// How long a step gets between SIGTERM and SIGKILL when it is cancelled or times out.
pub const DEFAULT_GRACE: std::time::Duration = std::time::Duration::from_secs(5);
