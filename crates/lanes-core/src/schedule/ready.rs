//! The ready queue: queued jobs whose needs all passed, in serving order, split by what decides
//! whether an agent may take them (their concurrency group and their label set).
//!
//! Jobs of one partition are interchangeable for placement: an agent may take the first one
//! exactly when it may take any of them. So a lease looks at one head per partition (a handful:
//! groups × label sets) instead of walking the queue past jobs it cannot take.

use super::JobId;
use crate::job::Priority;
use std::collections::{BTreeSet, HashMap};

/// Serving order: priority, then FIFO (job ids only grow).
pub(super) type Key = (Priority, JobId);

/// An interned concurrency group.
pub(super) type GroupIx = u32;

/// An interned label set (sorted label ids); `0` is the empty set.
pub(super) type LabelSetIx = u32;

/// The jobs of one (group, label set), never empty.
#[derive(Debug)]
pub(super) struct Part {
    pub(super) group: Option<GroupIx>,
    pub(super) labels: LabelSetIx,
    /// `queue.first()`, kept beside it so a lease compares heads without walking trees.
    pub(super) head: Key,
    queue: BTreeSet<Key>,
}

/// Every ready job, partitioned.
#[derive(Debug, Default)]
pub(super) struct Ready {
    parts: Vec<Part>,
    index: HashMap<(Option<GroupIx>, LabelSetIx), usize>,
}

impl Ready {
    /// The partitions, each with at least one job.
    pub(super) fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// The partition of (`group`, `labels`), if it holds jobs.
    #[cfg(test)]
    pub(super) fn part(&self, group: Option<GroupIx>, labels: LabelSetIx) -> Option<&Part> {
        self.index.get(&(group, labels)).map(|&i| &self.parts[i])
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.parts.iter().map(|p| p.queue.len()).sum()
    }

    pub(super) fn insert(&mut self, group: Option<GroupIx>, labels: LabelSetIx, key: Key) {
        match self.index.get(&(group, labels)) {
            Some(&i) => {
                let part = &mut self.parts[i];
                part.queue.insert(key);
                part.head = part.head.min(key);
            }
            None => {
                self.index.insert((group, labels), self.parts.len());
                self.parts.push(Part {
                    group,
                    labels,
                    head: key,
                    queue: BTreeSet::from([key]),
                });
            }
        }
    }

    /// Removes `key` from its partition; false if it was not there.
    pub(super) fn remove(&mut self, group: Option<GroupIx>, labels: LabelSetIx, key: Key) -> bool {
        let Some(&i) = self.index.get(&(group, labels)) else {
            return false;
        };
        let removed = self.parts[i].queue.remove(&key);
        self.settle(i);
        removed
    }

    /// Takes the head of partition `i`.
    pub(super) fn pop(&mut self, i: usize) -> Key {
        let key = self.parts[i].head;
        self.parts[i].queue.remove(&key);
        self.settle(i);
        key
    }

    /// Restores `head`, or drops partition `i` once it is empty, so leases never look at empty
    /// partitions and old (group, label set) pairs do not pile up.
    fn settle(&mut self, i: usize) {
        if let Some(&first) = self.parts[i].queue.first() {
            self.parts[i].head = first;
            return;
        }
        let gone = self.parts.swap_remove(i);
        self.index.remove(&(gone.group, gone.labels));
        if let Some(moved) = self.parts.get(i) {
            self.index.insert((moved.group, moved.labels), i);
        }
    }
}

/// Interned labels and label sets, so a placement check compares small sorted integer slices.
#[derive(Debug)]
pub(super) struct Labels {
    names: Vec<String>,
    ids: HashMap<String, u32>,
    sets: Vec<Box<[u32]>>,
    set_ids: HashMap<Box<[u32]>, LabelSetIx>,
}

impl Default for Labels {
    fn default() -> Labels {
        let empty: Box<[u32]> = Box::new([]);
        Labels {
            names: Vec::new(),
            ids: HashMap::new(),
            sets: vec![empty.clone()],
            set_ids: HashMap::from([(empty, 0)]),
        }
    }
}

