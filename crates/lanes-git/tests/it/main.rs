//! lanes-git against real repositories made with the `git` command-line tool.
//!
//! One test binary (rather than one per file) keeps linking gix to once per build.

mod diff;
mod files;
mod fixture;
mod materialize;
mod refs;
mod repo;
mod revision;
