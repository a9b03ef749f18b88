//! What can go wrong when reading or writing the forge's state, and which class each failure
//! belongs to.

use crate::job::JobId;
use lanes_core::ErrorClass;
use lanes_core::job::JobState;
use std::path::PathBuf;

/// A store operation failed. Nothing was written when an operation returns an error: every
/// write runs in one transaction.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An agent presented a fencing token that is not the job's current one, or the job is no
    /// longer held (requeued, cancelled, finished). The agent must stop the job.
    #[error("stale fencing token {token} for job {job}: the job is no longer held by this lease")]
    StaleToken {
        /// The job.
        job: JobId,
        /// The token the writer presented.
        token: u64,
    },
    /// A scheduler update expected the job in state `expected`, but it is in `found`: another
    /// writer got there first.
    #[error("job {job} is {found}, not {expected} as the update expected")]
    StateConflict {
        /// The job.
        job: JobId,
        /// The state the update was computed from.
        expected: JobState,
        /// The state the job is in.
        found: JobState,
    },
    /// A conditional write did not hold for another reason (a lease not yet expired, a log
    /// length that moved, a reused fencing token).
    #[error("{0}")]
    Conflict(String),
    /// Something with this identity exists already (a repository name, a run for the same pushed
    /// head, a claimed nightly slot, an agent name).
    #[error("{0} already exists")]
    Duplicate(String),
    /// The named thing does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The caller passed something the store cannot write (a lease without a token, a finish
    /// with a state that is not terminal).
    #[error("invalid update: {0}")]
    Invalid(String),
    /// The database was written by a newer lanes: its schema is past what this binary knows.
    #[error(
        "database schema version {found} is newer than this lanes knows ({known}); \
         upgrade lanes or point it at another data directory"
    )]
    SchemaTooNew {
        /// The newest migration recorded in the database.
        found: i64,
        /// The newest migration this binary carries.
        known: i64,
    },
    /// A migration failed, or an applied migration no longer matches the binary's copy.
    #[error("failed to migrate the database: {0}")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    /// The database failed (disk full, locked for longer than the busy timeout, corrupt file).
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
    /// A value read from the database does not parse (an unknown state name, bad JSON).
    #[error("corrupt value in column `{column}`: {message}")]
    Corrupt {
        /// The column.
        column: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// A log file operation failed.
    #[error("failed to {action} {}: {source}", path.display())]
    Io {
        /// What was being done, phrased to follow "failed to".
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A log file is shorter than the length the database acknowledged: acknowledged bytes were
    /// lost (the file was truncated or replaced behind the forge's back).
    #[error("log file {} has {found} bytes but {acknowledged} were acknowledged", path.display())]
    LogTruncated {
        /// The file.
        path: PathBuf,
        /// The acknowledged length.
        acknowledged: u64,
        /// The file's length.
        found: u64,
    },
}

/// What a [`StoreError`] means to the forge, finer than its [`ErrorClass`]: the forge answers a
/// missing thing, a lost race and a stale lease differently, though all three are the caller's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// A fenced write from an agent that lost its lease; the agent must stop the job.
    StaleToken,
    /// The thing asked for does not exist.
    NotFound,
    /// Another writer won a race, or the thing exists already; retry with fresh state or accept.
    Conflict,
    /// The caller's input was wrong.
    Input,
    /// The machine's state is wrong: a newer database, a full disk, a lost file.
    Environment,
    /// A bug: a value in the database that this binary cannot read.
    Internal,
}

impl ErrorKind {
    /// The class of this kind: the first four are the caller's, who asked for something that is
    /// not there or no longer holds.
    pub fn class(self) -> ErrorClass {
        match self {
            ErrorKind::StaleToken
            | ErrorKind::NotFound
            | ErrorKind::Conflict
            | ErrorKind::Input => ErrorClass::Input,
            ErrorKind::Environment => ErrorClass::Environment,
            ErrorKind::Internal => ErrorClass::Bug,
        }
    }
}

impl StoreError {
    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            StoreError::StaleToken { .. } => ErrorKind::StaleToken,
            StoreError::NotFound(_) => ErrorKind::NotFound,
            StoreError::StateConflict { .. }
            | StoreError::Conflict(_)
            | StoreError::Duplicate(_) => ErrorKind::Conflict,
            StoreError::Invalid(_) => ErrorKind::Input,
            StoreError::SchemaTooNew { .. }
            | StoreError::Migrate(_)
            | StoreError::Database(_)
            | StoreError::Io { .. }
            | StoreError::LogTruncated { .. } => ErrorKind::Environment,
            StoreError::Corrupt { .. } => ErrorKind::Internal,
        }
    }

    /// The class of this error (of its [`StoreError::kind`]).
    pub fn class(&self) -> ErrorClass {
        self.kind().class()
    }

    /// True when the data directory's disk (or the database's size limit) is full: SQLite's
    /// `SQLITE_FULL`, or `ENOSPC` from a log file.
    pub fn is_disk_full(&self) -> bool {
        match self {
            StoreError::Database(sqlx::Error::Database(e)) => {
                // SQLITE_FULL (13), possibly extended.
                e.code()
                    .and_then(|c| c.parse::<i32>().ok())
                    .is_some_and(|c| c & 0xff == 13)
            }
            StoreError::Database(sqlx::Error::Io(e)) | StoreError::Io { source: e, .. } => {
                e.kind() == std::io::ErrorKind::StorageFull
            }
            _ => false,
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        StoreError::Database(error)
    }
}

/// Attaches what was being done and to which path to an I/O error.
pub(crate) trait IoContext<T> {
    fn at(self, action: &'static str, path: impl Into<PathBuf>) -> Result<T, StoreError>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, action: &'static str, path: impl Into<PathBuf>) -> Result<T, StoreError> {
        self.map_err(|source| StoreError::Io {
            action,
            path: path.into(),
            source,
        })
    }
}
