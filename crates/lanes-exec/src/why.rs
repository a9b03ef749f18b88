//! Why a step misses the cache: what differs from its last recorded run in this cache (its
//! history entry). `lanes explain` prints it in full; every miss of `lanes run` and of the
//! forge's agents carries it in brief ([`MissReason`]).

use lanes_cache::{HistoryEntry, LocalStore};
use lanes_core::explain::{Difference, MissKind, MissReason, differences};
use lanes_core::{FileEntry, StepFingerprint, fileset};

/// A miss, explained.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explained {
    /// What differs from the last recorded run (empty when there is none, or its key is the
    /// same).
    pub changes: Vec<Difference>,
    /// Why it misses when no difference says it.
    pub note: Option<String>,
    /// In brief.
    pub reason: MissReason,
}

/// Why the step with `key` and `fingerprint` misses, given `latest`, its last recorded run in
/// `store`. `now_files` lists the lane's input files now; it is called only when the inputs
/// differ, to name the files.
pub fn explain_miss(
    store: &LocalStore,
    latest: Option<&HistoryEntry>,
    key: &str,
    fingerprint: &StepFingerprint,
    now_files: impl FnOnce() -> Option<Vec<FileEntry>>,
) -> Explained {
    let noted = |kind: MissKind, note: String| Explained {
        changes: Vec::new(),
        reason: MissReason {
            kind,
            detail: note.clone(),
        },
        note: Some(note),
    };
    match latest {
        None => noted(
            MissKind::New,
            "no run of this step is recorded in this cache".to_owned(),
        ),
        Some(h) if h.key == key => {
            if h.status == "passed" {
                noted(
                    MissKind::Evicted,
                    "the recorded result is gone (evicted by `lanes cache gc`, or found corrupt)"
                        .to_owned(),
                )
            } else {
                noted(
                    MissKind::NotRecorded,
                    format!(
                        "the last run of exactly this step {}; only passing steps are cached",
                        h.status
                    ),
                )
            }
        }
        Some(h) => {
            let files = (h.fingerprint.inputs != fingerprint.inputs).then(|| {
                let before = store
                    .get_blob(&h.fingerprint.inputs)
                    .ok()
                    .flatten()
                    .and_then(|bytes| fileset::parse_listing(&bytes));
                (before, now_files())
            });
            let (before, now) = files.unwrap_or((None, None));
            let changes = differences(
                &h.fingerprint,
                fingerprint,
                before.as_deref(),
                now.as_deref(),
            );
            let reason = MissReason::from_differences(&changes).unwrap_or_else(|| MissReason {
                kind: MissKind::Settings,
                detail: "the key changed".to_owned(),
            });
            Explained {
                changes,
                note: None,
                reason,
            }
        }
    }
}
