//! Problems found in input files, each pinned to `FILE:LINE:COLUMN`.

use std::fmt;
use std::path::{Path, PathBuf};

/// A position in a file, as shown to users: 1-based line and column (in characters).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Location {
    /// The file, as it was given (not canonicalised).
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, counted in characters.
    pub column: usize,
}

impl Location {
    /// A location in `file` at 1-based `line` and `column`.
    pub fn new(file: impl Into<PathBuf>, line: usize, column: usize) -> Location {
        Location {
            file: file.into(),
            line,
            column,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// One problem in an input file, with an optional hint on how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Diagnostic {
    /// Where the problem is.
    pub location: Location,
    /// What is wrong, without the location.
    pub message: String,
    /// How to fix it, when we can tell.
    pub hint: Option<String>,
}

impl Diagnostic {
    /// A diagnostic without a hint.
    pub fn new(location: Location, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            location,
            message: message.into(),
            hint: None,
        }
    }

    /// Adds a hint (builder style).
    pub fn with_hint(mut self, hint: impl Into<String>) -> Diagnostic {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// Why a manifest (or the resources beside it) could not be used.
#[derive(thiserror::Error, Debug)]
pub enum ManifestError {
    /// A file could not be read.
    #[error("failed to read `{}`", path.display())]
    Io {
        /// The file or directory that could not be read.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The input is wrong; holds every problem found, sorted by position.
    #[error("{}", render_all(.0))]
    Invalid(Vec<Diagnostic>),
}

impl ManifestError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> ManifestError {
        ManifestError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// The diagnostics, if the input was invalid (empty for I/O errors).
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            ManifestError::Invalid(diagnostics) => diagnostics,
            ManifestError::Io { .. } => &[],
        }
    }
}

fn render_all(diagnostics: &[Diagnostic]) -> String {
    let lines: Vec<String> = diagnostics.iter().map(Diagnostic::to_string).collect();
    lines.join("\n")
}

/// Sorts by file, line, column so users read problems top to bottom.
pub(crate) fn sort_diagnostics(diagnostics: &mut Vec<Diagnostic>) {
    diagnostics.sort();
    diagnostics.dedup();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_location_message_and_hint() {
        let d = Diagnostic::new(Location::new("app.yaml", 3, 5), "bad thing")
            .with_hint("do the good thing");
        assert_eq!(
            d.to_string(),
            "app.yaml:3:5: bad thing\n  hint: do the good thing"
        );
        let plain = Diagnostic::new(Location::new("a.yaml", 1, 1), "oops");
        assert_eq!(plain.to_string(), "a.yaml:1:1: oops");
    }

    #[test]
    fn invalid_error_lists_every_diagnostic() {
        let err = ManifestError::Invalid(vec![
            Diagnostic::new(Location::new("a", 1, 1), "one"),
            Diagnostic::new(Location::new("a", 2, 1), "two"),
        ]);
        assert_eq!(err.to_string(), "a:1:1: one\na:2:1: two");
    }
}
