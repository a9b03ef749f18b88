//! Everything that can go wrong while reading a repository, and what the user can do about it.

use lanes_core::ErrorClass;
use std::path::PathBuf;

use crate::CommitId;

/// An error from [`Repo`](crate::Repo).
///
/// Messages stand alone ("unknown revision `nope`"); [`GitError::help`] says what to do next, so
/// the CLI can print both without knowing the variants.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// Neither the directory nor any parent holds a git repository.
    #[error("not a git repository: {} (or any parent directory)", path.display())]
    NotARepository {
        /// Where the search started.
        path: PathBuf,
    },

    /// The revision does not name anything in this repository.
    #[error("unknown revision `{rev}`")]
    UnknownRevision {
        /// The revision as the user wrote it.
        rev: String,
        /// Why the name did not resolve (not found, ambiguous, malformed).
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// The revision names an object that does not lead to a commit, like `HEAD:README.md`.
    #[error("revision `{rev}` is a {kind}, not a commit")]
    NotACommit {
        /// The revision as the user wrote it.
        rev: String,
        /// What it names instead: `tree` or `blob`.
        kind: String,
    },

    /// No revision to compare against was given and none could be guessed.
    #[error(
        "no default base branch found (looked for the remote's default branch, `main` and `master`)"
    )]
    NoDefaultBase,

    /// The commits share history, but not within the part of it this shallow clone has.
    #[error("the merge-base of `{base:.12}` and `{head:.12}` is not in this shallow clone")]
    ShallowClone {
        /// The first commit given to [`Repo::merge_base`](crate::Repo::merge_base).
        base: CommitId,
        /// The second commit given to [`Repo::merge_base`](crate::Repo::merge_base).
        head: CommitId,
    },

    /// A working-tree file changed between being keyed and being copied into a lane directory.
    #[error("`{path}` changed while lanes was reading it")]
    ChangedWhileReading {
        /// The repository-relative path.
        path: String,
    },

    /// The commits have no common ancestor (unrelated histories).
    #[error("`{base:.12}` and `{head:.12}` have no common ancestor")]
    NoMergeBase {
        /// The first commit given to [`Repo::merge_base`](crate::Repo::merge_base).
        base: CommitId,
        /// The second commit given to [`Repo::merge_base`](crate::Repo::merge_base).
        head: CommitId,
    },

    /// A working-tree operation was asked of a repository that has no working tree.
    #[error("the repository at {} is bare: it has no working tree", path.display())]
    Bare {
        /// The repository's git directory.
        path: PathBuf,
    },

    /// A path in the repository is not UTF-8, so it cannot be matched by globs or keyed.
    #[error("path is not valid UTF-8: {path}")]
    NonUtf8Path {
        /// The path, with invalid bytes replaced by U+FFFD.
        path: String,
    },

    /// Reading the repository or the working tree failed (a corrupt object, an unreadable file).
    #[error("failed to {context}")]
    Other {
        /// What was being done, phrased to follow "failed to".
        context: String,
        /// The underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl GitError {
    /// Whose problem it is. A name the user gave (a revision, the directory, a base without
    /// shared history) is their input; a repository that lacks what was asked of it through no
    /// typo (the history a shallow clone cut off, a file changing under lanes, an unreadable
    /// object) is the environment.
    pub fn class(&self) -> ErrorClass {
        match self {
            GitError::NotARepository { .. }
            | GitError::UnknownRevision { .. }
            | GitError::NotACommit { .. }
            | GitError::NoDefaultBase
            | GitError::NoMergeBase { .. }
            | GitError::Bare { .. }
            | GitError::NonUtf8Path { .. } => ErrorClass::Input,
            GitError::ShallowClone { .. }
            | GitError::ChangedWhileReading { .. }
            | GitError::Other { .. } => ErrorClass::Environment,
        }
    }

    /// The "what to do next" line for the user, if there is a useful one.
    pub fn help(&self) -> Option<String> {
        match self {
            GitError::NotARepository { .. } => {
                Some("run lanes from inside a git working tree".to_owned())
            }
            GitError::UnknownRevision { rev, .. } => Some(format!(
                "check the name with `git rev-parse --verify {rev}`; in a shallow or \
                 single-branch clone, fetch it first (`git fetch origin <branch>`)"
            )),
            GitError::NotACommit { .. } => Some("pass a branch, a tag or a commit id".to_owned()),
            GitError::NoDefaultBase => Some("pass --base <revision> or set LANES_BASE".to_owned()),
            GitError::ShallowClone { .. } => Some(
                "fetch more history: `git fetch --unshallow` (or `--deepen=N`); in CI, check out \
                 with full history (fetch-depth: 0)"
                    .to_owned(),
            ),
            GitError::NoMergeBase { .. } => {
                Some("pass a --base <revision> that shares history with the head".to_owned())
            }
            GitError::Bare { .. } => Some(
                "use a clone with a working tree, or test a commit instead of the working tree"
                    .to_owned(),
            ),
            GitError::NonUtf8Path { .. } => {
                Some("rename the file: lanes only supports UTF-8 paths".to_owned())
            }
            GitError::ChangedWhileReading { .. } => Some(
                "something is writing to the working tree; run again once it is quiet, or test a \
                 commit with --head"
                    .to_owned(),
            ),
            GitError::Other { .. } => None,
        }
    }

    /// Wrap a lower-level error with what was being attempted ("read the index").
    pub(crate) fn other(
        context: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        GitError::Other {
            context: context.into(),
            source: source.into(),
        }
    }
}

/// Attach a "failed to …" context to gix and I/O results.
pub(crate) trait Context<T> {
    /// Turn the error into [`GitError::Other`] with `context` computed only on failure.
    fn context<C: Into<String>>(self, context: impl FnOnce() -> C) -> Result<T, GitError>;
}

impl<T, E> Context<T> for Result<T, E>
where
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn context<C: Into<String>>(self, context: impl FnOnce() -> C) -> Result<T, GitError> {
        self.map_err(|source| GitError::other(context(), source))
    }
}
