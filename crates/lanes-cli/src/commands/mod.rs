//! One module per subcommand. Each takes its arguments and the printer and returns an exit code.

pub(crate) mod cache;
pub(crate) mod check;
pub(crate) mod explain;
pub(crate) mod fingerprint;
pub(crate) mod run;
pub(crate) mod select;
