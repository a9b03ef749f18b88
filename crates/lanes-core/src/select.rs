//! Lane selection: which lanes a change selects, and why every other lane is skipped.
//!
//! `(catalog, changed paths) -> Selection`, pure. Every lane comes out either selected with one
//! or more reasons or skipped with one, so a required check is never left pending and the UI, the
//! CLI and the JSON all say the same thing.

use crate::catalog::{Catalog, LaneClass};
use crate::glob::{Glob, MultiMatcher, Scratch};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Why a lane is selected or skipped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Reason {
    /// A changed path matched one of the lane's `paths` patterns (the deciding one).
    Path {
        /// The changed path.
        path: String,
        /// The pattern as written (after `@set` expansion).
        pattern: String,
    },
    /// The catalog or its pins file changed, which selects every required and advisory lane.
    CatalogChanged {
        /// The changed file.
        path: String,
    },
    /// A required or advisory lane without `paths` runs on every change.
    Always,
    /// A selected lane needs this one.
    NeededBy {
        /// The lane that needs it.
        lane: String,
    },
    /// `--all` was given.
    Forced,
    /// Skipped: no changed path matched.
    NoMatchingPath,
    /// Skipped: nightly lanes run on their schedule, not on a diff.
    Nightly,
    /// Skipped: manual lanes run only when asked for.
    Manual,
    /// Named on the command line (`lanes run LANE`).
    Requested,
    /// The forge runs a nightly lane for one of its cron slots, on the default branch's head.
    Scheduled {
        /// The slot's time, RFC 3339 in UTC (`2026-05-01T03:00:00Z`).
        slot: String,
    },
    /// Skipped: other lanes were named on the command line.
    NotRequested,
    /// Skipped at run time: a required lane failed and the run stopped starting lanes (run
    /// without `--keep-going`).
    StoppedAfterFailure {
        /// The lane that failed.
        lane: String,
    },
    /// Skipped at run time: a lane it needs did not pass.
    NeedFailed {
        /// The lane that did not pass.
        lane: String,
    },
    /// Skipped at run time: the run was cancelled before the lane started.
    RunCancelled,
}

impl Reason {
    /// True for a reason a lane is skipped for (no changed path matched, nightly, manual, not
    /// named, a failure stopped it, the run was cancelled).
    pub fn skips(&self) -> bool {
        matches!(
            self,
            Reason::NoMatchingPath
                | Reason::Nightly
                | Reason::Manual
                | Reason::NotRequested
                | Reason::StoppedAfterFailure { .. }
                | Reason::NeedFailed { .. }
                | Reason::RunCancelled
        )
    }
}

/// A selection reason in words: the one wording `lanes select`, `lanes run`, `lanes status` and
/// the web UI use.
impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::Path { path, pattern } => write!(f, "{path} matched {pattern}"),
            Reason::CatalogChanged { path } => write!(f, "{path} changed"),
            Reason::Always => f.write_str("runs on every change"),
            Reason::NeededBy { lane } => write!(f, "needed by {lane}"),
            Reason::Forced => f.write_str("selected by --all"),
            Reason::NoMatchingPath => f.write_str("no matching path"),
            Reason::Nightly => f.write_str("nightly"),
            Reason::Manual => f.write_str("manual"),
            Reason::Requested => f.write_str("named on the command line"),
            Reason::Scheduled { slot } => write!(f, "scheduled for the cron slot {slot}"),
            Reason::NotRequested => f.write_str("not named on the command line"),
            Reason::StoppedAfterFailure { lane } => write!(f, "not started after {lane} failed"),
            Reason::NeedFailed { lane } => write!(f, "needs {lane}, which did not pass"),
            Reason::RunCancelled => f.write_str("the run was cancelled"),
        }
    }
}

/// The decision for one lane.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LaneSelection {
    /// The lane.
    pub name: String,
    /// Its class.
    pub class: LaneClass,
    /// Selected or skipped.
    pub selected: bool,
    /// Why; never empty.
    pub reasons: Vec<Reason>,
}

/// The decision for every lane of a catalog, in catalog order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Selection {
    /// One entry per lane.
    pub lanes: Vec<LaneSelection>,
}

impl Selection {
    /// The selected lanes, in catalog order.
    pub fn selected(&self) -> impl Iterator<Item = &LaneSelection> {
        self.lanes.iter().filter(|l| l.selected)
    }

    /// The skipped lanes, in catalog order.
    pub fn skipped(&self) -> impl Iterator<Item = &LaneSelection> {
        self.lanes.iter().filter(|l| !l.selected)
    }
}

/// What to select from.
#[derive(Clone, Copy, Debug)]
pub enum Trigger<'a> {
    /// The paths that changed between the merge-base and the head (sorted or not).
    Changed {
        /// Changed paths, repository-relative.
        paths: &'a [String],
        /// Where the catalog lives (normally `lanes.toml`), so a change to it selects everything.
        catalog_path: &'a str,
    },
    /// `--all`: every required and advisory lane.
    All,
}

