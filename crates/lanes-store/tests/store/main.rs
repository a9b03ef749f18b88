//! Integration tests of lanes-store against real SQLite files in temporary directories.
//!
//! One test binary (modules by concept) so the suite links once.

mod auth;
mod common;
mod leases;
mod logs;
mod nightly;
mod open;
mod queries;
mod runs;
