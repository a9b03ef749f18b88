//! Invariants of selection and keys, checked on generated catalogs, paths and fingerprints.

use lanes_core::fileset::{self, mode};
use lanes_core::fingerprint::{Host, StepFingerprint, lane_fingerprints};
use lanes_core::{Catalog, ContentId, FileEntry, Source, Trigger, parse, select};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

fn catalog(lanes: &[Vec<String>]) -> Catalog {
    catalog_with("paths", lanes)
}

/// One lane per pattern list, the list under `key` (`paths` or `inputs`).
fn catalog_with(key: &str, lanes: &[Vec<String>]) -> Catalog {
    let mut text = String::from("version = 1\n");
    for (i, patterns) in lanes.iter().enumerate() {
        let list: Vec<String> = patterns.iter().map(|p| format!("{p:?}")).collect();
        text.push_str(&format!(
            "[lane.l{i}]\n{key} = [{}]\n[[lane.l{i}.step]]\nname = \"s\"\nrun = \"true\"\n",
            list.join(", ")
        ));
    }
    let mut no_files = |_: &str| Err("none".to_owned());
    parse(&Source::new("lanes.toml", text), &mut no_files).expect("generated catalogs are valid")
}

fn selected(catalog: &Catalog, paths: &[String]) -> BTreeSet<String> {
    select(
        catalog,
        Trigger::Changed {
            paths,
            catalog_path: "lanes.toml",
        },
    )
    .selected()
    .map(|l| l.name.clone())
    .collect()
}

fn component() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("a".to_owned()),
        Just("b".to_owned()),
        Just("src".to_owned()),
        Just("x.md".to_owned()),
        Just("y.rs".to_owned()),
    ]
}

fn path() -> impl Strategy<Value = String> {
    prop::collection::vec(component(), 1..5).prop_map(|c| c.join("/"))
}

fn pattern() -> impl Strategy<Value = String> {
    let part = prop_oneof![
        component(),
        Just("*".to_owned()),
        Just("**".to_owned()),
        Just("*.md".to_owned()),
    ];
    (
        any::<bool>(),
        prop::collection::vec(part, 1..4),
        any::<bool>(),
    )
        .prop_map(|(negated, parts, trailing_slash)| {
            let mut p = parts.join("/");
            if trailing_slash {
                p.push('/');
            }
            if negated { format!("!{p}") } else { p }
        })
}

fn escape(path: &str) -> String {
    path.chars()
        .flat_map(|c| {
            if "*?[]{}\\!".contains(c) {
                vec!['\\', c]
            } else {
                vec![c]
            }
        })
        .collect()
}

proptest! {
    #[test]
    fn adding_a_changed_path_never_deselects_a_lane(
        lanes in prop::collection::vec(prop::collection::vec(pattern(), 1..5), 1..6),
        paths in prop::collection::vec(path(), 0..6),
        extra in path(),
    ) {
        let catalog = catalog(&lanes);
        let before = selected(&catalog, &paths);
        let mut more = paths.clone();
        more.push(extra);
        let after = selected(&catalog, &more);
        prop_assert!(before.is_subset(&after), "{before:?} not within {after:?}");
    }

    #[test]
    fn a_path_matched_last_by_an_exclusion_never_selects(
        positives in prop::collection::vec(pattern().prop_map(|p| p.trim_start_matches('!').to_owned()), 0..4),
        negatives in prop::collection::vec(pattern().prop_map(|p| format!("!{}", p.trim_start_matches('!'))), 0..3),
        path in path(),
    ) {
        let mut patterns = positives;
        patterns.push(format!("!{}", escape(&path)));
        patterns.extend(negatives);
        let catalog = catalog(&[patterns]);
        prop_assert!(selected(&catalog, &[path]).is_empty());
    }
}

fn fingerprint() -> impl Strategy<Value = StepFingerprint> {
    let s = || "[a-z]{0,6}";
    (
        (s(), s(), "[0-9a-f]{8}", s(), s()),
        (
            prop::collection::btree_map(s(), s(), 0..3),
            prop::collection::btree_map(s(), prop::option::of(s()), 0..3),
            prop::collection::btree_map(s(), s(), 0..3),
        ),
        (
            any::<bool>(),
            prop::collection::btree_set(s(), 0..3),
            prop::option::of(prop::collection::vec(s(), 0..3)),
            s(),
            prop::option::of("[0-9a-f]{8}"),
            prop::option::of("[0-9a-f]{8}"),
        ),
    )
        .prop_map(
            |(
                (lane, step, inputs, shell, command),
                (env, pass_env, pins),
                (network, cache_mounts, outputs, platform, previous, previous_outputs),
            )| StepFingerprint {
                version: lanes_core::KEY_VERSION,
                lane,
                step,
                inputs,
                shell,
                command,
                env,
                pass_env,
                pins,
                network,
                cache_mounts,
                outputs,
                platform,
                previous,
                previous_outputs,
            },
        )
}

