//! The one glob engine of lanes, used by lane triggers (`paths`), filesets (`inputs`), step
//! `outputs` and catalog validation.
//!
//! Semantics, for repository-relative paths with `/` separators:
//! - patterns are anchored at the repository root (a leading `/` is allowed and means the same);
//! - `*`, `?` and `[...]` never cross `/`; `**` as a whole component crosses any number of them;
//! - a trailing `/` means everything below: `docs/` is `docs/**`;
//! - a leading `!` excludes; for one path, the **last** pattern in the list that matches decides,
//!   so a later pattern overrides an earlier one.
//!
//! Many lists are usually matched against many paths (1,000 lanes, 100,000 files), so
//! [`MultiMatcher`] compiles every distinct pattern of every list into one `globset::GlobSet`
//! and answers "which lists select this path" with one automaton pass per path.

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use std::collections::HashMap;

/// One pattern as the user wrote it, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Glob {
    /// The pattern as written, including a leading `!`.
    pub text: String,
    /// True for an exclusion (`!pattern`).
    pub negated: bool,
    /// The glob handed to the matcher: no `!`, no leading `/`, `dir/` expanded to `dir/**`.
    normalized: String,
}

/// Why a pattern is not a valid glob.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct GlobError {
    /// What is wrong.
    pub message: String,
    /// What to do instead.
    pub help: Option<String>,
}

impl Glob {
    /// Parse and check one pattern.
    pub fn parse(text: &str) -> Result<Glob, GlobError> {
        let (negated, rest) = match text.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let rest = rest.strip_prefix('/').unwrap_or(rest);
        if rest.is_empty() {
            return Err(GlobError {
                message: format!("empty pattern `{text}`"),
                help: Some("write a path or glob relative to the repository root".into()),
            });
        }
        if rest.starts_with("./") || rest.split('/').any(|c| c == "..") {
            return Err(GlobError {
                message: format!("pattern `{text}` is not relative to the repository root"),
                help: Some(
                    "patterns are anchored at the repository root: drop `./` and `..`".into(),
                ),
            });
        }
        let normalized = if rest.ends_with('/') {
            format!("{rest}**")
        } else {
            rest.to_owned()
        };
        build(&normalized).map_err(|e| GlobError {
            message: format!("invalid glob `{text}`: {}", e.kind()),
            help: Some(
                "`*` matches within one directory, `**` across directories, `{a,b}` either".into(),
            ),
        })?;
        Ok(Glob {
            text: text.to_owned(),
            negated,
            normalized,
        })
    }

    /// The same pattern with its meaning flipped (for `!@set`).
    pub(crate) fn flipped(&self) -> Glob {
        let text = if self.negated {
            self.positive_text().to_owned()
        } else {
            format!("!{}", self.text)
        };
        Glob {
            text,
            negated: !self.negated,
            normalized: self.normalized.clone(),
        }
    }

    /// The pattern without `!`, as written (for display in reasons).
    pub fn positive_text(&self) -> &str {
        self.text.strip_prefix('!').unwrap_or(&self.text)
    }
}

fn build(normalized: &str) -> Result<globset::Glob, globset::Error> {
    GlobBuilder::new(normalized)
        .literal_separator(true)
        .backslash_escape(true)
        .empty_alternates(true)
        .build()
}

/// Many ordered pattern lists compiled into one matcher.
#[derive(Clone, Debug)]
pub struct MultiMatcher {
    set: GlobSet,
    /// For each distinct glob in `set`: the (list, position) pairs that use it.
    postings: Vec<Vec<(u32, u32)>>,
    /// For each list, whether the pattern at each position excludes.
    negated: Vec<Vec<bool>>,
}

/// Reusable buffers for [`MultiMatcher::for_each_selecting`], so matching allocates nothing per
/// path.
#[derive(Debug, Default)]
pub struct Scratch {
    ids: Vec<usize>,
    generation: u32,
    best: Vec<(u32, u32)>,
    touched: Vec<u32>,
}

