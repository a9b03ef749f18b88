//! The CLI's errors and the one place that maps them to exit codes.

use lanes_core::CatalogError;
use lanes_git::GitError;

/// Exit codes: 0 success, 1 the thing checked failed, 2 usage or catalog error, 3 `lanes wait`
/// gave up. Every [`CliError`] exits with [`exit::USAGE`]: a command that checks something
/// returns [`exit::FAILED`] or [`exit::TIMED_OUT`] itself.
pub(crate) mod exit {
    pub(crate) const SUCCESS: u8 = 0;
    pub(crate) const FAILED: u8 = 1;
    pub(crate) const USAGE: u8 = 2;
    /// `lanes wait --timeout` ran out before the run finished.
    pub(crate) const TIMED_OUT: u8 = 3;
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    /// The user asked for something that does not exist or cannot be done.
    #[error("{message}")]
    Usage {
        message: String,
        help: Option<String>,
    },
    /// The catalog does not validate; its diagnostics have been printed.
    #[error("{0}")]
    Catalog(CatalogError),
    #[error(transparent)]
    Git(#[from] GitError),
    #[error("failed to read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("failed to write output: {0}")]
    Output(#[from] std::io::Error),
    /// The forge refused the request or answered with an error; `code` is the API's error code
    /// (docs/api.md) when it sent one.
    #[error("{message}")]
    Forge {
        code: Option<String>,
        message: String,
        help: Option<String>,
    },
    /// The forge could not be reached, or the connection broke: worth trying again.
    #[error("{message}")]
    Unreachable { message: String, help: String },
}

impl CliError {
    pub(crate) fn usage(message: impl Into<String>, help: impl Into<Option<String>>) -> Self {
        CliError::Usage {
            message: message.into(),
            help: help.into(),
        }
    }

    /// The forge's error code (`not-found`, `conflict`, ...) when the forge answered with one.
    pub(crate) fn api_code(&self) -> Option<&str> {
        match self {
            CliError::Forge { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    pub(crate) fn help(&self) -> Option<String> {
        match self {
            CliError::Usage { help, .. } | CliError::Forge { help, .. } => help.clone(),
            CliError::Unreachable { help, .. } => Some(help.clone()),
            CliError::Git(e) => e.help(),
            CliError::Catalog(_) | CliError::Read { .. } | CliError::Output(_) => None,
        }
    }
}
