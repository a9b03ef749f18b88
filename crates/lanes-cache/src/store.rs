//! The local disk store: `ROOT/v1/blobs/ab/<digest>`, `ROOT/v1/actions/ab/<key>`, `ROOT/v1/tmp/`.

use crate::action::{ActionResult, Lookup, RESULT_VERSION};
use crate::error::{CacheError, IoContext};
use lanes_core::Digest;
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};

/// Layout version of the directory tree; a new layout gets a new directory next to the old one.
const LAYOUT: &str = "v1";

/// A content-addressed store in one directory, safe to share between processes.
#[derive(Clone, Debug)]
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    /// Open (creating if needed) the store under `root`.
    pub fn open(root: &Path) -> Result<LocalStore, CacheError> {
        let store = LocalStore {
            root: root.join(LAYOUT),
        };
        for dir in ["blobs", "actions", "tmp"] {
            let path = store.root.join(dir);
            std::fs::create_dir_all(&path).at("create", &path)?;
        }
        Ok(store)
    }

    /// Where the store keeps its files.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn blob_path(&self, digest: &str) -> Result<PathBuf, CacheError> {
        check_digest(digest)?;
        Ok(self.root.join("blobs").join(&digest[..2]).join(digest))
    }

    fn action_path(&self, key: &str) -> Result<PathBuf, CacheError> {
        check_digest(key)?;
        Ok(self.root.join("actions").join(&key[..2]).join(key))
    }

    /// Store `bytes`; returns their digest. Storing the same bytes twice stores them once.
    pub fn put_blob(&self, bytes: &[u8]) -> Result<Digest, CacheError> {
        let digest = blake3::hash(bytes).to_hex().to_string();
        let path = self.blob_path(&digest)?;
        // An existing blob is only trusted after a check: a corrupt one is replaced, so a new
        // result never refers to bad bytes.
        if !(touch(&path) && std::fs::read(&path).is_ok_and(|existing| existing == bytes)) {
            self.write_atomically(&path, |file| file.write_all(bytes))?;
        }
        Ok(digest)
    }

    /// Store the contents of the file at `source`, hashing while copying so the name always
    /// matches the bytes stored, even if the file changes meanwhile. Returns digest and size.
    pub fn put_file(&self, source: &Path) -> Result<(Digest, u64), CacheError> {
        let mut input = std::fs::File::open(source).at("open", source)?;
        let mut temp = self.temp_file()?;
        let mut hasher = blake3::Hasher::new();
        let mut buffer = vec![0; 256 * 1024];
        let mut size = 0u64;
        loop {
            let n = match input.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e).at("read", source),
            };
            hasher.update(&buffer[..n]);
            temp.write_all(&buffer[..n]).at("write", temp.path())?;
            size += n as u64;
        }
        let digest = hasher.finalize().to_hex().to_string();
        let path = self.blob_path(&digest)?;
        if !(touch(&path) && hash_file(&path).is_ok_and(|existing| existing == digest)) {
            self.persist(temp, &path)?;
        }
        Ok((digest, size))
    }

    /// The bytes of a blob, verified. `Ok(None)` when it is missing or was corrupt (and has been
    /// removed).
    pub fn get_blob(&self, digest: &str) -> Result<Option<Vec<u8>>, CacheError> {
        let path = self.blob_path(digest)?;
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).at("read", &path),
        };
        if blake3::hash(&bytes).to_hex().as_str() != digest {
            remove_if_present(&path)?;
            return Ok(None);
        }
        Ok(Some(bytes))
    }

    /// Whether a blob is stored (not verified: use it to skip storing something again).
    pub fn has_blob(&self, digest: &str) -> bool {
        self.blob_path(digest).is_ok_and(|path| touch(&path))
    }

    /// Write the blob `digest` to the new file `dest` (mode 0755 when `executable`, else 0644),
    /// verifying it while copying. Returns `Ok(false)`, with `dest` and the blob removed, when the
    /// blob is missing or corrupt.
    pub fn copy_blob_to(
        &self,
        digest: &str,
        dest: &Path,
        executable: bool,
    ) -> Result<bool, CacheError> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.blob_path(digest)?;
        let mut input = match std::fs::File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e).at("open", &path),
        };
        let mut output = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(if executable { 0o755 } else { 0o644 })
            .open(dest)
            .at("create", dest)?;
        let mut hasher = blake3::Hasher::new();
        let mut buffer = vec![0; 256 * 1024];
        loop {
            let n = match input.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e).at("read", &path),
            };
            hasher.update(&buffer[..n]);
            output.write_all(&buffer[..n]).at("write", dest)?;
        }
        if hasher.finalize().to_hex().as_str() != digest {
            drop(output);
            remove_if_present(dest)?;
            remove_if_present(&path)?;
            return Ok(false);
        }
        if executable {
            // The umask may have cleared bits that `mode` asked for.
            use std::os::unix::fs::PermissionsExt;
            output
                .set_permissions(std::fs::Permissions::from_mode(0o755))
                .at("set the mode of", dest)?;
        }
        Ok(true)
    }

    /// Record a passing step's result under its key.
    pub fn put_action(&self, result: &ActionResult) -> Result<(), CacheError> {
        let path = self.action_path(&result.key)?;
        let json = serde_json::to_vec(result).expect("an action result always serializes");
        let checksum = blake3::hash(&json).to_hex();
        self.write_atomically(&path, |file| {
            file.write_all(&json)?;
            file.write_all(b"\n")?;
            file.write_all(checksum.as_bytes())?;
            file.write_all(b"\n")
        })
    }

    /// The result recorded under `key`, if it can be trusted: its checksum matches, it is of the
    /// current version, its fingerprint hashes to `key`, and its log and outputs blobs are present
    /// and intact. Anything else is removed and reported as [`Lookup::Corrupt`].
    pub fn get_action(&self, key: &str) -> Result<Lookup, CacheError> {
        let path = self.action_path(key)?;
        let text = match std::fs::read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Lookup::Miss),
            Err(e) => return Err(e).at("read", &path),
        };
        match self.verify_action(key, &text)? {
            Ok(result) => {
                touch(&path);
                Ok(Lookup::Hit(result))
            }
            Err(why) => {
                remove_if_present(&path)?;
                Ok(Lookup::Corrupt(why))
            }
        }
    }

    fn verify_action(
        &self,
        key: &str,
        text: &[u8],
    ) -> Result<Result<ActionResult, String>, CacheError> {
        let body = text.strip_suffix(b"\n").unwrap_or(text);
        let Some(split) = body.iter().rposition(|&b| b == b'\n') else {
            return Ok(Err("the action result has no checksum".into()));
        };
        let (json, checksum) = (&body[..split], &body[split + 1..]);
        if blake3::hash(json).to_hex().as_bytes() != checksum {
            return Ok(Err("the action result does not match its checksum".into()));
        }
        let result: ActionResult = match serde_json::from_slice(json) {
            Ok(result) => result,
            Err(e) => return Ok(Err(format!("the action result does not parse: {e}"))),
        };
        if result.version != RESULT_VERSION {
            return Ok(Err(format!(
                "the action result is of version {}",
                result.version
            )));
        }
        if result.key != key || result.fingerprint.key() != key {
            return Ok(Err(
                "the action result's fingerprint does not hash to its key".into(),
            ));
        }
        for (what, digest) in [("log", &result.log), ("outputs", &result.outputs)] {
            if self.get_blob(digest)?.is_none() {
                return Ok(Err(format!(
                    "the {what} blob {digest} is missing or corrupt"
                )));
            }
        }
        Ok(Ok(result))
    }

    fn temp_file(&self) -> Result<tempfile::NamedTempFile, CacheError> {
        let dir = self.root.join("tmp");
        tempfile::NamedTempFile::new_in(&dir).at("create a temporary file in", &dir)
    }

    /// Write `path` through a temporary file: written, fsynced, then renamed into place.
    fn write_atomically(
        &self,
        path: &Path,
        write: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
    ) -> Result<(), CacheError> {
        let mut temp = self.temp_file()?;
        write(temp.as_file_mut()).at("write", temp.path())?;
        self.persist(temp, path)
    }

    fn persist(&self, temp: tempfile::NamedTempFile, path: &Path) -> Result<(), CacheError> {
        temp.as_file().sync_all().at("sync", temp.path())?;
        let dir = path.parent().expect("store paths have a parent");
        std::fs::create_dir_all(dir).at("create", dir)?;
        // Renaming over an existing entry is fine: same name, same verified content.
        temp.persist(path)
            .map_err(|e| e.error)
            .at("rename into", path)?;
        Ok(())
    }
}

