//! The forge's JSON objects (docs/api.md) as the CLI reads them: `lanes-api`'s types, the ones
//! the forge writes with. Statuses and reasons are [`lanes_api::Lenient`], so a newer forge
//! that adds a value still reads and the value is shown by its name. `--json` output never goes
//! through these types: the commands print the forge's document as it came.

pub(crate) use lanes_api::events::{LogChunk, LogEnd, StreamError};
pub(crate) use lanes_api::forge::{BranchState, Job, Jobs, RefsChanged, Repo, Run};
use serde_json::Value;

/// Reads a forge document into `T`, or says which document the forge got wrong.
pub(crate) fn read<T: serde::de::DeserializeOwned>(
    client: &crate::client::Client,
    what: &str,
    value: &Value,
) -> Result<T, crate::error::CliError> {
    T::deserialize(value).map_err(|e| client.unreadable(&format!("{what}: {e}")))
}

/// Whole API documents from the few fields a unit test cares about.
#[cfg(test)]
pub(crate) mod docs {
    use serde_json::{Value, json};

    /// `partial` over what every job document of the API has.
    pub(crate) fn job_doc(partial: Value) -> Value {
        let mut doc = json!({
            "id": 1, "lane": "l", "class": "required", "priority": "required", "status": "queued",
            "reason": null, "selection": [], "needs": [], "group": null, "labels": [],
            "rerun_of": null, "attempts": 0, "retries": 2, "agent": null, "queued_at": null,
            "leased_at": null, "started_at": null, "finished_at": null, "duration_ms": 0,
            "timings": {"queue_wait_ms": null, "lock_wait_ms": null, "materialize_ms": null},
            "steps_cached": 0, "steps_run": 0, "saved_ms": 0, "log_bytes": 0, "steps": []
        });
        merge(&mut doc, partial);
        doc
    }

    /// `partial` over what every run document of the API has; its jobs completed by [`job_doc`].
    pub(crate) fn run_doc(partial: Value) -> Value {
        let mut doc = json!({
            "repo": "app", "number": 1, "branch": "main", "head": "", "base": null,
            "trigger": "push", "status": "pending", "superseded_by": null,
            "created_at": "2026-12-01T10:00:00Z", "started_at": null, "finished_at": null,
            "diagnostics": null
        });
        merge(&mut doc, partial);
        if let Some(jobs) = doc.get_mut("jobs").and_then(Value::as_array_mut) {
            for job in jobs.iter_mut() {
                *job = job_doc(job.take());
            }
        }
        doc
    }

    fn merge(doc: &mut Value, partial: Value) {
        if let (Some(doc), Value::Object(partial)) = (doc.as_object_mut(), partial) {
            doc.extend(partial);
        }
    }
}
