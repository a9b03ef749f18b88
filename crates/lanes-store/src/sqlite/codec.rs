//! Conversions between the store's values and SQLite's: timestamps as milliseconds, enums as
//! their names, lists and reasons as JSON text.

use crate::error::StoreError;
use crate::store::StoreResult;
use jiff::Timestamp;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The states in which an agent holds a job, as SQL.
pub(crate) const HELD: &str = "('leased', 'running')";

pub(crate) fn ms(t: Timestamp) -> i64 {
    t.as_millisecond()
}

pub(crate) fn ts(column: &'static str, v: i64) -> StoreResult<Timestamp> {
    Timestamp::from_millisecond(v).map_err(|e| corrupt(column, e))
}

pub(crate) fn opt_ts(column: &'static str, v: Option<i64>) -> StoreResult<Option<Timestamp>> {
    v.map(|v| ts(column, v)).transpose()
}

/// A count or token to write; beyond `i64::MAX` it cannot be stored.
pub(crate) fn to_i64(what: &'static str, v: u64) -> StoreResult<i64> {
    i64::try_from(v).map_err(|_| StoreError::Invalid(format!("{what} {v} is too large")))
}

pub(crate) fn to_u64(column: &'static str, v: i64) -> StoreResult<u64> {
    u64::try_from(v).map_err(|_| corrupt(column, format!("negative value {v}")))
}

pub(crate) fn opt_u64(column: &'static str, v: Option<i64>) -> StoreResult<Option<u64>> {
    v.map(|v| to_u64(column, v)).transpose()
}

pub(crate) fn opt_i64(what: &'static str, v: Option<u64>) -> StoreResult<Option<i64>> {
    v.map(|v| to_i64(what, v)).transpose()
}

pub(crate) fn to_u32(column: &'static str, v: i64) -> StoreResult<u32> {
    u32::try_from(v).map_err(|_| corrupt(column, format!("value {v} out of range")))
}

pub(crate) fn json<T: Serialize + ?Sized>(what: &'static str, v: &T) -> StoreResult<String> {
    serde_json::to_string(v)
        .map_err(|e| StoreError::Invalid(format!("failed to encode {what} as JSON: {e}")))
}

pub(crate) fn from_json<T: DeserializeOwned>(column: &'static str, v: &str) -> StoreResult<T> {
    serde_json::from_str(v).map_err(|e| corrupt(column, e))
}

/// Parses an enum stored by its name.
pub(crate) fn named<T>(
    column: &'static str,
    v: &str,
    parse: impl FnOnce(&str) -> Option<T>,
) -> StoreResult<T> {
    parse(v).ok_or_else(|| corrupt(column, format!("unknown name `{v}`")))
}

pub(crate) fn corrupt(column: &'static str, message: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        column,
        message: message.to_string(),
    }
}

/// Maps a unique-constraint violation to [`StoreError::Duplicate`] naming `what`.
pub(crate) fn duplicate(what: impl FnOnce() -> String) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |e| match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Duplicate(what()),
        _ => StoreError::Database(e),
    }
}
