//! The one glob engine of lanes, used by lane triggers (`paths`), filesets (`inputs`), step
//! `outputs` and catalog validation.
//!
//! Semantics, for repository-relative paths with `/` separators:
//! - patterns are anchored at the repository root (a leading `/` is allowed and means the same);
//! - `*` and `?` never cross `/`; `**` as a whole component crosses any number of them (a
//!   character class `[...]` is taken as written, so `[!a]` can match `/`: avoid it);
//! - a trailing `/` means everything below: `docs/` is `docs/**`;
//! - a leading `!` excludes; for one path, the **last** pattern in the list that matches decides,
//!   so a later pattern overrides an earlier one.
//!
//! Many lists are usually matched against many paths (1,000 lanes, 100,000 files), so
//! [`MultiMatcher`] compiles every distinct pattern of every list into one `globset::GlobSet`
//! and answers "which lists select this path" with one automaton pass per path.

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use std::collections::HashMap;
use std::sync::OnceLock;

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
        let components: Vec<&str> = rest.split('/').collect();
        let last = components.len() - 1;
        let odd = |(i, c): (usize, &&str)| *c == "." || *c == ".." || (c.is_empty() && i < last);
        if components.iter().enumerate().any(odd) {
            return Err(GlobError {
                message: format!("pattern `{text}` is not a plain path from the repository root"),
                help: Some(
                    "patterns are anchored at the repository root and never match `.`, `..` or \
                     `//` in a path: drop them"
                        .into(),
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
///
/// Distinct globs are grouped by their literal directory prefix (`pkgs/p7/src/` for
/// `pkgs/p7/src/*.rs`): a path can only match globs whose prefix is one of its own ancestor
/// directories, so matching a path tries a handful of small sets instead of every glob. With one
/// big set, 1,000 patterns ending in `*.rs` meant 1,000 regex runs for every `.rs` path.
#[derive(Clone, Debug)]
pub struct MultiMatcher {
    /// Literal directory prefix (`""` or ending in `/`) -> the globs under it.
    buckets: HashMap<String, Bucket>,
    /// For each distinct glob: the (list, position) pairs that use it.
    postings: Vec<Vec<(u32, u32)>>,
    /// For each list, whether the pattern at each position excludes.
    negated: Vec<Vec<bool>>,
}

/// The globs that share one literal directory prefix.
///
/// Most globs need no regex: `prefix/**` matches every path under the prefix, a glob without
/// wildcards is a string comparison and `prefix/*.ext` a suffix test. The rest are compiled on
/// first use, so a selection that touches 1,000 paths compiles only the buckets those paths reach.
#[derive(Clone, Debug, Default)]
struct Bucket {
    /// Globs that are exactly `prefix**`: every path looked up here matches.
    everything: Vec<usize>,
    /// Globs without wildcards: (id, the path they name).
    literals: Vec<(usize, String)>,
    /// Globs that are `prefix*suffix` with a literal suffix (`src/*.rs`): (id, suffix).
    star_suffixes: Vec<(usize, String)>,
    /// Any other glob: (id, normalized glob), compiled together when first needed.
    patterns: Vec<(usize, String)>,
    compiled: OnceLock<GlobSet>,
}

/// Characters that make a glob more than a literal path.
const WILDCARDS: [char; 5] = ['*', '?', '[', '{', '\\'];

impl Bucket {
    fn add(&mut self, id: usize, prefix: &str, glob: &str) {
        let rest = &glob[prefix.len()..];
        if rest == "**" {
            self.everything.push(id);
        } else if !glob.contains(WILDCARDS) {
            self.literals.push((id, glob.to_owned()));
        } else if let Some(suffix) = rest.strip_prefix('*')
            && !suffix.contains(WILDCARDS)
            && !suffix.contains('/')
        {
            self.star_suffixes.push((id, suffix.to_owned()));
        } else {
            self.patterns.push((id, glob.to_owned()));
        }
    }

    /// Adds the ids of the globs matching `path`, which lies below this bucket's prefix of
    /// `prefix_len` bytes.
    fn matches_into(&self, path: &str, prefix_len: usize, scratch: &mut Scratch) {
        let ids = &mut scratch.ids;
        ids.extend_from_slice(&self.everything);
        let literals = self.literals.iter().filter(|(_, l)| l == path);
        ids.extend(literals.map(|(id, _)| *id));
        // `*` matches any run of characters other than `/`, the empty run included.
        let rest = &path[prefix_len..];
        if !rest.contains('/') {
            let suffixes = self
                .star_suffixes
                .iter()
                .filter(|(_, s)| rest.ends_with(s.as_str()));
            ids.extend(suffixes.map(|(id, _)| *id));
        }
        if self.patterns.is_empty() {
            return;
        }
        let set = self.compiled.get_or_init(|| {
            let mut builder = GlobSetBuilder::new();
            for (_, glob) in &self.patterns {
                builder.add(build(glob).expect("validated by Glob::parse"));
            }
            builder.build().expect("every glob compiled on its own")
        });
        set.matches_into(path, &mut scratch.local);
        ids.extend(scratch.local.iter().map(|&i| self.patterns[i].0));
    }
}

/// The longest run of leading directory components with no glob syntax, with its trailing `/`.
fn literal_dir_prefix(glob: &str) -> &str {
    let mut end = 0;
    for (i, c) in glob.char_indices() {
        if WILDCARDS.contains(&c) {
            break;
        }
        if c == '/' {
            end = i + 1;
        }
    }
    &glob[..end]
}

/// Reusable buffers for [`MultiMatcher::for_each_selecting`], so matching allocates nothing per
/// path.
#[derive(Debug, Default)]
pub struct Scratch {
    local: Vec<usize>,
    ids: Vec<usize>,
    generation: u32,
    best: Vec<(u32, u32)>,
    touched: Vec<u32>,
}

impl MultiMatcher {
    /// Compile `lists`; each list keeps its own order and last-match-wins rule.
    pub fn new<'a>(lists: impl IntoIterator<Item = &'a [Glob]>) -> MultiMatcher {
        let mut ids: HashMap<&str, usize> = HashMap::new();
        let mut buckets: HashMap<String, Bucket> = HashMap::new();
        let mut postings: Vec<Vec<(u32, u32)>> = Vec::new();
        let mut negated = Vec::new();
        for (list_index, list) in lists.into_iter().enumerate() {
            let list_index = u32::try_from(list_index).expect("fewer than 2^32 pattern lists");
            for (pos, glob) in list.iter().enumerate() {
                let pos = u32::try_from(pos).expect("fewer than 2^32 patterns in a list");
                let id = *ids.entry(glob.normalized.as_str()).or_insert_with(|| {
                    let id = postings.len();
                    let prefix = literal_dir_prefix(&glob.normalized);
                    buckets
                        .entry(prefix.to_owned())
                        .or_default()
                        .add(id, prefix, &glob.normalized);
                    postings.push(Vec::new());
                    id
                });
                postings[id].push((list_index, pos));
            }
            negated.push(list.iter().map(|g| g.negated).collect());
        }
        MultiMatcher {
            buckets,
            postings,
            negated,
        }
    }

    /// A matcher for one list.
    pub fn single(list: &[Glob]) -> MultiMatcher {
        MultiMatcher::new([list])
    }

    /// Calls `f(list, position)` for every list that selects `path`, where `position` is the
    /// pattern that decided (the last matching one, which is not an exclusion).
    pub fn for_each_selecting(
        &self,
        path: &str,
        scratch: &mut Scratch,
        mut f: impl FnMut(usize, usize),
    ) {
        scratch.ids.clear();
        let ancestors = std::iter::once(0).chain(path.match_indices('/').map(|(i, _)| i + 1));
        for end in ancestors {
            if let Some(bucket) = self.buckets.get(&path[..end]) {
                bucket.matches_into(path, end, scratch);
            }
        }
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
    fn literal_dir_prefixes() {
        assert_eq!(literal_dir_prefix("pkgs/p7/src/*.rs"), "pkgs/p7/src/");
        assert_eq!(literal_dir_prefix("docs/**"), "docs/");
        assert_eq!(literal_dir_prefix("Cargo.toml"), "");
        assert_eq!(literal_dir_prefix("crates/a/Cargo.toml"), "crates/a/");
        assert_eq!(literal_dir_prefix("**/*.md"), "");
        assert_eq!(literal_dir_prefix("a/{b,c}/d"), "a/");
        assert_eq!(literal_dir_prefix("a/b\\*/c"), "a/");
        assert_eq!(literal_dir_prefix("a[/]b/c"), "");
    }

    #[test]
    fn invalid_patterns_are_errors() {
        assert!(Glob::parse("src/[a").is_err());
        assert!(Glob::parse("").is_err());
        assert!(Glob::parse("!").is_err());
        assert!(Glob::parse("./src/**").is_err());
        assert!(Glob::parse("src/../x").is_err());
        assert!(Glob::parse("src/./x").is_err());
        assert!(Glob::parse("src//x").is_err());
        assert!(Glob::parse("src/").is_ok());
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

    /// The reference: every pattern compiled on its own, the last match decides.
    fn reference(patterns: &[Glob], path: &str) -> Option<usize> {
        patterns
            .iter()
            .enumerate()
            .rev()
            .find_map(|(i, g)| {
                let m = build(&g.normalized).expect("valid").compile_matcher();
                m.is_match(path).then_some(i)
            })
            .filter(|&i| !patterns[i].negated)
    }

    proptest::proptest! {
        #[test]
        fn the_bucketed_matcher_agrees_with_plain_glob_matching(
            patterns in proptest::collection::vec(
                "!?(/)?((a|b|src|\\.x|\\*|\\*\\*|\\*\\.rs|x\\.rs|\\?|\\{a,b\\}|\\[ab\\])/){0,3}(a|b|\\*|\\*\\*|\\*\\.rs|x\\.rs|\\.rs|a\\*|)",
                1..6,
            ),
            paths in proptest::collection::vec("((a|b|src|\\.x)/){0,3}(a|b|x\\.rs|\\.rs|y\\.rs|ab)", 1..8),
        ) {
            let globs: Vec<Glob> = patterns.iter().filter_map(|p| Glob::parse(p).ok()).collect();
            let matcher = MultiMatcher::single(&globs);
            let mut scratch = Scratch::default();
            for path in &paths {
                proptest::prop_assert_eq!(
                    matcher.decide(path, &mut scratch),
                    reference(&globs, path),
                    "path {} patterns {:?}", path, patterns
                );
            }
        }
    }
}
