//! A lane's files in a git repository, as the executor's [`Fileset`]: what `lanes run` and the
//! agents hand `lanes_exec::run_lane` so it can write the lane directory when a step must run.
//!
//! The lane's own list is only picked out of every file when a step has to run: a lane whose
//! steps all hit never needs it.

use lanes_core::glob::Glob;
use lanes_core::{Digest, FileEntry, Lane, fileset};
use lanes_exec::Fileset;
use lanes_git::Repo;
use std::path::Path;
use std::sync::Arc;

/// The files of one lane at a commit (or in the working tree).
#[derive(Debug)]
pub struct RepoFileset {
    repo: Repo,
    all: Arc<Vec<FileEntry>>,
    inputs: Option<Vec<Glob>>,
    /// The digest the lane's keys were made with.
    digest: Digest,
}

impl RepoFileset {
    /// `lane`'s files out of `all` (every file, sorted by path, as listed when the keys were
    /// made), written from `repo`; `digest` is the input digest of the lane's keys.
    pub fn new(repo: Repo, all: Arc<Vec<FileEntry>>, lane: &Lane, digest: Digest) -> RepoFileset {
        RepoFileset {
            repo,
            all,
            inputs: lane.inputs.clone(),
            digest,
        }
    }

    fn mine(&self) -> Vec<&FileEntry> {
        fileset::select(self.inputs.as_deref(), &self.all)
    }
}

impl Fileset for RepoFileset {
    fn files(&self) -> Result<Vec<FileEntry>, String> {
        let mine = self.mine();
        // The directory must hold exactly the files the keys describe.
        if fileset::digest(mine.iter().copied()) != self.digest {
            return Err("the lane's files do not match the digest its keys were made with".into());
        }
        Ok(mine.into_iter().cloned().collect())
    }

    fn write(&self, files: &[&FileEntry], dest: &Path) -> Result<(usize, u64), String> {
        self.repo
            .materialize(files.iter().copied(), dest)
            .map(|m| (m.files, m.bytes))
            .map_err(|e| e.to_string())
    }

    fn listing(&self) -> Vec<u8> {
        fileset::listing(self.mine())
    }
}
