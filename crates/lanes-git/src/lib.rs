//! Repository access for lanes.
//!
//! This crate turns a git repository into the values `lanes-core` decides on: commit ids
//! ([`Repo::resolve`], [`Repo::default_base`], [`Repo::merge_base`]), changed paths for lane
//! selection ([`Repo::changed_paths`], [`Repo::changed_paths_worktree`]), files at a commit
//! ([`Repo::read_file_at`], for the catalog), and filesets with content ids for step keys
//! ([`Repo::files_at`], [`Repo::files_worktree`]), and a fileset written into a lane's directory
//! ([`Repo::materialize`]), and the branches a forge polls ([`Repo::branches`],
//! [`Repo::head_branch`]).
//!
//! Everything goes through gix, in process: no `git` binary is needed at run time. The crate
//! never writes to the repository: no refs, objects or index; `materialize` writes only below
//! the directory it is given. It makes no decisions either: which
//! lanes a changed path selects, or what a fileset's digest is, belongs to `lanes-core`.
//!
//! Errors are [`GitError`]s whose messages stand alone and whose [`GitError::help`] says what to
//! do next (for example, how to deepen a shallow clone).

mod diff;
mod error;
mod fetch;
mod files;
mod materialize;
mod refs;
mod repo;
mod revision;

pub use error::GitError;
pub use fetch::fetch_branches;
pub use materialize::Materialized;
pub use refs::Branch;
pub use repo::{CommitId, Repo};