/// Every way to change exactly one field of a fingerprint.
fn one_field_changed(f: &StepFingerprint) -> Vec<(&'static str, StepFingerprint)> {
    let mut out = Vec::new();
    let mut push = |name, change: &dyn Fn(&mut StepFingerprint)| {
        let mut g = f.clone();
        change(&mut g);
        out.push((name, g));
    };
    push("version", &|g| g.version += 1);
    push("lane", &|g| g.lane.push('x'));
    push("step", &|g| g.step.push('x'));
    push("inputs", &|g| g.inputs.push('0'));
    push("shell", &|g| g.shell.push('x'));
    push("command", &|g| g.command.push('x'));
    push("env added", &|g| {
        g.env.insert("NEW_VAR".into(), String::new());
    });
    push("env value", &|g| {
        g.env.insert("NEW_VAR".into(), "1".into());
        g.env.values_mut().for_each(|v| v.push('x'));
    });
    push("pass-env value", &|g| {
        g.pass_env.insert("PASSED".into(), Some("x".into()));
    });
    push("pass-env unset", &|g| {
        g.pass_env.insert("PASSED".into(), None);
    });
    push("pins", &|g| {
        g.pins.insert("rustc".into(), "1.95".into());
    });
    push("network", &|g| g.network = !g.network);
    push("cache mounts", &|g| {
        g.cache_mounts.insert("new-mount".into());
    });
    push("outputs", &|g| {
        g.outputs = match &g.outputs {
            None => Some(Vec::new()),
            Some(_) => None,
        }
    });
    push("platform", &|g| g.platform.push('x'));
    push("previous", &|g| {
        g.previous = match &g.previous {
            None => Some("00".into()),
            Some(p) => Some(format!("{p}0")),
        }
    });
    push("previous outputs", &|g| {
        g.previous_outputs = match &g.previous_outputs {
            None => Some("00".into()),
            Some(p) => Some(format!("{p}0")),
        }
    });
    out
}

fn entry(path: &str, content: u8) -> FileEntry {
    FileEntry {
        path: path.to_owned(),
        mode: mode::FILE,
        id: ContentId::GitBlob(format!("{content:040x}")),
    }
}

proptest! {
    #[test]
    fn a_key_changes_when_any_one_field_changes(f in fingerprint()) {
        let key = f.key();
        for (field, changed) in one_field_changed(&f) {
            prop_assert_ne!(&key, &changed.key(), "changing {} kept the key", field);
        }
    }

    #[test]
    fn a_key_survives_a_round_trip_through_its_stored_form(f in fingerprint()) {
        let stored = serde_json::to_string(&f).expect("serializes");
        let back: StepFingerprint = serde_json::from_str(&stored).expect("parses");
        prop_assert_eq!(back.key(), f.key());
    }

    #[test]
    fn keys_ignore_files_outside_the_fileset_and_see_files_inside(
        files in prop::collection::btree_map(path(), any::<u8>(), 1..20),
        target in any::<prop::sample::Index>(),
        bump in 1u8..,
    ) {
        let text = "version = 1\n[lane.l]\ninputs = [\"src/\", \"**/*.rs\"]\n\
                    [[lane.l.step]]\nname = \"a\"\nrun = \"x\"\n[[lane.l.step]]\nname = \"b\"\nrun = \"y\"\n";
        let mut none = |_: &str| Err("none".to_owned());
        let catalog = parse(&Source::new("lanes.toml", text), &mut none).expect("valid");
        let lane = &catalog.lanes[0];
        let env = |_: &str| None;
        let host = Host { platform: "linux-x86_64", env: &env };
        let keys = |files: &BTreeMap<String, u8>| -> Vec<String> {
            let entries: Vec<FileEntry> = files.iter().map(|(p, c)| entry(p, *c)).collect();
            let digest = &fileset::lane_digests(&catalog, &entries)[0];
            lane_fingerprints(&catalog, lane, digest, host).iter().map(StepFingerprint::key).collect()
        };
        let before = keys(&files);
        let path = target.get(&files.keys().collect::<Vec<_>>()).to_string();
        let mut changed = files.clone();
        changed.insert(path.clone(), files[&path].wrapping_add(bump));
        let after = keys(&changed);
        let inside = path.starts_with("src/") || path.ends_with(".rs");
        if inside {
            prop_assert_ne!(&before[0], &after[0]);
            prop_assert_ne!(&before[1], &after[1], "the chain carries the change on");
        } else {
            prop_assert_eq!(before, after);
        }
    }
}

