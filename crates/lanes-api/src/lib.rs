//! The forge's wire formats, typed once.
//!
//! Every JSON document `lanes serve` sends or takes is a type here: the API's objects
//! ([`forge`]), the agent protocol ([`agent`]) and the log stream's events ([`events`]). The
//! server builds its answers from these types (no response is written by hand), remote agents
//! and the CLI read them with the same types, and the OpenAPI document the server serves is
//! generated from them (module `openapi`, feature `schema`), so the three cannot drift apart.
//!
//! ## Versions
//!
//! The API is `v1` ([`VERSION`], the `/api/v1` prefix). Within a version, changes are additive:
//! a new optional field, a new route. Readers ignore fields they do not know, and the values
//! that grow over time (a job's status and reason, selection reasons) are read as
//! [`Lenient`], so a CLI or an agent talking to a newer forge shows what it does not know by name
//! instead of failing. Removing or renaming a field, or changing its type, is a new version.
//! `tests/fixtures/v1/` holds documents as the forge sent them when v1 was typed; a test reads
//! each with these types.

pub mod agent;
pub mod events;
pub mod forge;
mod lenient;
#[cfg(feature = "schema")]
pub mod openapi;

pub use lenient::Lenient;

/// The API's version: the `/api/{VERSION}` prefix of every route.
pub const VERSION: &str = "v1";
