//! Writing a fileset into a directory: the lane's working directory holds exactly these files.
//!
//! Content named by a git blob id is read from the object database, never from the working tree,
//! so what lands on disk is exactly what was keyed. Content named by BLAKE3 (a modified or
//! untracked file) can only come from the working tree; it is hashed while it is copied and a
//! file that changed since it was keyed is an error, never a silent mismatch between key and
//! content.

use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use lanes_core::fileset::{ContentId, FileEntry, mode};

use crate::error::Context;
use crate::{GitError, Repo};

/// What [`Repo::materialize`] wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Materialized {
    /// Files, symlinks and submodule placeholders written.
    pub files: usize,
    /// Bytes of file content written.
    pub bytes: u64,
}

impl Repo {
    /// Write `files` into `dest`, where none of them exists yet (missing parent directories are
    /// made; a parent that is a symlink would be followed, so the caller makes sure none is). Regular files get mode 0644 or 0755, symlinks point where they pointed, a
    /// submodule becomes an empty directory. A write is a new file with the current time, so a
    /// build tool sees it as changed.
    pub fn materialize<'f>(
        &self,
        files: impl IntoIterator<Item = &'f FileEntry>,
        dest: &Path,
    ) -> Result<Materialized, GitError> {
        std::fs::create_dir_all(dest).context(|| format!("create {}", dest.display()))?;
        let mut done = Materialized::default();
        for file in files {
            let target = dest.join(&file.path);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)
                    .context(|| format!("create {}", parent.display()))?;
            }
            let bytes = match (&file.id, file.mode) {
                (_, mode::GITLINK) => {
                    std::fs::create_dir_all(&target)
                        .context(|| format!("create {}", target.display()))?;
                    0
                }
                (ContentId::GitBlob(hex), _) => self.write_blob(hex, file, &target)?,
                (ContentId::Blake3(hex), _) => self.copy_from_worktree(hex, file, &target)?,
            };
            done.files += 1;
            done.bytes += bytes;
        }
        Ok(done)
    }

    fn write_blob(&self, hex: &str, file: &FileEntry, target: &Path) -> Result<u64, GitError> {
        let id = gix::ObjectId::from_hex(hex.as_bytes())
            .context(|| format!("parse the blob id of `{}`", file.path))?;
        let blob = self
            .inner
            .find_blob(id)
            .context(|| format!("read `{}` ({hex}) from the object database", file.path))?;
        write_entry(&blob.data, file, target)
    }

    fn copy_from_worktree(
        &self,
        hex: &str,
        file: &FileEntry,
        target: &Path,
    ) -> Result<u64, GitError> {
        let source = self.require_workdir()?.join(&file.path);
        let bytes = if file.mode == mode::SYMLINK {
            let link = std::fs::read_link(&source)
                .context(|| format!("read the link {}", source.display()))?;
            link.into_os_string().into_encoded_bytes()
        } else {
            let mut bytes = Vec::new();
            std::fs::File::open(&source)
                .and_then(|mut f| f.read_to_end(&mut bytes))
                .context(|| format!("read {}", source.display()))?;
            bytes
        };
        if blake3::hash(&bytes).to_hex().as_str() != hex {
            return Err(GitError::ChangedWhileReading {
                path: file.path.clone(),
            });
        }
        write_entry(&bytes, file, target)
    }
}

fn write_entry(bytes: &[u8], file: &FileEntry, target: &Path) -> Result<u64, GitError> {
    if file.mode == mode::SYMLINK {
        let link = std::ffi::OsStr::from_bytes(bytes);
        std::os::unix::fs::symlink(link, target)
            .context(|| format!("create the link {}", target.display()))?;
        return Ok(0);
    }
    let permissions = if file.mode == mode::EXECUTABLE {
        0o755
    } else {
        0o644
    };
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(target)
        .context(|| format!("create {}", target.display()))?;
    out.write_all(bytes)
        .context(|| format!("write {}", target.display()))?;
    out.set_permissions(std::fs::Permissions::from_mode(permissions))
        .context(|| format!("set the mode of {}", target.display()))?;
    Ok(bytes.len() as u64)
}
