//! Job logs: one append-only file per job, addressed by byte offset.
//!
//! Logs are files, not database rows: `<data>/logs/<job id>.log`. The database keeps only each
//! job's **acknowledged length** ([`crate::Store::ack_log`]). The append path is:
//!
//! 1. open the file with the acknowledged length ([`LogFile::open`]), which drops any tail a
//!    crash left after the last acknowledgement;
//! 2. [`LogFile::append`] the chunk: written and fsynced before it returns the new length;
//! 3. record the new length with [`crate::Store::ack_log`] (fenced by the lease's token, and
//!    compare-and-set on the old length), and only then acknowledge to the agent.
//!
//! A crash between 2 and 3 leaves bytes past the acknowledged length; the next open truncates
//! them and the agent, never acknowledged, sends them again. Acknowledged bytes are never lost:
//! they were on disk before the database recorded them. A file shorter than its acknowledged
//! length is an error ([`StoreError::LogTruncated`]), never silently accepted.
//!
//! This module does blocking file I/O; async callers run it on a blocking thread.

use crate::error::{IoContext, StoreError};
use crate::job::JobId;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// One job's log file, opened for appending and reading.
#[derive(Debug)]
pub struct LogFile {
    file: File,
    path: PathBuf,
    len: u64,
}

impl LogFile {
    /// Where the log of `job` lives under the data directory.
    pub fn path(data_dir: &Path, job: JobId) -> PathBuf {
        data_dir.join("logs").join(format!("{job}.log"))
    }

    /// Opens (creating it and its directory if needed) the log of `job`, whose acknowledged
    /// length is `acknowledged`. A longer file is truncated back to it (the unacknowledged tail
    /// of a crash); a shorter one is [`StoreError::LogTruncated`].
    pub fn open(data_dir: &Path, job: JobId, acknowledged: u64) -> Result<LogFile, StoreError> {
        let path = LogFile::path(data_dir, job);
        let dir = data_dir.join("logs");
        std::fs::create_dir_all(&dir).at("create", &dir)?;
        let existed = path.exists();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .at("open", &path)?;
        if !existed {
            // The file's directory entry must be durable before any length is acknowledged.
            sync_dir(&dir)?;
        }
        let found = file.metadata().at("stat", &path)?.len();
        if found < acknowledged {
            return Err(StoreError::LogTruncated {
                path,
                acknowledged,
                found,
            });
        }
        if found > acknowledged {
            file.set_len(acknowledged).at("truncate", &path)?;
            file.sync_all().at("fsync", &path)?;
        }
        Ok(LogFile {
            file,
            path,
            len: acknowledged,
        })
    }

    /// The file's path.
    pub fn file_path(&self) -> &Path {
        &self.path
    }

    /// The length written so far: the acknowledged length plus what this handle appended.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends `bytes`, fsyncs, and returns the new length: the value to acknowledge.
    pub fn append(&mut self, bytes: &[u8]) -> Result<u64, StoreError> {
        self.file
            .seek(SeekFrom::Start(self.len))
            .at("seek in", &self.path)?;
        self.file.write_all(bytes).at("append to", &self.path)?;
        self.file.sync_data().at("fsync", &self.path)?;
        self.len += bytes.len() as u64;
        Ok(self.len)
    }

    /// Reads up to `max` bytes from `offset`, never past [`LogFile::len`]. Empty at or past the
    /// end.
    pub fn read_at(&self, offset: u64, max: usize) -> Result<Vec<u8>, StoreError> {
        if offset >= self.len {
            return Ok(Vec::new());
        }
        let want = usize::try_from(self.len - offset).map_or(max, |left| left.min(max));
        let mut file = &self.file;
        file.seek(SeekFrom::Start(offset))
            .at("seek in", &self.path)?;
        let mut buf = Vec::with_capacity(want);
        file.take(want as u64)
            .read_to_end(&mut buf)
            .at("read", &self.path)?;
        Ok(buf)
    }
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .at("fsync directory", dir)
}
