//! What a job needs before its lane can run, read from the commit under test: the repository,
//! the catalog at that commit (its pins file included), the lane, its files and its keys.
//!
//! Everything is read at the assignment's commit, never from a working tree, and the keys are
//! made by [`crate::host`] exactly as `lanes run --head <commit>` makes them, after the lane's
//! pins were held against this host ([`crate::host::check_lane_pins`]). A failure here ends the
//! job in the state of its class ([`crate::job::ending`]); this module reads and runs pin
//! commands, nothing else, and reports nothing.

use crate::fileset::RepoFileset;
use crate::host::{PinCheck, check_lane_pins, lane_keys};
use crate::link::Assignment;
use lanes_core::job::JobReason;
use lanes_core::{Catalog, CatalogError, ErrorClass, Lane, StepFingerprint};
use lanes_git::{CommitId, GitError, Repo};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

pub use lanes_engine::catalog::CATALOG_PATH;
use lanes_engine::catalog::{self, LoadError};

/// Why a job's lane could not be run at all. Each is the job's message when it ends.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// The repository or the commit could not be read.
    #[error("failed to read commit {head} in {}: {source}", git_dir.display())]
    Git {
        /// The commit asked for.
        head: String,
        /// The repository.
        git_dir: PathBuf,
        /// Why.
        source: GitError,
    },
    /// The commit has no catalog.
    #[error("no {CATALOG_PATH} at commit {head}")]
    NoCatalog {
        /// The commit.
        head: String,
    },
    /// The catalog could not be read (not UTF-8, a broken object).
    #[error("failed to read {CATALOG_PATH} at commit {head}: {why}")]
    Unreadable {
        /// The commit.
        head: String,
        /// Why.
        why: String,
    },
    /// The catalog at the commit does not validate.
    #[error("the catalog at commit {head} is invalid:\n{}", render(.error))]
    Catalog {
        /// The commit.
        head: String,
        /// Every problem.
        error: CatalogError,
    },
    /// The catalog at the commit has no such lane.
    #[error("no lane `{lane}` in the catalog at commit {head} (lanes: {})", known.join(", "))]
    NoLane {
        /// The lane asked for.
        lane: String,
        /// The commit.
        head: String,
        /// The lanes it has.
        known: Vec<String>,
    },
    /// A pin the lane uses does not match this host: nothing may run, be restored or be
    /// recorded under keys that say otherwise.
    #[error("{}", .0.message())]
    PinMismatch(PinCheck),
}

impl PrepareError {
    /// Whose problem it is: never the commit's. The forge only makes jobs for the lanes of a
    /// catalog it read and validated at that very commit, so an agent that cannot find the
    /// commit, its catalog or the lane, or reads the catalog otherwise, disagrees with the forge
    /// about the repository (a clone behind it, an agent of another version); a pin that does
    /// not match is this host's tools.
    pub fn class(&self) -> ErrorClass {
        match self {
            PrepareError::Git { .. }
            | PrepareError::NoCatalog { .. }
            | PrepareError::Unreadable { .. }
            | PrepareError::Catalog { .. }
            | PrepareError::NoLane { .. }
            | PrepareError::PinMismatch(_) => ErrorClass::Environment,
        }
    }

    /// The job's reason when this error ends it, for the errors that have one.
    pub fn reason(&self) -> Option<JobReason> {
        match self {
            PrepareError::PinMismatch(check) => Some(check.reason()),
            _ => None,
        }
    }
}

/// A lane ready to run.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub(crate) catalog: Catalog,
    /// Index of the lane in the catalog.
    pub(crate) lane: usize,
    pub(crate) fingerprints: Vec<StepFingerprint>,
    pub(crate) fileset: RepoFileset,
    /// The repository's directories, for the sandbox to hide.
    pub(crate) repo_dirs: Vec<PathBuf>,
}

impl Prepared {
    pub(crate) fn lane(&self) -> &Lane {
        &self.catalog.lanes[self.lane]
    }
}

/// Reads everything `assignment`'s lane needs at its commit. Blocking (git reads).
pub(crate) fn prepare(assignment: &Assignment) -> Result<Prepared, PrepareError> {
    let git = |source| PrepareError::Git {
        head: assignment.head.clone(),
        git_dir: assignment.git_dir.clone(),
        source,
    };
    let repo = Repo::discover(&assignment.git_dir).map_err(git)?;
    let head = repo.resolve(&assignment.head).map_err(git)?;
    let catalog = catalog_at(&repo, &head)?;
    let Some(lane) = catalog.lanes.iter().position(|l| l.name == assignment.lane) else {
        return Err(PrepareError::NoLane {
            lane: assignment.lane.clone(),
            head: head.as_str().to_owned(),
            known: catalog.lanes.iter().map(|l| l.name.clone()).collect(),
        });
    };
    // Before anything is read for the keys: a host that does not match has no keys.
    check_lane_pins(&catalog, &catalog.lanes[lane]).map_err(PrepareError::PinMismatch)?;
    let files = Arc::new(repo.files_at(&head).map_err(git)?);
    let keys = lane_keys(&catalog, &catalog.lanes[lane], &files);
    let (digest, fingerprints) = (keys.digest, keys.fingerprints);
    let repo_dirs = repo.dirs();
    let fileset = RepoFileset::new(repo, files, &catalog.lanes[lane], digest);
    Ok(Prepared {
        catalog,
        lane,
        fingerprints,
        fileset,
        repo_dirs,
    })
}

/// The catalog at `head`, its pins file read at the same commit (lanes-engine's one loader).
fn catalog_at(repo: &Repo, head: &CommitId) -> Result<Catalog, PrepareError> {
    let head_text = head.as_str().to_owned();
    catalog::load(catalog::From::Commit(repo, head)).map_err(|e| match e {
        LoadError::Missing { .. } => PrepareError::NoCatalog { head: head_text },
        LoadError::Invalid(error) => PrepareError::Catalog {
            head: head_text,
            error,
        },
        other => PrepareError::Unreadable {
            head: head_text,
            why: other.to_string(),
        },
    })
}

/// One line per diagnostic (`file:line:column: message [code]`), its help indented below.
fn render(error: &CatalogError) -> String {
    let mut out = String::new();
    for d in &error.diagnostics {
        let _ = write!(
            out,
            "  {}:{}:{}: {} [{}]",
            d.file, d.line, d.column, d.message, d.code
        );
        if let Some(help) = &d.help {
            let _ = write!(out, "\n    help: {help}");
        }
        out.push('\n');
    }
    out.pop();
    out
}
