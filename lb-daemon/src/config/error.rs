//! Errors and warnings of the configuration, each located by file, line,
//! column and field path (`virtual_server[1].backend[0].weight`).
use std::{fmt, io, ops::Range};

/// A 1-based line and column (columns count characters, not bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

impl Position {
    /// The position of byte `offset` in `text` (clamped to the text's end
    /// and to a character boundary, so any offset is safe).
    pub fn of(text: &str, offset: usize) -> Self {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &text[..offset];
        let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
        Self {
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        }
    }

    /// The position where `span` starts.
    pub fn of_span(text: &str, span: &Range<usize>) -> Self {
        Self::of(text, span.start)
    }
}

/// Where each line of a text starts, to turn many offsets into positions
/// without scanning the text from its start each time.
pub struct Lines<'a> {
    text: &'a str,
    /// Byte offset of the start of each line.
    starts: Vec<usize>,
}

impl<'a> Lines<'a> {
    pub fn new(text: &'a str) -> Self {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Self { text, starts }
    }

    /// The position of byte `offset`, as [`Position::of`] computes it.
    pub fn position(&self, offset: usize) -> Position {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.starts.partition_point(|start| *start <= offset);
        let line_start = self.starts[line - 1];
        Position {
            line,
            column: self.text[line_start..offset].chars().count() + 1,
        }
    }
}

/// One error in a configuration file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read the file: {source}")]
    Read {
        file: String,
        #[source]
        source: io::Error,
    },
    /// The text is not valid TOML. Parsing stops at the first such error.
    #[error("{file}:{position}: syntax error: {message}")]
    Syntax {
        file: String,
        position: Position,
        message: String,
    },
    /// A field is unknown, missing, of the wrong type or has an invalid
    /// value, or fields contradict each other.
    #[error("{file}:{position}: {field}: {message}")]
    Invalid {
        file: String,
        position: Position,
        /// Dotted path of the field, e.g. `virtual_server[1].backend[0].weight`.
        field: String,
        message: String,
    },
}

impl ConfigError {
    /// Where in the file the error is (none for [`ConfigError::Read`]).
    pub fn position(&self) -> Option<Position> {
        match self {
            Self::Read { .. } => None,
            Self::Syntax { position, .. } | Self::Invalid { position, .. } => Some(*position),
        }
    }

    /// The field path of an [`ConfigError::Invalid`] error.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::Invalid { field, .. } => Some(field),
            Self::Read { .. } | Self::Syntax { .. } => None,
        }
    }
}

/// Every error found in a configuration file, in file order; never empty.
/// Displays as one `file:line:column: field: message` line per error.
#[derive(Debug)]
pub struct ConfigErrors {
    errors: Vec<ConfigError>,
}

impl ConfigErrors {
    /// Sorts `errors` by position; `None` if there are none.
    pub(crate) fn new(mut errors: Vec<ConfigError>) -> Option<Self> {
        if errors.is_empty() {
            return None;
        }
        errors.sort_by_key(ConfigError::position);
        Some(Self { errors })
    }

    pub(crate) fn one(error: ConfigError) -> Self {
        Self {
            errors: vec![error],
        }
    }

    /// The errors, in file order.
    pub fn errors(&self) -> &[ConfigError] {
        &self.errors
    }

    /// Number of errors (at least 1).
    pub fn len(&self) -> usize {
        self.errors.len()
    }

    /// Always false; present for symmetry with [`ConfigErrors::len`].
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl IntoIterator for ConfigErrors {
    type Item = ConfigError;
    type IntoIter = std::vec::IntoIter<ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.errors.into_iter()
    }
}

/// Something valid but probably unintended; it does not fail `check`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigWarning {
    pub file: String,
    pub position: Position,
    pub field: String,
    pub message: String,
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: warning: {}: {}",
            self.file, self.position, self.field, self.message
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_and_count_characters() {
        let text = "a = 1\nbé = 2\n";
        assert_eq!(Position::of(text, 0), Position { line: 1, column: 1 });
        assert_eq!(Position::of(text, 6), Position { line: 2, column: 1 });
        // 'é' is two bytes: the '=' after "bé " is the fourth character.
        assert_eq!(Position::of(text, 10), Position { line: 2, column: 4 });
    }

    #[test]
    fn positions_of_out_of_range_offsets_do_not_panic() {
        let text = "é";
        assert_eq!(Position::of(text, 1), Position { line: 1, column: 1 });
        assert_eq!(Position::of(text, 99), Position { line: 1, column: 2 });
    }

    #[test]
    fn errors_display_one_per_line_in_file_order() {
        let invalid = |line, field: &str| ConfigError::Invalid {
            file: "lb.toml".into(),
            position: Position { line, column: 3 },
            field: field.into(),
            message: "bad".into(),
        };
        let errors = ConfigErrors::new(vec![invalid(9, "b"), invalid(2, "a")]).unwrap();
        assert_eq!(
            errors.to_string(),
            "lb.toml:2:3: a: bad\nlb.toml:9:3: b: bad"
        );
        assert!(ConfigErrors::new(Vec::new()).is_none());
    }
}

#[cfg(test)]
mod lines_tests {
    use super::*;

    #[test]
    fn lines_agree_with_scanning_at_every_offset() {
        let text = "a = 1\n\nname = \"é☃\"\r\nlast";
        let lines = Lines::new(text);
        for offset in 0..=text.len() + 2 {
            assert_eq!(
                lines.position(offset),
                Position::of(text, offset),
                "offset {offset}"
            );
        }
    }
}
