//! Where and how the benchmarks write their results: `bench/results` by
//! default, each file through a temporary one, so that a run that fails
//! leaves the last complete results in place.
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

/// `bench/results` of this checkout.
pub fn default_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/results"))
}

/// The arguments of a benchmark binary: `[--quick] [--out DIR]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunArgs {
    /// Fewer points, shorter measurements.
    pub quick: bool,
    /// Where the results go.
    pub out: PathBuf,
}

impl RunArgs {
    /// Parses `args` (without the program name) of benchmark `program`.
    pub fn parse(program: &str, args: impl IntoIterator<Item = String>) -> anyhow::Result<Self> {
        let mut parsed = Self {
            quick: false,
            out: default_dir(),
        };
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--quick" => parsed.quick = true,
                "--out" => parsed.out = args.next().context("--out needs a directory")?.into(),
                other => {
                    bail!("unknown argument {other:?}; usage: {program} [--quick] [--out DIR]")
                }
            }
        }
        Ok(parsed)
    }

    /// [`Self::parse`] of this process's arguments.
    pub fn from_env(program: &str) -> anyhow::Result<Self> {
        Self::parse(program, std::env::args().skip(1))
    }
}

/// Writes `NAME.json` (pretty, with a final newline) and `NAME.md` into
/// `dir`.
pub fn write_pair(
    dir: &Path,
    name: &str,
    json: &serde_json::Value,
    markdown: &str,
) -> anyhow::Result<()> {
    write(
        &dir.join(format!("{name}.json")),
        &(serde_json::to_string_pretty(json)? + "\n"),
    )?;
    write(&dir.join(format!("{name}.md")), markdown)
}

/// Writes `contents` to `path` through a temporary file next to it,
/// creating the directory if needed.
pub fn write(path: &Path, contents: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, contents).with_context(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("rename to {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> anyhow::Result<RunArgs> {
        RunArgs::parse("bench", list.iter().map(|s| s.to_string()))
    }

    #[test]
    fn parses_quick_and_out() {
        assert_eq!(
            args(&[]).unwrap(),
            RunArgs {
                quick: false,
                out: default_dir()
            }
        );
        let parsed = args(&["--out", "/tmp/x", "--quick"]).unwrap();
        assert!(parsed.quick);
        assert_eq!(parsed.out, PathBuf::from("/tmp/x"));
    }

    #[test]
    fn rejects_what_it_does_not_know() {
        let error = args(&["--fast"]).unwrap_err().to_string();
        assert!(
            error.contains("usage: bench [--quick] [--out DIR]"),
            "{error}"
        );
        assert!(args(&["--out"]).is_err());
    }

    #[test]
    fn writes_through_a_temporary_file() {
        let dir = std::env::temp_dir().join(format!("lb-bench-results-{}", std::process::id()));
        write_pair(&dir, "x", &serde_json::json!({"a": 1}), "# x\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("x.json")).unwrap(),
            "{\n  \"a\": 1\n}\n"
        );
        assert_eq!(std::fs::read_to_string(dir.join("x.md")).unwrap(), "# x\n");
        assert!(!dir.join("x.md.tmp").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
