//! What the holder of a lease sends while the job runs: its steps, its log (appended at the
//! acknowledged offset, one append of a job at a time), its finish (decided in batches:
//! `batch.rs`), and the secrets its lane asks for. Each is fenced: a token that no longer holds
//! the job is refused. And how such a refusal reaches the agent (`LinkError`).

use super::{Forge, JobEvent, batch::Ask, store_id};
use crate::error::{ForgeError, ForgeResult};
use lanes_agent::FinishReport;
use lanes_core::schedule;
use lanes_store::{JobId, LogFile, StepRecord, Store, StoreError};
use std::sync::Arc;

impl<S: Store + 'static> Forge<S> {
    /// Records one step of a running job.
    pub async fn step(&self, job: u64, token: u64, step: StepRecord) -> ForgeResult<()> {
        self.check(job, token).await?;
        let id = JobId(i64::try_from(job).unwrap_or(i64::MAX));
        self.store.record_step(id, token, &step).await?;
        // Fails only when nobody listens to live events: nobody to tell.
        let _ = self.events.send(JobEvent::State { job: id });
        Ok(())
    }

    /// Appends to a job's log at `offset` (see [`lanes_agent::Link::append_log`]).
    pub async fn append_log(
        &self,
        job: u64,
        token: u64,
        offset: u64,
        bytes: Vec<u8>,
    ) -> ForgeResult<u64> {
        self.check(job, token).await?;
        let id = JobId(i64::try_from(job).unwrap_or(i64::MAX));
        let lock = {
            let mut appends = self
                .appends
                .lock()
                .expect("the append map is never poisoned");
            if appends.len() > 1024 {
                // Forget the locks nobody holds: they belong to jobs not appending right now.
                appends.retain(|_, lock| Arc::strong_count(lock) > 1);
            }
            Arc::clone(appends.entry(id).or_default())
        };
        let _serial = lock.lock().await;
        let acked = self.store.log_len(id).await?;
        let end = offset.checked_add(bytes.len() as u64).ok_or_else(|| {
            ForgeError::BadRequest(format!("log offset {offset} is out of range"))
        })?;
        if offset > acked {
            return Err(ForgeError::BadRequest(format!(
                "log append at byte {offset} of job {job} leaves a gap: {acked} bytes are \
                 acknowledged"
            )));
        }
        // The bytes before `acked` were acknowledged already: a resend (an answer that got lost)
        // must carry the same bytes, or the log would no longer say what the agent saw.
        let overlap = usize::try_from(end.min(acked) - offset).unwrap_or(usize::MAX);
        let data_dir = self.config.data_dir.clone();
        let appended = tokio::task::spawn_blocking(move || {
            let mut file = LogFile::open(&data_dir, id, acked)?;
            if overlap > 0 && file.read_at(offset, overlap)? != bytes[..overlap] {
                return Ok(None);
            }
            if end <= acked {
                return Ok(Some(acked));
            }
            file.append(&bytes[overlap..]).map(Some)
        })
        .await
        .map_err(|e| ForgeError::Internal(format!("the log writer panicked: {e}")))?
        .map_err(|e| {
            let e = ForgeError::Store(e);
            self.full_disk(&e);
            e
        })?;
        let Some(new_len) = appended else {
            return Err(ForgeError::Conflict(format!(
                "log append at byte {offset} of job {job} differs from the bytes acknowledged \
                 there: a resend must repeat them"
            )));
        };
        if new_len == acked {
            return Ok(acked);
        }
        self.store.ack_log(id, token, acked, new_len).await?;
        // Fails only when nobody listens to live events: nobody to tell.
        let _ = self.events.send(JobEvent::Log {
            job: id,
            len: new_len,
        });
        Ok(new_len)
    }

    /// The job ended on its agent.
    pub async fn finish(&self, job: u64, token: u64, report: FinishReport) -> ForgeResult<()> {
        self.ask(Ask::Finish { job, token, report }).await.map(drop)
    }

    /// The secrets `names` the lane of `job` asks for, to the agent holding it with `token`:
    /// each value, or why the job's branch may not have it ([`crate::secrets::grant`]).
    pub async fn secrets(
        &self,
        job: u64,
        token: u64,
        names: &[String],
    ) -> ForgeResult<std::collections::BTreeMap<String, Result<String, String>>> {
        self.check(job, token).await?;
        let record = self.store.job(store_id(schedule::JobId(job))).await?;
        let run = self.store.run(&record.repo, record.run_number).await?;
        let repo = self.store.repo(&record.repo).await?;
        Ok(crate::secrets::grant(
            &self.config.secrets,
            &record.repo,
            &run.run.branch,
            &repo.default_branch,
            names,
        ))
    }
}

impl From<ForgeError> for lanes_agent::LinkError {
    fn from(e: ForgeError) -> Self {
        match &e {
            ForgeError::Rejected(_) => lanes_agent::LinkError::Rejected(e.to_string()),
            ForgeError::Store(StoreError::StaleToken { .. }) => {
                lanes_agent::LinkError::Rejected(e.to_string())
            }
            // A gap or a resend that differs: sending it again cannot help.
            ForgeError::BadRequest(_) | ForgeError::Conflict(_) => {
                lanes_agent::LinkError::Rejected(e.to_string())
            }
            _ => lanes_agent::LinkError::Unavailable(e.to_string()),
        }
    }
}
