//! A directory for the configs and logs of one run, removed on drop.
use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result};

/// `$TMPDIR/lb-{tag}-{pid}`, created empty and removed with everything in
/// it when dropped (also when a test fails).
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates the directory; one left behind by an earlier process with
    /// the same PID is emptied first.
    pub fn new(tag: &str) -> Result<TempDir> {
        let path = std::env::temp_dir().join(format!("lb-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(TempDir { path })
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_created_empty_and_removed_on_drop() {
        let dir = TempDir::new("tdir").unwrap();
        let path = dir.path().to_owned();
        fs::write(path.join("x.log"), "x").unwrap();
        drop(dir);
        assert!(!path.exists());
        let again = TempDir::new("tdir").unwrap();
        assert_eq!(fs::read_dir(again.path()).unwrap().count(), 0);
    }
}
