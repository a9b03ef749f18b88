//! Files as the step key sees them: a path, a mode and a content id.
//!
//! `lanes-git` produces these (from a commit's tree or from the working tree); this module only
//! defines them and turns a sorted list of them into a digest. It never reads a file.

use crate::catalog::Catalog;
use crate::glob::{Glob, MultiMatcher, Scratch};
use serde::{Deserialize, Serialize};

/// How the bytes of one file are identified.
///
/// Committed content is named by its git blob id, so a clean tree is keyed without reading a
/// single file. Content that git does not know yet (a modified or untracked file in the working
/// tree) is named by its BLAKE3 hash. The two never collide: the kind is part of the encoding.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "hex", rename_all = "kebab-case")]
pub enum ContentId {
    /// git's object id of the blob (hex), as stored in a tree or the index.
    GitBlob(String),
    /// BLAKE3 of the file's bytes (hex); for a symlink, of its target.
    Blake3(String),
}

/// git's file modes, the only ones a fileset can hold.
pub mod mode {
    /// A regular file.
    pub const FILE: u32 = 0o100644;
    /// An executable file.
    pub const EXECUTABLE: u32 = 0o100755;
    /// A symbolic link; its content is the link target.
    pub const SYMLINK: u32 = 0o120000;
    /// A submodule commit; its content id is the commit id.
    pub const GITLINK: u32 = 0o160000;
}

/// One file of a repository at one state (a commit or the working tree).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct FileEntry {
    /// Repository-relative path with `/` separators, no leading `./`.
    pub path: String,
    /// git file mode (see [`mode`]).
    pub mode: u32,
    /// What the bytes are.
    pub id: ContentId,
}

/// A BLAKE3 digest, shown as 64 lowercase hex characters.
pub type Digest = String;

/// Digest of a fileset: BLAKE3 over the sorted `(path, mode, content id)` entries.
///
/// Encoding per entry: `path NUL mode-in-octal NUL id-kind ":" id-hex LF`. git paths cannot
/// contain NUL, so the encoding is unambiguous. `entries` must be sorted by path.
pub fn digest<'a>(entries: impl IntoIterator<Item = &'a FileEntry>) -> Digest {
    let mut hasher = FilesetHasher::new();
    for entry in entries {
        hasher.add(entry);
    }
    hasher.finish()
}

/// The canonical listing of a fileset: the exact bytes [`digest`] hashes, so
/// `blake3(listing(entries)) == digest(entries)`. Kept beside results so a changed key can be
/// explained file by file.
pub fn listing<'a>(entries: impl IntoIterator<Item = &'a FileEntry>) -> Vec<u8> {
    let mut out = b"lanes-fileset-v1\n".to_vec();
    for entry in entries {
        encode(entry, &mut out);
    }
    out
}

/// The entries of a listing made by [`listing`]; `None` if it is not one.
pub fn parse_listing(bytes: &[u8]) -> Option<Vec<FileEntry>> {
    let body = bytes.strip_prefix(b"lanes-fileset-v1\n")?;
    let text = std::str::from_utf8(body).ok()?;
    text.lines()
        .map(|line| {
            let mut parts = line.split('\0');
            let path = parts.next()?.to_owned();
            let mode = u32::from_str_radix(parts.next()?, 8).ok()?;
            let (kind, hex) = parts.next()?.split_once(':')?;
            let id = match kind {
                "blob" => ContentId::GitBlob(hex.to_owned()),
                "blake3" => ContentId::Blake3(hex.to_owned()),
                _ => return None,
            };
            Some(FileEntry { path, mode, id })
        })
        .collect()
}

/// Appends the encoding of one entry (see [`digest`]) to `out`.
fn encode(entry: &FileEntry, out: &mut Vec<u8>) {
    use std::io::Write as _;
    let (kind, hex) = match &entry.id {
        ContentId::GitBlob(hex) => ("blob", hex),
        ContentId::Blake3(hex) => ("blake3", hex),
    };
    out.extend_from_slice(entry.path.as_bytes());
    // Writing to a Vec cannot fail.
    let _ = writeln!(out, "\0{:o}\0{kind}:{hex}", entry.mode);
}

/// Incremental form of [`digest`], for hashing many filesets in one pass over the files.
#[derive(Debug, Clone)]
pub struct FilesetHasher {
    hasher: blake3::Hasher,
    #[cfg(debug_assertions)]
    last: Option<String>,
}

impl Default for FilesetHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl FilesetHasher {
    /// An empty fileset.
    pub fn new() -> Self {
        let mut hasher = blake3::Hasher::new();
        hasher.update(b"lanes-fileset-v1\n");
        FilesetHasher {
            hasher,
            #[cfg(debug_assertions)]
            last: None,
        }
    }

