//! Log files: append with fsync, read by offset, recovery to the acknowledged length.

use crate::common::{Fixture, TestResult, lease, one_job};
use lanes_store::{LogFile, Store, StoreError};

#[tokio::test]
async fn appended_logs_read_back_by_offset_and_a_crash_tail_is_dropped() -> TestResult {
    let fx = Fixture::new()?;
    let data = fx.dir.path();
    let store = fx.with_repo().await?;
    let (_, id) = one_job(&store).await?;
    store.apply(&[lease(id, 1, 2_000, 60_000)]).await?;

    let mut log = LogFile::open(data, id, store.log_len(id).await?)?;
    assert_eq!(log.file_path(), data.join("logs").join(format!("{id}.log")));
    let first = log.append(b"hello ")?;
    store.ack_log(id, 1, 0, first).await?;
    let second = log.append(b"world\n")?;
    store.ack_log(id, 1, first, second).await?;
    assert_eq!(log.read_at(0, 5)?, b"hello");
    assert_eq!(log.read_at(6, 1024)?, b"world\n");
    assert!(log.read_at(12, 10)?.is_empty());

    // A chunk is written and fsynced, then the server dies before acknowledging it.
    log.append(b"unacknowledged tail")?;
    drop(log);
    drop(store);

    let store = fx.open().await?;
    let acknowledged = store.log_len(id).await?;
    assert_eq!(acknowledged, 12);
    let log = LogFile::open(data, id, acknowledged)?;
    assert_eq!(log.len(), 12);
    assert_eq!(
        std::fs::metadata(log.file_path())?.len(),
        12,
        "the tail was cut"
    );
    assert_eq!(log.read_at(0, 1024)?, b"hello world\n");

    // The agent resends from the acknowledged offset; a stale `from` is refused.
    let err = store
        .ack_log(id, 1, 6, 30)
        .await
        .expect_err("the acknowledged length moved");
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    Ok(())
}

#[test]
fn a_log_shorter_than_acknowledged_is_an_error() -> TestResult {
    let dir = tempfile::tempdir()?;
    let id = lanes_store::JobId(7);
    let mut log = LogFile::open(dir.path(), id, 0)?;
    log.append(b"0123456789")?;
    drop(log);
    let err = LogFile::open(dir.path(), id, 20).expect_err("lost acknowledged bytes");
    assert!(
        matches!(
            err,
            StoreError::LogTruncated {
                acknowledged: 20,
                found: 10,
                ..
            }
        ),
        "{err:?}"
    );
    // Nothing was changed by the refused open.
    assert_eq!(
        LogFile::open(dir.path(), id, 10)?.read_at(0, 100)?,
        b"0123456789"
    );
    Ok(())
}
