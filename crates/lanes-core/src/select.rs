//! Lane selection: which lanes a change selects, and why every other lane is skipped.
//!
//! `(catalog, changed paths) -> Selection`, pure. Every lane comes out either selected with one
//! or more reasons or skipped with one, so a required check is never left pending and the UI, the
//! CLI and the JSON all say the same thing.

use crate::catalog::{Catalog, LaneClass};
use crate::glob::{Glob, MultiMatcher, Scratch};
use serde::Serialize;
use std::collections::HashMap;

/// Why a lane is selected or skipped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
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
