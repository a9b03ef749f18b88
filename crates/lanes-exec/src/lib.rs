//! Running steps.
//!
//! [`process::run`] runs one command the way a step must run: in a process group of its own,
//! with stdin closed, a clean environment, stdout and stderr captured into one log with a
//! timestamp per line, and a timeout or cancellation that takes down the whole process tree
//! (SIGTERM to the group, a grace period, then SIGKILL). When the command exits, whatever it left
//! running in its group is killed too, so a step never leaks processes into the next one.
//!
//! [`lane::run_lane`] is the stacked executor on top: for each step of a lane, look its key up in
//! the store, restore what a hit produced, else run it and record what it produced
//! ([`outputs`]).
//!
//! [`sandbox`] runs each step in a mount namespace where the repository and the cache directory
//! are hidden, so a step reads only its lane's files.
//!
//! [`slot`] picks and locks the lane's directory and its cache mounts under the cache directory.

pub mod cgroup;
pub mod lane;
pub mod mask;
pub mod outputs;
pub mod process;
pub mod sandbox;
pub mod slot;
pub mod why;

pub use lane::{
    CacheUse, Event, Fileset, LaneContext, LaneResult, Status, StepResult, chain_recorded, run_lane,
};
pub use process::{Cancel, Confined, ExecError, Finished, Outcome, StepCommand, run};
pub use sandbox::{Confinement, Parts, Sandbox, StepUser};
pub use slot::{Slot, take_slot};
pub use why::{Explained, explain_miss};
