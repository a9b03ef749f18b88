//! What a forge operation can fail with, and the one place a failure gets its API code and
//! HTTP status.

use crate::trigger::TriggerError;
use lanes_core::schedule::Rejected;
use lanes_store::{ErrorClass, StoreError};

/// A forge operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ForgeError {
    /// The repository, branch, run, job or lane does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The action does not apply in the current state.
    #[error("{0}")]
    Conflict(String),
    /// A malformed request.
    #[error("{0}")]
    BadRequest(String),
    /// An agent's report about a job it no longer holds.
    #[error(transparent)]
    Rejected(#[from] Rejected),
    /// A bug or an inconsistency in the forge's own state (a task that panicked, open jobs the
    /// scheduler refuses).
    #[error("internal error: {0}")]
    Internal(String),
    /// The store failed.
    #[error("failed to read or write the forge state: {0}")]
    Store(#[from] StoreError),
    /// Turning a head into a run failed.
    #[error(transparent)]
    Trigger(#[from] TriggerError),
    /// Reading a repository failed.
    #[error("failed to read the repository: {0}")]
    Git(#[from] lanes_git::GitError),
    /// The machine refused a file operation (out of file descriptors, a permission).
    #[error("failed to {action} {}: {source}", path.display())]
    Io {
        /// What was being done, phrased to follow "failed to".
        action: &'static str,
        /// The file or directory.
        path: std::path::PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl ForgeError {
    /// The API's stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            ForgeError::NotFound(_) => "not-found",
            ForgeError::Conflict(_) => "conflict",
            ForgeError::BadRequest(_) => "bad-request",
            ForgeError::Rejected(Rejected::NotAnOutcome { .. }) => "bad-request",
            ForgeError::Rejected(_) => "stale-token",
            ForgeError::Internal(_) => "internal",
            ForgeError::Store(e) => match e.class() {
                ErrorClass::NotFound => "not-found",
                ErrorClass::StaleToken => "stale-token",
                ErrorClass::Conflict => "conflict",
                ErrorClass::Input => "bad-request",
                ErrorClass::Environment | ErrorClass::Internal => "internal",
            },
            ForgeError::Trigger(_) | ForgeError::Git(_) | ForgeError::Io { .. } => "internal",
        }
    }

    /// The HTTP status of [`ForgeError::code`].
    pub fn status(&self) -> u16 {
        match self.code() {
            "not-found" => 404,
            "conflict" | "stale-token" => 409,
            "bad-request" => 400,
            _ => 500,
        }
    }

    /// True when the data directory's disk is full (the forge says so once, not per call).
    pub fn is_disk_full(&self) -> bool {
        match self {
            ForgeError::Store(e) | ForgeError::Trigger(TriggerError::Store(e)) => e.is_disk_full(),
            _ => false,
        }
    }

    /// What a response (the API's JSON error, the UI's error page) says of it: its status and
    /// message. A server error is logged; something missing or taken is the caller's business,
    /// not a storage failure, and is said plainly ("repository `web` not found").
    pub(crate) fn reply(&self) -> (u16, String) {
        let status = self.status();
        if status >= 500 && !self.is_disk_full() {
            tracing::error!("{self}");
        }
        let message = match self {
            ForgeError::Store(inner) if status < 500 => inner.to_string(),
            _ => self.to_string(),
        };
        (status, message)
    }
}

/// The result of a forge operation.
pub type ForgeResult<T> = Result<T, ForgeError>;
