//! Secrets the forge holds per repository, and the branches that may use them
//! (docs/security.md, docs/serve.md).
//!
//! A value is read once, when the forge starts: written in the configuration file, read from a
//! file, or taken from the forge's environment. It leaves the forge only to the agent holding a
//! job whose lane asks for it by name, on a branch the secret allows; the agent masks it in every
//! log line before the line is sent, and it never enters a key, a report or the database.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A secret's value. Its `Debug` form never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(String);

impl SecretValue {
    /// The value itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretValue(***)")
    }
}

/// One secret of a repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Secret {
    /// Its value.
    pub value: SecretValue,
    /// The branch patterns allowed to use it (`*` within one path component, `**` across them);
    /// `None`: the repository's default branch only.
    pub branches: Option<Vec<String>>,
}

impl Secret {
    /// Whether a run of `branch`, in a repository whose default branch is `default_branch`,
    /// may use the secret.
    pub fn allows(&self, branch: &str, default_branch: &str) -> bool {
        match &self.branches {
            None => branch == default_branch,
            Some(patterns) => patterns
                .iter()
                .filter_map(|p| pattern(p).ok())
                .any(|m| m.is_match(branch)),
        }
    }

    /// Who may use it, for a refusal: `the default branch main` or `branches release/*, main`.
    pub fn allowed(&self, default_branch: &str) -> String {
        match &self.branches {
            None => format!("the default branch `{default_branch}` only"),
            Some(p) if p.is_empty() => "no branch".to_owned(),
            Some(p) => format!("the branches `{}`", p.join("`, `")),
        }
    }
}

fn pattern(text: &str) -> Result<globset::GlobMatcher, String> {
    globset::GlobBuilder::new(text)
        .literal_separator(true)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| format!("`{text}` is not a branch pattern: {e}"))
}

/// `[repo.secrets.NAME]` in the configuration file: exactly one of `value`, `file` and `env`,
/// and the branches allowed. Its `Debug` form never shows a value.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretFile {
    /// The value, written here.
    pub value: Option<String>,
    /// A file holding the value (one trailing newline is not part of it); relative to the
    /// configuration file.
    pub file: Option<PathBuf>,
    /// An environment variable of `lanes serve` holding the value.
    pub env: Option<String>,
    /// Branch patterns allowed to use it [default: the default branch only].
    pub branches: Option<Vec<String>>,
}

impl std::fmt::Debug for SecretFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretFile")
            .field("value", &self.value.as_ref().map(|_| "***"))
            .field("file", &self.file)
            .field("env", &self.env)
            .field("branches", &self.branches)
            .finish()
    }
}

impl SecretFile {
    /// The secret `name`, its value read now; or what is wrong (never showing a value).
    pub fn resolve(&self, name: &str) -> Result<Secret, String> {
        if !lanes_core::catalog::is_env_name(name) {
            return Err(format!(
                "`{name}` cannot name a secret: letters, digits and `_`, not starting with a digit"
            ));
        }
        let value = match (&self.value, &self.file, &self.env) {
            (Some(value), None, None) => value.clone(),
            (None, Some(path), None) => read_file(path)
                .map_err(|e| format!("the secret `{name}`: {}: {e}", path.display()))?,
            (None, None, Some(var)) => std::env::var(var).map_err(|_| {
                format!(
                    "the secret `{name}` comes from the environment variable `{var}`, which \
                     `lanes serve` does not have (or is not UTF-8)"
                )
            })?,
            _ => {
                return Err(format!(
                    "the secret `{name}` needs exactly one of `value`, `file` and `env`"
                ));
            }
        };
        if value.is_empty() {
            return Err(format!("the secret `{name}` is empty"));
        }
        for p in self.branches.iter().flatten() {
            pattern(p).map_err(|e| format!("the secret `{name}`: {e}"))?;
        }
        Ok(Secret {
            value: SecretValue(value),
            branches: self.branches.clone(),
        })
    }

    /// Makes a relative `file` relative to `base` (the configuration file's directory).
    pub fn rebase(&mut self, base: &Path) {
        if let Some(file) = &mut self.file
            && file.is_relative()
        {
            *file = base.join(&*file);
        }
    }
}

