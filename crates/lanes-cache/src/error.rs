//! Errors of the store. A failed file operation is about the environment (disk, permissions):
//! the caller decides whether to carry on without the cache, which is what `lanes run` does.
//! The names the store is given are made by lanes, so a malformed one is a bug.

use lanes_core::ErrorClass;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// A filesystem operation failed.
    #[error("failed to {action} {}: {source}", path.display())]
    Io {
        /// What was being done, phrased to follow "failed to".
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A digest that is not 64 lowercase hex characters was used as a name.
    #[error("invalid digest `{0}`: expected 64 lowercase hex characters")]
    InvalidDigest(String),
    /// A run id that is not 1 to 128 ASCII letters, digits and `-` was used as a name.
    #[error("invalid run id `{0}`: expected 1 to 128 ASCII letters, digits and `-`")]
    InvalidRunId(String),
}

impl CacheError {
    /// Whose problem it is: see the module's documentation.
    pub fn class(&self) -> ErrorClass {
        match self {
            CacheError::Io { .. } => ErrorClass::Environment,
            CacheError::InvalidDigest(_) | CacheError::InvalidRunId(_) => ErrorClass::Bug,
        }
    }
}

pub(crate) trait IoContext<T> {
    fn at(self, action: &'static str, path: impl Into<PathBuf>) -> Result<T, CacheError>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, action: &'static str, path: impl Into<PathBuf>) -> Result<T, CacheError> {
        self.map_err(|source| CacheError::Io {
            action,
            path: path.into(),
            source,
        })
    }
}
