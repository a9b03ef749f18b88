//! Lane keys that are scheduling settings reach no step key: only the inputs docs/cache-key.md
//! lists do. A setting that leaked into keys would turn every change of it into a cache miss of
//! the whole lane.

use lanes_core::fingerprint::{Host, StepFingerprint, lane_fingerprints};
use lanes_core::{Catalog, Source, parse};

/// A lane of two steps; `extra` is inserted into `[lane.test]`.
fn catalog(extra: &str) -> Catalog {
    let text = format!(
        "version = 1\n[lane.test]\ninputs = [\"src/**\"]\n{extra}\n\
         [[lane.test.step]]\nname = \"build\"\nrun = \"make\"\n\
         [[lane.test.step]]\nname = \"test\"\nrun = \"make test\"\n"
    );
    let mut none = |path: &str| Err(format!("no file `{path}` in this test"));
    match parse(&Source::new("lanes.toml", text), &mut none) {
        Ok(catalog) => catalog,
        Err(e) => panic!("expected a valid catalog, got {:#?}", e.diagnostics),
    }
}

fn step_keys(catalog: &Catalog) -> Vec<String> {
    let env = |_: &str| None;
    let host = Host {
        platform: "linux-x86_64",
        env: &env,
    };
    let inputs = "inputs-digest".to_owned();
    lane_fingerprints(catalog, &catalog.lanes[0], &inputs, host)
        .iter()
        .map(StepFingerprint::key)
        .collect()
}

#[test]
fn cancel_superseded_changes_no_step_key() {
    let default = catalog("");
    let on = catalog("cancel-superseded = true");
    let off = catalog("cancel-superseded = false");
    assert!(default.lanes[0].cancel_superseded && on.lanes[0].cancel_superseded);
    assert!(
        !off.lanes[0].cancel_superseded,
        "the setting must reach the model, or this test shows nothing"
    );

    let keys = step_keys(&default);
    assert_eq!(keys.len(), 2);
    assert_eq!(step_keys(&on), keys);
    assert_eq!(step_keys(&off), keys);

    // The same comparison does see a keyed lane setting, so equal keys above mean something.
    assert_ne!(step_keys(&catalog("cache-mounts = [\"target\"]")), keys);
}