proptest! {
    /// `lanes run` keys a lane with the one-pass digest and materializes `fileset::select`: the
    /// two must always name the same files, or a key would describe another directory.
    #[test]
    fn the_one_pass_digests_equal_each_lanes_own_selection(
        lanes in prop::collection::vec(prop::collection::vec(pattern(), 1..5), 1..6),
        files in prop::collection::btree_map(path(), any::<u8>(), 0..30),
    ) {
        let catalog = catalog_with("inputs", &lanes);
        let entries: Vec<FileEntry> = files.iter().map(|(p, c)| entry(p, *c)).collect();
        let digests = fileset::lane_digests(&catalog, &entries);
        for (lane, digest) in catalog.lanes.iter().zip(&digests) {
            let own = fileset::select(lane.inputs.as_deref(), &entries);
            prop_assert_eq!(digest, &fileset::digest(own.iter().copied()));
        }
    }
}

mod plan {
    use lanes_core::plan::{Plan, PlanLane};
    use proptest::prelude::*;

    /// Lanes with needs only on earlier lanes (acyclic), each in one of two groups or none.
    fn lanes() -> impl Strategy<Value = Vec<PlanLane>> {
        prop::collection::vec(
            (
                prop::collection::vec(any::<prop::sample::Index>(), 0..3),
                0..3usize,
            ),
            1..12,
        )
        .prop_map(|specs| {
            specs
                .into_iter()
                .enumerate()
                .map(|(i, (needs, group))| PlanLane {
                    needs: if i == 0 {
                        Vec::new()
                    } else {
                        let mut n: Vec<usize> = needs.iter().map(|x| x.index(i)).collect();
                        n.sort();
                        n.dedup();
                        n
                    },
                    group: (group < 2).then_some(group),
                })
                .collect()
        })
    }

    proptest! {
        /// Whatever finishes when: never more than `jobs` or a group's limit at once, a lane
        /// starts only after all its needs passed, and every lane ends up run or skipped.
        #[test]
        fn limits_and_needs_always_hold(
            lanes in lanes(),
            limits in (1..3u32, 1..3u32),
            jobs in 1..4usize,
            outcomes in prop::collection::vec(any::<bool>(), 12),
            picks in prop::collection::vec(any::<prop::sample::Index>(), 24),
        ) {
            let n = lanes.len();
            let limits = vec![limits.0, limits.1];
            let mut plan = Plan::new(lanes.clone(), limits.clone(), jobs);
            let mut running: Vec<usize> = Vec::new();
            let mut passed = vec![false; n];
            let mut done = vec![false; n];
            let mut picks = picks.into_iter().cycle();
            loop {
                while let Some(lane) = plan.start() {
                    for &need in &lanes[lane].needs {
                        prop_assert!(passed[need], "lane {lane} started before need {need} passed");
                    }
                    running.push(lane);
                    prop_assert!(running.len() <= jobs);
                    for (g, &limit) in limits.iter().enumerate() {
                        let in_group = running.iter().filter(|&&l| lanes[l].group == Some(g)).count();
                        prop_assert!(in_group <= limit as usize, "group {g} over its limit");
                    }
                }
                if running.is_empty() {
                    break;
                }
                let at = picks.next().expect("cycle").index(running.len());
                let lane = running.swap_remove(at);
                let ok = outcomes[lane];
                passed[lane] = ok;
                done[lane] = true;
                for skip in plan.finish(lane, ok) {
                    prop_assert!(!done[skip.lane]);
                    done[skip.lane] = true;
                }
            }
            prop_assert!(plan.is_done());
            prop_assert!(done.iter().all(|&d| d), "every lane ran or was skipped");
        }
    }
}