fn check_digest(digest: &str) -> Result<(), CacheError> {
    let valid = digest.len() == 64
        && digest
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if valid {
        Ok(())
    } else {
        Err(CacheError::InvalidDigest(digest.to_owned()))
    }
}

/// BLAKE3 of a file's bytes, read in chunks.
fn hash_file(path: &Path) -> std::io::Result<String> {
    let mut hasher = blake3::Hasher::new();
    std::io::copy(&mut std::fs::File::open(path)?, &mut hasher)?;
    Ok(hasher.finalize().to_hex().to_string())
}

/// Mark an existing entry as just used (its mtime is the last-use time garbage collection goes
/// by). Returns whether the entry exists.
fn touch(path: &Path) -> bool {
    match std::fs::File::options().append(true).open(path) {
        Ok(file) => {
            // An entry that keeps an older time may only be collected sooner: a miss later,
            // never a wrong hit.
            let _ = file.set_modified(std::time::SystemTime::now());
            true
        }
        Err(_) => path.exists(),
    }
}

fn remove_if_present(path: &Path) -> Result<(), CacheError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(e).at("remove", path),
        _ => Ok(()),
    }
}

impl LocalStore {
    /// Write `bytes` to `path`, a file under the store's root, the way every record is written.
    pub(crate) fn write_atomically_at(&self, path: &Path, bytes: &[u8]) -> Result<(), CacheError> {
        self.write_atomically(path, |file| file.write_all(bytes))
    }
}
