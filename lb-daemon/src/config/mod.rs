//! Configuration: the TOML file (DESIGN.md section 4, `docs/configuration.md`),
//! parsed and validated into typed structures before the daemon uses them.
//!
//! - [`raw`]: serde structures mirroring the file, with spans; unknown
//!   fields are errors.
//! - `validate`: defaults, ranges and cross-field rules; every error is
//!   collected, not just the first.
//! - [`model`]: the validated [`Config`] the daemon runs from.
//! - [`mod@diff`]: what changed between two configs (SIGHUP reload).
//! - [`error`]: errors and warnings located by file, line, column and
//!   field path.
//!
//! TOML syntax errors and values of the wrong type stop parsing at the
//! first one (serde cannot go on); everything after that is reported in
//! full.
pub mod diff;
pub mod error;
pub mod model;
pub mod raw;
mod validate;

use std::path::Path;

pub use diff::{
    BackendChange, ConfigDiff, DataplaneChange, DataplaneSetting, VirtualServerDiff, diff,
};
pub use error::{ConfigError, ConfigErrors, ConfigWarning, Position};
pub use model::*;
pub use validate::Checked;

use raw::RawConfig;
use serde::Deserialize as _;

/// Reads and validates the file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    load_checked(path).map(|checked| checked.config)
}

/// Validates `text`; `file_name` is what errors name the file by.
pub fn parse(text: &str, file_name: &str) -> Result<Config, ConfigErrors> {
    parse_checked(text, file_name).map(|checked| checked.config)
}

/// Like [`load`], with the warnings (valid but suspicious settings).
pub fn load_checked(path: &Path) -> Result<Checked, ConfigErrors> {
    let file_name = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => parse_checked(&text, &file_name),
        Err(source) => Err(ConfigErrors::one(ConfigError::Read {
            file: file_name,
            source,
        })),
    }
}

/// Like [`parse`], with the warnings (valid but suspicious settings).
pub fn parse_checked(text: &str, file_name: &str) -> Result<Checked, ConfigErrors> {
    let raw = deserialize(text, file_name).map_err(ConfigErrors::one)?;
    validate::validate(&raw, file_name, text)
}

/// TOML to [`RawConfig`]: the first syntax, type or unknown-field error.
fn deserialize(text: &str, file: &str) -> Result<RawConfig, ConfigError> {
    let position = |span: Option<std::ops::Range<usize>>| {
        span.map_or(Position { line: 1, column: 1 }, |span| {
            Position::of_span(text, &span)
        })
    };
    let parse = || {
        toml::Deserializer::parse(text).map_err(|error| ConfigError::Syntax {
            file: file.to_owned(),
            position: position(error.span()),
            message: error.message().trim_end().to_owned(),
        })
    };
    // Tracking the path of every field costs a tenth of the parse of a
    // large file, and only an error needs it: a file that does not
    // deserialize is deserialized again, with the tracking.
    if let Ok(raw) = RawConfig::deserialize(parse()?) {
        return Ok(raw);
    }
    serde_path_to_error::deserialize(parse()?).map_err(|error| {
        let field = field_path(error.path());
        let error = error.into_inner();
        ConfigError::Invalid {
            file: file.to_owned(),
            position: position(error.span()),
            field,
            message: readable(error.message()),
        }
    })
}

/// `virtual_server[1].backend[0].weight`, without the segments that
/// `toml::Spanned` adds.
fn field_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if key.starts_with("$__serde_spanned") {
                    continue;
                }
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Unknown => {}
        }
    }
    if out.is_empty() {
        out.push_str("(top level)");
    }
    out
}

/// serde's type names in the words of the file.
fn readable(message: &str) -> String {
    let mut out = message
        .trim_end()
        .replace("expected i64", "expected an integer")
        .replace("expected a sequence", "expected an array")
        .replace("expected a boolean", "expected true or false");
    // "expected struct RawBackend" -> "expected a table"
    while let Some(start) = out.find("struct Raw") {
        let end = out[start + "struct ".len()..]
            .find(|c: char| !c.is_ascii_alphanumeric())
            .map_or(out.len(), |n| start + "struct ".len() + n);
        out.replace_range(start..end, "a table");
    }
    out
}

/// The config the unit tests of several modules start from.
#[cfg(test)]
pub(crate) mod test_configs {
    /// A valid config: the data plane on eth0 and the virtual server "web",
    /// 192.0.2.10:80 TCP, with one backend, 10.0.0.11.
    pub const ONE_BACKEND: &str = r#"
[dataplane]
interfaces = ["eth0"]

[[virtual_server]]
name = "web"
address = "192.0.2.10"
port = 80

[[virtual_server.backend]]
address = "10.0.0.11"
"#;

    /// [`ONE_BACKEND`] and then `more`: further backends or a health
    /// check of "web", further virtual servers.
    pub fn one_backend_and(more: &str) -> String {
        format!("{ONE_BACKEND}{more}")
    }
}
