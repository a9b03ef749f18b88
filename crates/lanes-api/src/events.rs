//! The events of `GET /api/v1/jobs/{id}/log/stream` (server-sent events): `log` for each
//! acknowledged chunk, then `end`; `error` when the forge cannot read the log (the stream ends).

use crate::Lenient;
use lanes_core::job::JobState;
use serde::{Deserialize, Serialize};

/// `event: log`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct LogChunk {
    /// Where the text starts in the log, in bytes.
    pub offset: u64,
    /// The text (never cut inside a character).
    pub text: String,
}

/// `event: end`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct LogEnd {
    /// How the job ended.
    pub status: Lenient<JobState>,
}

/// `event: error`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct StreamError {
    /// What failed.
    pub message: String,
}