fn read_file(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let text = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(&text);
    Ok(text.to_owned())
}

/// Each repository's secrets, by repository name, then by secret name.
pub type Secrets = BTreeMap<String, BTreeMap<String, Secret>>;

/// What the lane of a job on `branch` of `repo` gets for each of `names`: the value, or why not.
pub fn grant(
    secrets: &Secrets,
    repo: &str,
    branch: &str,
    default_branch: &str,
    names: &[String],
) -> BTreeMap<String, Result<String, String>> {
    names
        .iter()
        .map(|name| {
            let answer = match secrets.get(repo).and_then(|s| s.get(name)) {
                None => Err(format!(
                    "the forge holds no secret `{name}` for the repository `{repo}`"
                )),
                Some(secret) if !secret.allows(branch, default_branch) => Err(format!(
                    "the branch `{branch}` may not use the secret `{name}` (allowed: {})",
                    secret.allowed(default_branch)
                )),
                Some(secret) => Ok(secret.value.expose().to_owned()),
            };
            (name.clone(), answer)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(branches: Option<&[&str]>) -> Secret {
        Secret {
            value: SecretValue("hunter2".to_owned()),
            branches: branches.map(|b| b.iter().map(|s| (*s).to_owned()).collect()),
        }
    }

    #[test]
    fn the_default_branch_only_unless_patterns_say_otherwise() {
        let only_default = secret(None);
        assert!(only_default.allows("main", "main"));
        assert!(!only_default.allows("feature", "main"));
        assert!(!only_default.allows("main-evil", "main"));
        let release = secret(Some(&["release/*", "main"]));
        assert!(release.allows("release/1.0", "main"));
        assert!(release.allows("main", "trunk"));
        assert!(!release.allows("release/1.0/x", "main"));
        assert!(!release.allows("trunk", "trunk"));
        assert!(!secret(Some(&[])).allows("main", "main"));
    }

    #[test]
    fn a_value_is_never_in_debug_or_a_refusal() {
        let mut secrets = Secrets::new();
        secrets
            .entry("app".to_owned())
            .or_default()
            .insert("TOKEN".to_owned(), secret(None));
        assert!(!format!("{secrets:?}").contains("hunter2"));
        let names = ["TOKEN".to_owned(), "OTHER".to_owned()];
        let got = grant(&secrets, "app", "feature", "main", &names);
        let token = got["TOKEN"].as_ref().expect_err("refused");
        assert!(
            token.contains("`feature` may not use the secret `TOKEN`"),
            "{token}"
        );
        assert!(!token.contains("hunter2"));
        let other = got["OTHER"].as_ref().expect_err("unknown");
        assert!(other.contains("holds no secret `OTHER`"), "{other}");
        let main = grant(&secrets, "app", "main", "main", &names);
        assert_eq!(main["TOKEN"].as_deref(), Ok("hunter2"));
    }

    #[test]
    fn a_source_is_exactly_one_of_value_file_and_env() {
        let none = SecretFile::default().resolve("A").expect_err("no source");
        assert!(none.contains("exactly one"), "{none}");
        let two = SecretFile {
            value: Some("v".into()),
            env: Some("HOME".into()),
            ..SecretFile::default()
        };
        assert!(two.resolve("A").is_err());
        let bad_name = SecretFile {
            value: Some("v".into()),
            ..SecretFile::default()
        };
        assert!(bad_name.resolve("1A").is_err());
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("s"), "from-file\n").expect("write");
        let mut file = SecretFile {
            file: Some("s".into()),
            ..SecretFile::default()
        };
        file.rebase(dir.path());
        assert_eq!(file.resolve("A").expect("read").value.expose(), "from-file");
        let missing = SecretFile {
            env: Some("LANES_TEST_NO_SUCH_VARIABLE".into()),
            ..SecretFile::default()
        };
        let e = missing.resolve("A").expect_err("missing");
        assert!(e.contains("LANES_TEST_NO_SUCH_VARIABLE"), "{e}");
        let bad_pattern = SecretFile {
            value: Some("v".into()),
            branches: Some(vec!["[".into()]),
            ..SecretFile::default()
        };
        assert!(bad_pattern.resolve("A").is_err());
    }
}