impl Labels {
    /// The sorted ids of `names`.
    pub(super) fn ids<'a>(&mut self, names: impl IntoIterator<Item = &'a String>) -> Box<[u32]> {
        let mut ids: Vec<u32> = names
            .into_iter()
            .map(|name| match self.ids.get(name) {
                Some(&id) => id,
                None => {
                    let id = u32::try_from(self.names.len()).expect("fewer than 2^32 labels");
                    self.names.push(name.clone());
                    self.ids.insert(name.clone(), id);
                    id
                }
            })
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids.into_boxed_slice()
    }

    /// The label set of `names`.
    pub(super) fn set<'a>(&mut self, names: impl IntoIterator<Item = &'a String>) -> LabelSetIx {
        let ids = self.ids(names);
        if let Some(&ix) = self.set_ids.get(&ids) {
            return ix;
        }
        let ix = LabelSetIx::try_from(self.sets.len()).expect("fewer than 2^32 label sets");
        self.sets.push(ids.clone());
        self.set_ids.insert(ids, ix);
        ix
    }

    /// The label ids of set `ix`.
    pub(super) fn members(&self, ix: LabelSetIx) -> &[u32] {
        &self.sets[ix as usize]
    }

    /// The names of set `ix`, sorted.
    pub(super) fn names(&self, ix: LabelSetIx) -> Vec<String> {
        let mut names: Vec<String> = self
            .members(ix)
            .iter()
            .map(|&id| self.names[id as usize].clone())
            .collect();
        names.sort();
        names
    }
}

/// Whether every id of `want` (sorted) is in `have` (sorted).
pub(super) fn subset(want: &[u32], have: &[u32]) -> bool {
    let mut have = have.iter();
    want.iter().all(|w| have.any(|h| h == w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subset_of_sorted_slices() {
        assert!(subset(&[], &[]));
        assert!(subset(&[], &[1]));
        assert!(subset(&[1, 3], &[0, 1, 2, 3]));
        assert!(!subset(&[1, 4], &[0, 1, 2, 3]));
        assert!(!subset(&[0], &[]));
        assert!(!subset(&[2, 1], &[1, 2]), "want must be sorted");
    }

    #[test]
    fn heads_follow_inserts_and_pops_and_empty_partitions_go() {
        let mut ready = Ready::default();
        let (a, b, c) = (
            (Priority::Required, JobId(5)),
            (Priority::Manual, JobId(9)),
            (Priority::Required, JobId(2)),
        );
        ready.insert(None, 0, a);
        ready.insert(Some(1), 0, c);
        ready.insert(None, 0, b);
        assert_eq!(ready.part(None, 0).map(|p| p.head), Some(b));
        assert_eq!(ready.len(), 3);
        let i = ready
            .parts()
            .iter()
            .position(|p| p.group == Some(1))
            .expect("group 1 has a partition");
        assert_eq!(ready.pop(i), c);
        assert!(
            ready.part(Some(1), 0).is_none(),
            "empty partitions are dropped"
        );
        assert_eq!(ready.parts().len(), 1);
        assert!(ready.remove(None, 0, b));
        assert!(!ready.remove(None, 0, b));
        assert_eq!(ready.part(None, 0).map(|p| p.head), Some(a));
    }

    #[test]
    fn label_sets_are_interned_sorted_and_deduplicated() {
        let mut labels = Labels::default();
        let mac = labels.set([&"mac".to_owned(), &"arm".to_owned()]);
        let again = labels.set([&"arm".to_owned(), &"mac".to_owned(), &"arm".to_owned()]);
        assert_eq!(mac, again);
        assert_eq!(labels.set(std::iter::empty()), 0);
        assert_eq!(labels.names(mac), ["arm", "mac"]);
        let agent = labels.ids([&"linux".to_owned(), &"arm".to_owned(), &"mac".to_owned()]);
        assert!(subset(labels.members(mac), &agent));
    }
}