    /// Add the next entry (entries must come in path order).
    pub fn add(&mut self, entry: &FileEntry) {
        let mut encoded = Vec::new();
        encode(entry, &mut encoded);
        self.add_encoded(&entry.path, &encoded);
    }

    /// Add the next entry, already encoded by [`encode`] (to hash one file into many filesets).
    fn add_encoded(&mut self, path: &str, encoded: &[u8]) {
        #[cfg(debug_assertions)]
        {
            debug_assert!(
                self.last.as_deref().is_none_or(|last| last < path),
                "fileset entries must be sorted and unique: {path:?} after {:?}",
                self.last
            );
            self.last = Some(path.to_owned());
        }
        // Only the debug build's order check above reads it.
        #[cfg(not(debug_assertions))]
        let _ = path;
        self.hasher.update(encoded);
    }

    /// The digest.
    pub fn finish(&self) -> Digest {
        self.hasher.finalize().to_hex().to_string()
    }
}

/// The files of `files` (sorted by path) that the pattern list `inputs` selects; `None` means
/// all of them.
pub fn select<'f>(inputs: Option<&[Glob]>, files: &'f [FileEntry]) -> Vec<&'f FileEntry> {
    let Some(inputs) = inputs else {
        return files.iter().collect();
    };
    let matcher = MultiMatcher::single(inputs);
    let mut scratch = Scratch::default();
    files
        .iter()
        .filter(|f| matcher.decide(&f.path, &mut scratch).is_some())
        .collect()
}

/// The input fileset digest of every lane of `catalog`, in catalog order, in one pass over
/// `files` (sorted by path).
pub fn lane_digests(catalog: &Catalog, files: &[FileEntry]) -> Vec<Digest> {
    let with_inputs: Vec<usize> = (0..catalog.lanes.len())
        .filter(|&i| catalog.lanes[i].inputs.is_some())
        .collect();
    let matcher = MultiMatcher::new(
        with_inputs
            .iter()
            .map(|&i| catalog.lanes[i].inputs.as_deref().unwrap_or(&[])),
    );
    let mut hashers = vec![FilesetHasher::new(); with_inputs.len()];
    let mut scratch = Scratch::default();
    let mut encoded = Vec::new();
    for file in files {
        encoded.clear();
        encode(file, &mut encoded);
        matcher.for_each_selecting(&file.path, &mut scratch, |list, _| {
            hashers[list].add_encoded(&file.path, &encoded);
        });
    }
    let everything = (with_inputs.len() < catalog.lanes.len()).then(|| digest(files));
    let mut by_lane = vec![None; catalog.lanes.len()];
    for (list, lane) in with_inputs.into_iter().enumerate() {
        by_lane[lane] = Some(hashers[list].finish());
    }
    by_lane
        .into_iter()
        .map(|d| {
            d.or_else(|| everything.clone())
                .expect("lanes without inputs see everything")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The encoding is part of every key: this digest changes only with `KEY_VERSION`.
    #[test]
    fn the_digest_encoding_is_stable() {
        let files = [
            FileEntry {
                path: "a.rs".into(),
                mode: mode::FILE,
                id: ContentId::GitBlob("e69de29bb2d1d6434b8b29ae775ad8c2e48c5391".into()),
            },
            FileEntry {
                path: "bin/run".into(),
                mode: mode::EXECUTABLE,
                id: ContentId::Blake3(
                    "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262".into(),
                ),
            },
        ];
        let mut expected = blake3::Hasher::new();
        expected.update(b"lanes-fileset-v1\n");
        expected.update(b"a.rs\x00100644\x00blob:e69de29bb2d1d6434b8b29ae775ad8c2e48c5391\n");
        expected.update(b"bin/run\x00100755\x00blake3:af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262\n");
        assert_eq!(digest(&files), expected.finalize().to_hex().to_string());
    }

    #[test]
    fn a_listing_hashes_to_the_digest_and_parses_back() {
        let files = [
            FileEntry {
                path: "a b/c.rs".into(),
                mode: mode::EXECUTABLE,
                id: ContentId::GitBlob("e69de29bb2d1d6434b8b29ae775ad8c2e48c5391".into()),
            },
            FileEntry {
                path: "z".into(),
                mode: mode::SYMLINK,
                id: ContentId::Blake3("af".repeat(32)),
            },
        ];
        let bytes = listing(&files);
        assert_eq!(blake3::hash(&bytes).to_hex().to_string(), digest(&files));
        assert_eq!(parse_listing(&bytes), Some(files.to_vec()));
        assert_eq!(parse_listing(b"something else"), None);
    }

    #[test]
    fn the_empty_fileset_has_a_digest_of_its_own() {
        assert_eq!(
            digest([]),
            blake3::hash(b"lanes-fileset-v1\n").to_hex().to_string()
        );
    }
}