impl MultiMatcher {
    /// Compile `lists`; each list keeps its own order and last-match-wins rule.
    pub fn new<'a>(lists: impl IntoIterator<Item = &'a [Glob]>) -> MultiMatcher {
        let mut ids: HashMap<&str, usize> = HashMap::new();
        let mut builder = GlobSetBuilder::new();
        let mut postings: Vec<Vec<(u32, u32)>> = Vec::new();
        let mut negated = Vec::new();
        for (list_index, list) in lists.into_iter().enumerate() {
            let list_index = u32::try_from(list_index).expect("fewer than 2^32 pattern lists");
            for (pos, glob) in list.iter().enumerate() {
                let pos = u32::try_from(pos).expect("fewer than 2^32 patterns in a list");
                let id = *ids.entry(glob.normalized.as_str()).or_insert_with(|| {
                    builder.add(build(&glob.normalized).expect("validated by Glob::parse"));
                    postings.push(Vec::new());
                    postings.len() - 1
                });
                postings[id].push((list_index, pos));
            }
            negated.push(list.iter().map(|g| g.negated).collect());
        }
        let set = builder.build().expect("every glob compiled on its own");
        MultiMatcher {
            set,
            postings,
            negated,
        }
    }

    /// A matcher for one list.
    pub fn single(list: &[Glob]) -> MultiMatcher {
        MultiMatcher::new([list])
    }

    /// Number of lists.
    pub fn len(&self) -> usize {
        self.negated.len()
    }

    /// True when there are no lists.
    pub fn is_empty(&self) -> bool {
        self.negated.is_empty()
    }

    /// Calls `f(list, position)` for every list that selects `path`, where `position` is the
    /// pattern that decided (the last matching one, which is not an exclusion).
    pub fn for_each_selecting(
        &self,
        path: &str,
        scratch: &mut Scratch,
        mut f: impl FnMut(usize, usize),
    ) {
        self.set.matches_into(path, &mut scratch.ids);
        if scratch.ids.is_empty() {
            return;
        }
        if scratch.best.len() != self.negated.len() {
            scratch.best = vec![(0, 0); self.negated.len()];
            scratch.generation = 0;
        }
        scratch.generation = scratch.generation.wrapping_add(1);
        if scratch.generation == 0 {
            scratch.best.iter_mut().for_each(|b| *b = (0, 0));
            scratch.generation = 1;
        }
        let generation = scratch.generation;
        scratch.touched.clear();
        for &id in &scratch.ids {
            for &(list, pos) in &self.postings[id] {
                let best = &mut scratch.best[list as usize];
                if best.0 != generation {
                    *best = (generation, pos);
                    scratch.touched.push(list);
                } else if pos > best.1 {
                    best.1 = pos;
                }
            }
        }
        scratch.touched.sort_unstable();
        for &list in &scratch.touched {
            let pos = scratch.best[list as usize].1 as usize;
            if !self.negated[list as usize][pos] {
                f(list as usize, pos);
            }
        }
    }

    /// The deciding pattern of list 0 for `path` (for single-list matchers).
    pub fn decide(&self, path: &str, scratch: &mut Scratch) -> Option<usize> {
        let mut found = None;
        self.for_each_selecting(path, scratch, |list, pos| {
            if list == 0 {
                found = Some(pos);
            }
        });
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(patterns: &[&str]) -> Vec<Glob> {
        patterns
            .iter()
            .map(|p| Glob::parse(p).expect("valid"))
            .collect()
    }

    fn selects(patterns: &[&str], path: &str) -> bool {
        let globs = list(patterns);
        MultiMatcher::single(&globs)
            .decide(path, &mut Scratch::default())
            .is_some()
    }

    #[test]
    fn anchored_at_root() {
        assert!(selects(&["Cargo.toml"], "Cargo.toml"));
        assert!(!selects(&["Cargo.toml"], "crates/a/Cargo.toml"));
        assert!(selects(&["/Cargo.toml"], "Cargo.toml"));
    }

    #[test]
    fn star_stops_at_slash_and_double_star_crosses() {
        assert!(selects(&["*.md"], "README.md"));
        assert!(!selects(&["*.md"], "docs/guide.md"));
        assert!(selects(&["**/*.md"], "docs/guide.md"));
        assert!(selects(&["**/*.md"], "README.md"));
        assert!(selects(&["crates/**"], "crates/a/src/lib.rs"));
        assert!(!selects(&["crates/*"], "crates/a/src/lib.rs"));
        assert!(selects(&["crates/*/src/**"], "crates/a/src/x/y.rs"));
    }

    #[test]
    fn trailing_slash_means_everything_below() {
        assert!(selects(&["docs/"], "docs/a/b.md"));
        assert!(!selects(&["docs/"], "docs"));
        assert!(!selects(&["docs/"], "docsite/a.md"));
    }

    #[test]
    fn later_patterns_override_earlier_ones() {
        let p = ["crates/**", "!crates/**/README.md", "crates/core/README.md"];
        assert!(selects(&p, "crates/a/lib.rs"));
        assert!(!selects(&p, "crates/a/README.md"));
        assert!(selects(&p, "crates/core/README.md"));
        // An exclusion before the inclusion is overridden by it.
        assert!(selects(&["!crates/a/**", "crates/**"], "crates/a/x"));
        // An exclusion alone selects nothing.
        assert!(!selects(&["!docs/**"], "src/main.rs"));
    }

    #[test]
    fn invalid_patterns_are_errors() {
        assert!(Glob::parse("src/[a").is_err());
        assert!(Glob::parse("").is_err());
        assert!(Glob::parse("!").is_err());
        assert!(Glob::parse("./src/**").is_err());
        assert!(Glob::parse("src/../x").is_err());
    }

    #[test]
    fn multi_matcher_reports_each_selecting_list_with_its_deciding_pattern() {
        let a = list(&["crates/**"]);
        let b = list(&["docs/", "crates/**", "!crates/x/**"]);
        let c = list(&["*.md"]);
        let m = MultiMatcher::new([a.as_slice(), b.as_slice(), c.as_slice()]);
        let mut scratch = Scratch::default();
        let mut hits = Vec::new();
        m.for_each_selecting("crates/y/lib.rs", &mut scratch, |l, p| hits.push((l, p)));
        assert_eq!(hits, vec![(0, 0), (1, 1)]);
        hits.clear();
        m.for_each_selecting("crates/x/lib.rs", &mut scratch, |l, p| hits.push((l, p)));
        assert_eq!(hits, vec![(0, 0)]);
        hits.clear();
        m.for_each_selecting("README.md", &mut scratch, |l, p| hits.push((l, p)));
        assert_eq!(hits, vec![(2, 0)]);
    }
}
