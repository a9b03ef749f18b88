//! Limits on what clients send: every string and list the API takes from a request and keeps
//! or echoes has a bound (docs/api.md, "Limits"). A value over its bound is `400 invalid`, naming
//! the field and the bound, before anything is written.

use crate::api::ApiError;
use axum::http::StatusCode;
use lanes_agent::{FinishReport, HostStatus, StepRecord};

pub(crate) use lanes_core::limits::{MAX_ITEMS, MAX_KEY, MAX_LABELS, MAX_MESSAGE, MAX_NAME};

fn invalid(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid", message)
}

/// `value` is at most `max` characters long.
pub(crate) fn text(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    let n = value.chars().count();
    if n > max {
        return Err(invalid(format!(
            "`{field}` is {n} characters long: at most {max}"
        )));
    }
    Ok(())
}

/// `items` has at most `max` entries.
pub(crate) fn count<T>(field: &str, items: &[T], max: usize) -> Result<(), ApiError> {
    if items.len() > max {
        return Err(invalid(format!(
            "`{field}` has {} entries: at most {max}",
            items.len()
        )));
    }
    Ok(())
}

/// At most `max` strings of at most `each` characters.
pub(crate) fn list(field: &str, items: &[String], max: usize, each: usize) -> Result<(), ApiError> {
    count(field, items, max)?;
    for (i, item) in items.iter().enumerate() {
        text(&format!("{field}[{i}]"), item, each)?;
    }
    Ok(())
}

/// An agent's host status.
pub(crate) fn host_status(status: &HostStatus) -> Result<(), ApiError> {
    text("platform", &status.platform, MAX_NAME)?;
    text("version", &status.version, MAX_NAME)?;
    count("scopes", &status.scopes, MAX_ITEMS)?;
    for (i, scope) in status.scopes.iter().enumerate() {
        text(&format!("scopes[{i}].name"), &scope.name, MAX_NAME)?;
        list(
            &format!("scopes[{i}].mounts"),
            &scope.mounts,
            MAX_ITEMS,
            MAX_KEY,
        )?;
        count(&format!("scopes[{i}].jobs"), &scope.jobs, MAX_ITEMS)?;
    }
    Ok(())
}

/// A step's report (`field` names it in the message).
pub(crate) fn step(step: &StepRecord, field: &str) -> Result<(), ApiError> {
    text(&format!("{field}.name"), &step.name, MAX_NAME)?;
    if let Some(key) = &step.key {
        text(&format!("{field}.key"), key, MAX_KEY)?;
    }
    if let Some(miss) = &step.miss {
        text(&format!("{field}.miss.detail"), &miss.detail, MAX_MESSAGE)?;
    }
    Ok(())
}

/// A job's finish.
pub(crate) fn finish(finish: &FinishReport) -> Result<(), ApiError> {
    if let Some(message) = &finish.message {
        text("finish.message", message, MAX_MESSAGE)?;
    }
    if let Some(reason) = &finish.reason {
        let size = serde_json::to_string(reason).map_or(0, |s| s.len());
        if size > MAX_MESSAGE {
            return Err(invalid(format!(
                "`finish.reason` is {size} bytes of JSON: at most {MAX_MESSAGE}"
            )));
        }
    }
    count("finish.steps", &finish.steps, MAX_ITEMS)?;
    for (i, s) in finish.steps.iter().enumerate() {
        step(s, &format!("finish.steps[{i}]"))?;
    }
    Ok(())
}

/// The names a job asks secrets for.
pub(crate) fn secret_names(names: &[String]) -> Result<(), ApiError> {
    list("names", names, MAX_ITEMS, MAX_NAME)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_over_its_bound_names_the_field_and_the_bound() {
        assert!(text("name", &"a".repeat(MAX_NAME), MAX_NAME).is_ok());
        let e = text("name", &"a".repeat(MAX_NAME + 1), MAX_NAME).expect_err("too long");
        assert!(format!("{e:?}").contains("`name` is 129 characters long: at most 128"));
        let labels = vec!["x".to_owned(); MAX_LABELS + 1];
        let e = list("labels", &labels, MAX_LABELS, MAX_NAME).expect_err("too many");
        assert!(format!("{e:?}").contains("`labels` has 65 entries: at most 64"));
    }
}
