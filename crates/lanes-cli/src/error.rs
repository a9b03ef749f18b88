//! The CLI's errors, their classes, and the one place a class becomes an exit code.

use lanes_core::{CatalogError, ErrorClass};
use lanes_git::GitError;

/// Exit codes (docs/cli.md#exit-codes): 0 success, 1 the thing checked failed, 2 the user's input
/// (usage, an unknown name, the catalog), 3 `lanes wait` gave up, 4 the environment (disk,
/// network, a forge that cannot be reached), 5 a bug (an invariant broken, a forge answer lanes
/// cannot read). A command that checks something returns [`exit::FAILED`] or
/// [`exit::TIMED_OUT`] itself; every [`CliError`] exits with [`exit::of`] its class.
pub(crate) mod exit {
    use lanes_core::ErrorClass;

    pub(crate) const SUCCESS: u8 = 0;
    pub(crate) const FAILED: u8 = 1;
    /// The user's input: fix the command line, the name or the catalog.
    pub(crate) const USAGE: u8 = 2;
    /// `lanes wait --timeout` ran out before the run finished.
    pub(crate) const TIMED_OUT: u8 = 3;
    /// The environment: the same command may work once the disk, the network, the forge or the
    /// repository is fixed.
    pub(crate) const ENVIRONMENT: u8 = 4;
    /// A bug in lanes (or a forge of another version).
    pub(crate) const BUG: u8 = 5;

    /// The exit code of an error of `class`.
    pub(crate) fn of(class: ErrorClass) -> u8 {
        match class {
            ErrorClass::Input => USAGE,
            ErrorClass::Environment => ENVIRONMENT,
            ErrorClass::Bug => BUG,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    /// The user asked for something that does not exist or cannot be done.
    #[error("{message}")]
    Usage {
        message: String,
        help: Option<String>,
    },
    /// The machine could not do what was asked: a cache directory it cannot use, a file it
    /// cannot write, a runtime it cannot start.
    #[error("{message}")]
    Environment {
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
    /// The forge refused the request or answered with an error, or answered something lanes
    /// cannot read; `code` is the API's error code (docs/api.md) when it sent one, `class` whose
    /// problem that is.
    #[error("{message}")]
    Forge {
        class: ErrorClass,
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

    pub(crate) fn environment(message: impl Into<String>, help: impl Into<Option<String>>) -> Self {
        CliError::Environment {
            message: message.into(),
            help: help.into(),
        }
    }

    /// Whose problem it is. A file the user named that does not exist is their input; any other
    /// failure to read it is the machine's.
    pub(crate) fn class(&self) -> ErrorClass {
        match self {
            CliError::Usage { .. } => ErrorClass::Input,
            CliError::Catalog(e) => e.class(),
            CliError::Git(e) => e.class(),
            CliError::Read { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                ErrorClass::Input
            }
            CliError::Environment { .. }
            | CliError::Read { .. }
            | CliError::Output(_)
            | CliError::Unreachable { .. } => ErrorClass::Environment,
            CliError::Forge { class, .. } => *class,
        }
    }

    /// The exit code this error ends the command with.
    pub(crate) fn exit_code(&self) -> u8 {
        exit::of(self.class())
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
            CliError::Usage { help, .. }
            | CliError::Environment { help, .. }
            | CliError::Forge { help, .. } => help.clone(),
            CliError::Unreachable { help, .. } => Some(help.clone()),
            CliError::Git(e) => e.help(),
            CliError::Catalog(_) | CliError::Read { .. } | CliError::Output(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_class_has_its_own_exit_code_and_the_old_codes_keep_their_meaning() {
        assert_eq!(exit::of(ErrorClass::Input), 2);
        assert_eq!(exit::of(ErrorClass::Environment), 4);
        assert_eq!(exit::of(ErrorClass::Bug), 5);
        let mut codes: Vec<u8> = ErrorClass::ALL.iter().map(|c| exit::of(*c)).collect();
        codes.extend([exit::SUCCESS, exit::FAILED, exit::TIMED_OUT]);
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes, [0, 1, 2, 3, 4, 5], "no two meanings share a code");
    }

    #[test]
    fn every_error_exits_with_its_class_s_code() {
        let io = |kind| std::io::Error::new(kind, "x");
        let cases = [
            (CliError::usage("no lane `nope`", None::<String>), 2),
            (
                CliError::Git(GitError::NoDefaultBase),
                exit::of(ErrorClass::Input),
            ),
            (
                CliError::Read {
                    path: "nope.toml".into(),
                    source: io(std::io::ErrorKind::NotFound),
                },
                2,
            ),
            (
                CliError::Read {
                    path: "lanes.toml".into(),
                    source: io(std::io::ErrorKind::PermissionDenied),
                },
                4,
            ),
            (
                CliError::environment("cannot use the cache directory", None::<String>),
                4,
            ),
            (CliError::Output(io(std::io::ErrorKind::StorageFull)), 4),
            (
                CliError::Unreachable {
                    message: "cannot reach the forge".into(),
                    help: "start it".into(),
                },
                4,
            ),
            (
                CliError::Forge {
                    class: ErrorClass::Bug,
                    code: None,
                    message: "a response lanes cannot read".into(),
                    help: None,
                },
                5,
            ),
        ];
        for (error, code) in cases {
            assert_eq!(error.exit_code(), code, "{error}");
        }
    }
}
