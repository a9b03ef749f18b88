//! What lanes' test suites share, so each is written once: temporary git repositories made with
//! the `git` command-line tool (`repo.rs`, `git.rs`), the real `lanes` binary run in them
//! (`binary.rs`), a real `lanes serve` over a bare origin with requests and waits (`forge.rs`),
//! and directories a sandboxed step can see (`dir.rs`).
//!
//! Only ever a dev-dependency (crates/lanes-cli/tests/architecture.rs checks it): it panics
//! instead of returning errors, as a test helper should, and depends on no crate of ours, so
//! every crate's tests may use it.
//!
//! The `lanes` binary is found beside the calling test binary, where cargo builds a package's
//! binaries for its integration tests (`binary.rs` says why and what that asks of the caller).

mod binary;
mod dir;
mod forge;
mod git;
mod repo;

pub use binary::{Run, lanes_bin, lanes_in};
pub use dir::outside_tmp;
pub use forge::{Forge, PATIENCE, Response, http, parse_response};
pub use git::{git_command, git_in};
pub use repo::Repo;
