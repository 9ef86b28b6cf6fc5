//! The working directory of the demos (`pipecr demo` and `pipecr demo --pipes-only`):
//! one the user names, kept afterwards, or a temporary one removed at the end. Shared by
//! both demos so neither imports the other.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// Where a demo keeps its files: `dir` (created, and kept afterwards) or a new temporary
/// directory, removed when the returned guard is dropped.
pub fn work_dir(dir: Option<&Path>) -> anyhow::Result<(PathBuf, Option<tempfile::TempDir>)> {
    match dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            Ok((dir.to_path_buf(), None))
        }
        None => {
            let tmp = tempfile::Builder::new()
                .prefix("pipecr-demo-")
                .tempdir()
                .context("cannot create a temporary directory")?;
            Ok((tmp.path().to_path_buf(), Some(tmp)))
        }
    }
}
