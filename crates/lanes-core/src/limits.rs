//! Bounds on what clients send the forge: every string and list the API takes from a request and
//! keeps or echoes has one (docs/api.md, "Limits"). The forge refuses a value over its bound with
//! `400 invalid`; the OpenAPI document states the same bounds, as they are written here.

/// A name: an agent's, a label, a scope, a secret's, a step's, a platform, a version.
pub const MAX_NAME: usize = 128;
/// An agent's labels.
pub const MAX_LABELS: usize = 64;
/// A step's key, a cache mount's name.
pub const MAX_KEY: usize = 256;
/// A message: a miss's detail, a finish's message, a pin's values.
pub const MAX_MESSAGE: usize = 16 << 10;
/// Items of a list in a report: scopes, mounts per scope, jobs per scope, steps of a job, secret
/// names.
pub const MAX_ITEMS: usize = 1024;
