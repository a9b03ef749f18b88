//! Temporary directories with a place that matters.

use crate::binary::profile_dir;

/// A temporary directory outside `/tmp`, for files a step must see (or must not see for another
/// reason than `/tmp`): every sandboxed step has its own empty `/tmp`. `/var/tmp` when the
/// machine has it (also inside lanes' own test lane, whose target directory lies under the
/// cache in `/tmp`), else `<target>/tmp`, cargo's `CARGO_TARGET_TMPDIR`.
pub fn outside_tmp() -> tempfile::TempDir {
    match tempfile::tempdir_in("/var/tmp") {
        Ok(dir) => dir,
        Err(_) => {
            let target_tmp = profile_dir()
                .parent()
                .expect("<target>/<profile> has a parent")
                .join("tmp");
            std::fs::create_dir_all(&target_tmp).expect("mkdir <target>/tmp");
            tempfile::tempdir_in(target_tmp).expect("tempdir")
        }
    }
}
