//! What a forge operation can fail with, and the one place a failure gets its API code and
//! HTTP status.

use crate::trigger::TriggerError;
use lanes_core::ErrorClass;
use lanes_core::schedule::Rejected;
use lanes_store::{ErrorKind, StoreError};

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
    /// Whose problem it is. A name that does not exist, a request that does not apply and a
    /// report from an agent that lost its job are the caller's; the store's errors say their own
    /// class. Turning a head into a run is the forge's own doing, never a request's: its
    /// failures, like the forge's repositories and files, are its environment (no request names
    /// a revision, so a git error is never the caller's typo), but for a value the store cannot
    /// read. A broken invariant is a bug.
    pub fn class(&self) -> ErrorClass {
        match self {
            ForgeError::NotFound(_)
            | ForgeError::Conflict(_)
            | ForgeError::BadRequest(_)
            | ForgeError::Rejected(_) => ErrorClass::Input,
            ForgeError::Store(e) => e.class(),
            ForgeError::Trigger(TriggerError::Store(e)) if e.class() == ErrorClass::Bug => {
                ErrorClass::Bug
            }
            ForgeError::Trigger(_) | ForgeError::Git(_) | ForgeError::Io { .. } => {
                ErrorClass::Environment
            }
            ForgeError::Internal(_) => ErrorClass::Bug,
        }
    }

    /// The API's stable error code: for the caller's errors, what they got wrong; otherwise the
    /// class's.
    pub fn code(&self) -> &'static str {
        match self.class() {
            ErrorClass::Input => match self {
                ForgeError::NotFound(_) => "not-found",
                ForgeError::Conflict(_) => "conflict",
                ForgeError::Rejected(Rejected::NotAnOutcome { .. }) => "bad-request",
                ForgeError::Rejected(_) => "stale-token",
                ForgeError::Store(e) => match e.kind() {
                    ErrorKind::NotFound => "not-found",
                    ErrorKind::StaleToken => "stale-token",
                    ErrorKind::Conflict => "conflict",
                    _ => "bad-request",
                },
                _ => "bad-request",
            },
            ErrorClass::Environment => "unavailable",
            ErrorClass::Bug => "internal",
        }
    }

    /// The HTTP status of this error: the one place a forge error gets its status.
    pub fn status(&self) -> u16 {
        status_of(self.class(), self.code())
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

/// The HTTP status of an error of `class` with the API code `code`: the caller's errors are 4xx,
/// told apart by what they got wrong; the environment's are 503 (the forge cannot do it now: a
/// full disk, a database that stays locked; the same request may work later); a bug is 500.
fn status_of(class: ErrorClass, code: &str) -> u16 {
    match class {
        ErrorClass::Input => match code {
            "not-found" => 404,
            "conflict" | "stale-token" => 409,
            _ => 400,
        },
        ErrorClass::Environment => 503,
        ErrorClass::Bug => 500,
    }
}

/// The result of a forge operation.
pub type ForgeResult<T> = Result<T, ForgeError>;

#[cfg(test)]
mod tests {
    use super::*;
    use lanes_core::schedule::JobId;

    /// One error of each class and what the API answers for it.
    fn cases() -> Vec<(ForgeError, ErrorClass, &'static str, u16)> {
        let io = || std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied");
        vec![
            (
                ForgeError::NotFound("repository `web` not found".into()),
                ErrorClass::Input,
                "not-found",
                404,
            ),
            (
                ForgeError::Conflict("job 2 already ended".into()),
                ErrorClass::Input,
                "conflict",
                409,
            ),
            (
                ForgeError::BadRequest("not a number".into()),
                ErrorClass::Input,
                "bad-request",
                400,
            ),
            (
                ForgeError::Rejected(Rejected::UnknownJob { job: JobId(7) }),
                ErrorClass::Input,
                "stale-token",
                409,
            ),
            (
                ForgeError::Store(StoreError::NotFound("run #7".into())),
                ErrorClass::Input,
                "not-found",
                404,
            ),
            (
                ForgeError::Store(StoreError::Duplicate("agent `a`".into())),
                ErrorClass::Input,
                "conflict",
                409,
            ),
            (
                ForgeError::Store(StoreError::Invalid("no token".into())),
                ErrorClass::Input,
                "bad-request",
                400,
            ),
            (
                ForgeError::Store(StoreError::Io {
                    action: "append to",
                    path: "logs/7".into(),
                    source: io(),
                }),
                ErrorClass::Environment,
                "unavailable",
                503,
            ),
            (
                ForgeError::Store(StoreError::SchemaTooNew { found: 9, known: 8 }),
                ErrorClass::Environment,
                "unavailable",
                503,
            ),
            (
                ForgeError::Trigger(TriggerError::Store(StoreError::Conflict("raced".into()))),
                ErrorClass::Environment,
                "unavailable",
                503,
            ),
            (
                ForgeError::Io {
                    action: "read",
                    path: "data".into(),
                    source: io(),
                },
                ErrorClass::Environment,
                "unavailable",
                503,
            ),
            (
                ForgeError::Store(StoreError::Corrupt {
                    column: "state",
                    message: "unknown state `nope`".into(),
                }),
                ErrorClass::Bug,
                "internal",
                500,
            ),
            (
                ForgeError::Internal("a task panicked".into()),
                ErrorClass::Bug,
                "internal",
                500,
            ),
        ]
    }

    #[test]
    fn the_class_decides_the_status_and_the_caller_s_errors_say_what_they_got_wrong() {
        for (error, class, code, status) in cases() {
            assert_eq!(error.class(), class, "{error}");
            assert_eq!(error.code(), code, "{error}");
            assert_eq!(error.status(), status, "{error}");
            assert_eq!(error.reply().0, status, "{error}");
        }
    }

    #[test]
    fn each_class_has_its_own_range_of_statuses() {
        for class in ErrorClass::ALL {
            let statuses: Vec<u16> = cases()
                .iter()
                .filter(|(e, ..)| e.class() == class)
                .map(|(e, ..)| e.status())
                .collect();
            assert!(!statuses.is_empty(), "no case of {class}");
            for status in statuses {
                match class {
                    ErrorClass::Input => assert!((400..500).contains(&status), "{status}"),
                    ErrorClass::Environment => assert_eq!(status, 503),
                    ErrorClass::Bug => assert_eq!(status, 500),
                }
            }
        }
    }
}