/// The trigger patterns of every lane, compiled once for a catalog.
#[derive(Debug)]
pub struct Selector<'c> {
    catalog: &'c Catalog,
    /// List `i` of the matcher is the `paths` of `with_paths[i]`.
    matcher: MultiMatcher,
    with_paths: Vec<usize>,
}

impl<'c> Selector<'c> {
    /// Compile the `paths` of every lane of `catalog`.
    pub fn new(catalog: &'c Catalog) -> Selector<'c> {
        let with_paths: Vec<usize> = catalog
            .lanes
            .iter()
            .enumerate()
            .filter(|(_, l)| l.paths.is_some())
            .map(|(i, _)| i)
            .collect();
        let lists: Vec<&[Glob]> = with_paths
            .iter()
            .map(|&i| catalog.lanes[i].paths.as_deref().unwrap_or(&[]))
            .collect();
        Selector {
            catalog,
            matcher: MultiMatcher::new(lists),
            with_paths,
        }
    }

    /// Decide every lane.
    pub fn select(&self, trigger: Trigger<'_>) -> Selection {
        let catalog = self.catalog;
        let mut reasons: Vec<Vec<Reason>> = vec![Vec::new(); catalog.lanes.len()];
        let by_diff = |class: LaneClass| matches!(class, LaneClass::Required | LaneClass::Advisory);
        match trigger {
            Trigger::All => {
                for (lane, reasons) in catalog.lanes.iter().zip(&mut reasons) {
                    if by_diff(lane.class) {
                        reasons.push(Reason::Forced);
                    }
                }
            }
            Trigger::Changed {
                paths,
                catalog_path,
            } => {
                let own: Vec<&str> = catalog.own_paths(catalog_path).collect();
                let catalog_change = paths.iter().find(|p| own.contains(&p.as_str()));
                let mut scratch = Scratch::default();
                for (i, lane) in catalog.lanes.iter().enumerate() {
                    if !by_diff(lane.class) {
                        continue;
                    }
                    if let Some(path) = catalog_change {
                        reasons[i].push(Reason::CatalogChanged { path: path.clone() });
                    }
                    if lane.paths.is_none() {
                        reasons[i].push(Reason::Always);
                    }
                }
                for path in paths {
                    self.matcher
                        .for_each_selecting(path, &mut scratch, |list, pos| {
                            let lane_index = self.with_paths[list];
                            let lane = &catalog.lanes[lane_index];
                            if by_diff(lane.class) {
                                let pattern = lane.paths.as_ref().expect("listed lanes have paths");
                                reasons[lane_index].push(Reason::Path {
                                    path: path.clone(),
                                    pattern: pattern[pos].text.clone(),
                                });
                            }
                        });
                }
            }
        }
        self.close_over_needs(&mut reasons);
        let lanes = catalog
            .lanes
            .iter()
            .zip(reasons)
            .map(|(lane, mut reasons)| {
                let selected = !reasons.is_empty();
                if !selected {
                    reasons.push(match lane.class {
                        LaneClass::Nightly => Reason::Nightly,
                        LaneClass::Manual => Reason::Manual,
                        LaneClass::Required | LaneClass::Advisory => Reason::NoMatchingPath,
                    });
                }
                LaneSelection {
                    name: lane.name.clone(),
                    class: lane.class,
                    selected,
                    reasons,
                }
            })
            .collect();
        Selection { lanes }
    }

    /// A selected lane selects what it needs, transitively, whatever their class: the lane
    /// cannot run without them.
    fn close_over_needs(&self, reasons: &mut [Vec<Reason>]) {
        let lanes = &self.catalog.lanes;
        let index: HashMap<&str, usize> = lanes
            .iter()
            .enumerate()
            .map(|(i, l)| (l.name.as_str(), i))
            .collect();
        let mut queue: Vec<usize> = (0..lanes.len())
            .filter(|&i| !reasons[i].is_empty())
            .collect();
        while let Some(i) = queue.pop() {
            for need in &lanes[i].needs {
                let Some(&j) = index.get(need.as_str()) else {
                    continue;
                };
                let reason = Reason::NeededBy {
                    lane: lanes[i].name.clone(),
                };
                if reasons[j].contains(&reason) {
                    continue;
                }
                if reasons[j].is_empty() {
                    queue.push(j);
                }
                reasons[j].push(reason);
            }
        }
    }
}

/// Select in one call (compiles the triggers each time; keep a [`Selector`] to reuse them).
pub fn select(catalog: &Catalog, trigger: Trigger<'_>) -> Selection {
    Selector::new(catalog).select(trigger)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostic::Source;

    const CATALOG: &str = r#"
version = 1
pins = "ci/pins.toml"

[paths]
rust = ["crates/**", "Cargo.toml"]

[lane.fmt]
[[lane.fmt.step]]
name = "fmt"
run = "true"

[lane.test]
paths = ["@rust", "!crates/**/README.md"]
needs = ["build"]
[[lane.test.step]]
name = "t"
run = "true"

[lane.build]
class = "manual"
paths = ["never/**"]
[[lane.build.step]]
name = "b"
run = "true"

[lane.docs]
class = "advisory"
paths = ["docs/", "*.md"]
[[lane.docs.step]]
name = "d"
run = "true"

[lane.bench]
class = "nightly"
schedule = "0 3 * * *"
paths = ["crates/**"]
[[lane.bench.step]]
name = "b"
run = "true"
"#;

    fn catalog() -> Catalog {
        let mut load = |_: &str| Ok("x = { command = \"x\", expect = \"1\" }".to_owned());
        crate::parse(&Source::new("lanes.toml", CATALOG), &mut load).expect("valid")
    }

    fn changed(paths: &[&str]) -> Selection {
        let paths: Vec<String> = paths.iter().map(|p| p.to_string()).collect();
        select(
            &catalog(),
            Trigger::Changed {
                paths: &paths,
                catalog_path: "lanes.toml",
            },
        )
    }

    fn lane<'s>(s: &'s Selection, name: &str) -> &'s LaneSelection {
        s.lanes
            .iter()
            .find(|l| l.name == name)
            .expect("lane exists")
    }

    #[test]
    fn a_matching_path_selects_with_the_deciding_pattern() {
        let s = changed(&["crates/a/src/lib.rs", "crates/a/README.md"]);
        let test = lane(&s, "test");
        assert!(test.selected);
        assert_eq!(
            test.reasons,
            [Reason::Path {
                path: "crates/a/src/lib.rs".into(),
                pattern: "crates/**".into()
            }]
        );
    }

    #[test]
    fn an_excluded_path_alone_does_not_select() {
        let s = changed(&["crates/a/README.md"]);
        assert_eq!(lane(&s, "test").reasons, [Reason::NoMatchingPath]);
        // `*.md` does not cross `/`, so the docs lane ignores it too.
        assert_eq!(lane(&s, "docs").reasons, [Reason::NoMatchingPath]);
    }

    #[test]
    fn lanes_without_paths_always_run() {
        let s = changed(&["unrelated.txt"]);
        assert_eq!(lane(&s, "fmt").reasons, [Reason::Always]);
        assert!(!lane(&s, "test").selected);
    }

    #[test]
    fn nightly_and_manual_lanes_are_never_selected_by_a_diff() {
        let s = changed(&["crates/a/src/lib.rs", "never/x", "lanes.toml"]);
        assert_eq!(lane(&s, "bench").reasons, [Reason::Nightly]);
        // build is manual, but test needs it.
        assert_eq!(
            lane(&s, "build").reasons,
            [Reason::NeededBy {
                lane: "test".into()
            }]
        );
        let s = changed(&["never/x"]);
        assert_eq!(lane(&s, "build").reasons, [Reason::Manual]);
    }

    #[test]
    fn a_catalog_or_pins_change_selects_every_diff_lane() {
        for file in ["lanes.toml", "ci/pins.toml"] {
            let s = changed(&[file]);
            for name in ["fmt", "test", "docs"] {
                assert_eq!(
                    lane(&s, name).reasons.first(),
                    Some(&Reason::CatalogChanged { path: file.into() }),
                    "{name} after {file}"
                );
            }
            assert!(!lane(&s, "bench").selected);
        }
    }

    #[test]
    fn all_forces_required_and_advisory_lanes() {
        let s = select(&catalog(), Trigger::All);
        for name in ["fmt", "test", "docs"] {
            assert_eq!(lane(&s, name).reasons, [Reason::Forced], "{name}");
        }
        assert_eq!(
            lane(&s, "build").reasons,
            [Reason::NeededBy {
                lane: "test".into()
            }]
        );
        assert_eq!(lane(&s, "bench").reasons, [Reason::Nightly]);
    }

    #[test]
    fn every_changed_path_that_selects_is_a_reason() {
        let s = changed(&["Cargo.toml", "crates/b/x.rs"]);
        assert_eq!(lane(&s, "test").reasons.len(), 2);
    }

    #[test]
    fn json_shape() {
        let s = changed(&["docs/a.md"]);
        let json = serde_json::to_value(lane(&s, "docs")).expect("serializes");
        assert_eq!(
            json,
            serde_json::json!({"name": "docs", "class": "advisory", "selected": true,
                "reasons": [{"kind": "path", "path": "docs/a.md", "pattern": "docs/"}]})
        );
        let json = serde_json::to_value(&lane(&s, "test").reasons).expect("serializes");
        assert_eq!(json, serde_json::json!([{"kind": "no-matching-path"}]));
    }

    #[test]
    fn a_scheduled_reason_names_its_slot() {
        let reason = Reason::Scheduled {
            slot: "2026-05-01T03:00:00Z".into(),
        };
        assert_eq!(
            serde_json::to_value(&reason).expect("serializes"),
            serde_json::json!({"kind": "scheduled", "slot": "2026-05-01T03:00:00Z"})
        );
    }
}
