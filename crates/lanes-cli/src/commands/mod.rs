//! One module per subcommand. Each takes its arguments and the printer and returns an exit code.

pub(crate) mod cache;
pub(crate) mod cancel;
pub(crate) mod check;
pub(crate) mod doctor;
pub(crate) mod explain;
pub(crate) mod fingerprint;
pub(crate) mod hook;
pub(crate) mod logs;
pub(crate) mod rerun;
pub(crate) mod run;
pub(crate) mod select;
pub(crate) mod serve;
pub(crate) mod status;
pub(crate) mod wait;
