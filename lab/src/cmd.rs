//! Running the lab's helper programs (`ip`, `ethtool`, `sysctl`) with errors
//! that say what was run and what it printed on stderr.
use std::process::{Command, Output};

use anyhow::{Context as _, Result, bail};

/// Runs `program args...`, returning its stdout; a non-zero exit is an error
/// carrying the command line and stderr.
pub(crate) fn run(program: &str, args: &[&str]) -> Result<String> {
    let output = output(program, args)?;
    check(program, args, &output)?;
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Runs `program args...` and returns its output whatever the exit status.
pub(crate) fn output(program: &str, args: &[&str]) -> Result<Output> {
    Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("cannot run `{}`", command_line(program, args)))
}

/// Errors unless `output` is a successful exit of `program args...`.
pub(crate) fn check(program: &str, args: &[&str], output: &Output) -> Result<()> {
    if !output.status.success() {
        bail!(
            "`{}` failed ({}): {}",
            command_line(program, args),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

fn command_line(program: &str, args: &[&str]) -> String {
    std::iter::once(program)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ")
}
