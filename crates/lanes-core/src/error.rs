//! The class every lanes error belongs to: what went wrong, as far as the one who has to act on
//! it is concerned.
//!
//! Each error type of the workspace says its class (`GitError::class`, `StoreError::class`,
//! the CLI's and the forge's errors), and each edge decides from the class alone, in one place:
//! the CLI's exit code (`lanes-cli/src/error.rs`), the forge's HTTP status
//! (`lanes-server/src/error.rs`) and the state a job ends in when an agent cannot run its lane
//! (`lanes-agent/src/job.rs`).

/// Who has to act on an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// The user's input is wrong: a flag, a name that does not exist (a lane, a branch, a run),
    /// the catalog, a request. The same input fails the same way; the user fixes it.
    Input,
    /// The machine or what it reaches is not in a state to do it: the disk, the network, a forge
    /// that cannot be reached, a missing tool, a repository without the history asked about,
    /// permissions. The input may be fine: fix the environment, or try again.
    Environment,
    /// lanes itself is wrong: an invariant broken, an answer it cannot read (a forge or an agent
    /// of another version). Worth a bug report.
    Bug,
}

impl ErrorClass {
    /// Every class, in the order docs list them.
    pub const ALL: [ErrorClass; 3] = [ErrorClass::Input, ErrorClass::Environment, ErrorClass::Bug];

    /// The class's name in messages and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Input => "input",
            ErrorClass::Environment => "environment",
            ErrorClass::Bug => "bug",
        }
    }
}

impl std::fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
