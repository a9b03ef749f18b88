//! The lanes agent: leases jobs from the forge, runs each with the `lanes run` engine and its
//! step cache, streams the log as it is written, and reports steps, cache hits and timings.
//!
//! [`link::Link`] is the interface to the forge, the same for the server's built-in agent and
//! for remote agents. [`run_agent`] is the lease loop; [`run_job`] runs and reports one job
//! ([`job`]), reading its lane at the commit (`prepare.rs`) and writing its log ([`joblog`],
//! which documents the format); `report.rs` holds the retry and stop rules of every call to the
//! forge. [`status`] is what the agent tells the forge about its host (scopes, cache).
//!
//! [`host`] and [`fileset`] are shared with `lanes run` and `lanes fingerprint`, so a laptop and
//! an agent on one machine compute the same step keys and share one cache.
//!
//! The agent never decides what runs or in what order (the forge's scheduler does), and runs no
//! step itself: `lanes-exec` does.

pub mod agent;
pub use lanes_engine::{fileset, host};
pub mod job;
pub mod joblog;
pub mod link;
mod prepare;
mod report;
pub mod status;

pub use agent::{AgentConfig, DEFAULT_LEASE_WAIT, Shutdown, run_agent};
pub use job::{AgentEnv, DEFAULT_GRACE, JobEnd, LEASE_PER_HEARTBEAT, run_job};
pub use link::{Assignment, CacheUse, FinishReport, Link, LinkError, StepRecord};
pub use prepare::{CATALOG_PATH, PrepareError};
pub use report::Stop;
pub use status::{Activity, CacheUsage, HostStatus, ScopeStatus};
