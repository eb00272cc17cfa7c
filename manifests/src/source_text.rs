//! YAML text with positions: turns the parser's character markers into
//! `FILE:LINE:COLUMN` locations and byte spans, also for YAML embedded in a
//! string scalar of another file (inline hook jobs).

use std::ops::Range;
use std::path::{Path, PathBuf};

use saphyr::{LoadableYamlNode, MarkedYaml, Marker};

use crate::diagnostic::{Diagnostic, Location};

/// Where a scalar came from: its location and exact byte range in the file text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    /// Where the scalar starts (for quoted scalars, the opening quote).
    pub location: Location,
    /// Byte range of the scalar in its file's text, including quotes if quoted.
    pub span: Range<usize>,
}

/// The text of one YAML file, indexed so parser markers map to bytes and lines.
#[derive(Debug, Clone)]
pub(crate) struct SourceText {
    pub path: PathBuf,
    pub text: String,
    /// Byte offset of every character, plus one past the end.
    char_bytes: Vec<usize>,
    /// Character index at which each line starts (index 0 is line 1).
    line_starts: Vec<usize>,
    /// Set when this text is the value of a string scalar in another file.
    embedding: Option<Box<Embedding>>,
}

/// How the lines of an embedded text sit inside the outer file.
#[derive(Debug, Clone)]
struct Embedding {
    outer: SourceText,
    /// 1-based outer line of embedded line 1.
    first_line: usize,
    /// Embedded line holding the scalar's first character (leading empty lines come first).
    anchor_line: usize,
    /// Outer character index of the scalar's first character.
    anchor_char: usize,
    /// Indentation (characters) of the other lines of a block scalar.
    indent: usize,
}

impl SourceText {
    pub fn new(path: impl Into<PathBuf>, text: impl Into<String>) -> SourceText {
        let text = text.into();
        let mut char_bytes = Vec::with_capacity(text.len() + 1);
        let mut line_starts = vec![0];
        for (index, (byte, c)) in text.char_indices().enumerate() {
            char_bytes.push(byte);
            if c == '\n' {
                line_starts.push(index + 1);
            }
        }
        char_bytes.push(text.len());
        SourceText {
            path: path.into(),
            text,
            char_bytes,
            line_starts,
            embedding: None,
        }
    }

    /// The text of string scalar `node` (whose value is `value`) of this file,
    /// as a source of its own whose positions map back into this file.
    pub fn embedded(&self, node: &MarkedYaml, value: &str) -> SourceText {
        let start = node.span.start;
        let leading_newlines = value.chars().take_while(|&c| c == '\n').count();
        let quote = matches!(
            self.text[self.byte(start.index())..].chars().next(),
            Some('"' | '\'')
        );
        let mut inner = SourceText::new(self.path.clone(), value);
        inner.embedding = Some(Box::new(Embedding {
            outer: self.clone(),
            first_line: start.line().saturating_sub(leading_newlines).max(1),
            anchor_line: leading_newlines + 1,
            anchor_char: start.index() + usize::from(quote),
            indent: start.col(),
        }));
        inner
    }

    /// Parses every document; a syntax error becomes a diagnostic at its position.
    pub fn load(&self) -> Result<Vec<MarkedYaml<'_>>, Diagnostic> {
        MarkedYaml::load_from_str(&self.text).map_err(|error| {
            Diagnostic::new(
                self.location(error.marker()),
                format!("YAML syntax error: {}", error.info()),
            )
        })
    }

    fn byte(&self, char_index: usize) -> usize {
        self.char_bytes[char_index.min(self.char_bytes.len() - 1)]
    }

    /// The user-facing location of `marker`, in the outermost file.
    pub fn location(&self, marker: &Marker) -> Location {
        let line = marker.line().max(1);
        let column = marker.col() + 1;
        match &self.embedding {
            None => Location::new(self.path.clone(), line, column),
            Some(e) if line == e.anchor_line => {
                let outer = e.outer.marker_at(e.anchor_char + marker.col());
                e.outer.location(&outer)
            }
            Some(e) => {
                let outer_line = e.first_line + line - 1;
                let outer = e.outer.location(&Marker::new(0, outer_line, 0));
                Location::new(outer.file, outer.line, column + e.indent)
            }
        }
    }

    fn marker_at(&self, char_index: usize) -> Marker {
        let line = self.line_starts.partition_point(|&s| s <= char_index);
        Marker::new(char_index, line, char_index - self.line_starts[line - 1])
    }

    /// Byte range of `node` in this text.
    pub fn span(&self, node: &MarkedYaml) -> Range<usize> {
        self.byte(node.span.start.index())..self.byte(node.span.end.index())
    }

    /// The source text of `node` exactly as written (quotes and tags included).
    pub fn raw(&self, node: &MarkedYaml) -> &str {
        &self.text[self.span(node)]
    }

    pub fn node_location(&self, node: &MarkedYaml) -> Location {
        self.location(&node.span.start)
    }

    /// The origin of scalar `node` in the outermost file, or `None` when it sits
    /// in an embedded text whose lines do not map one-to-one (folded or escaped).
    pub fn origin(&self, node: &MarkedYaml) -> Option<Origin> {
        let span = self.span(node);
        let Some(e) = &self.embedding else {
            return Some(Origin {
                location: self.node_location(node),
                span,
            });
        };
        let start = node.span.start;
        let outer_start_char = if start.line() == e.anchor_line {
            e.anchor_char + start.col()
        } else {
            let line = e.first_line + start.line() - 1;
            *e.outer.line_starts.get(line - 1)? + e.indent + start.col()
        };
        let outer_start = e.outer.byte(outer_start_char);
        let outer_span = outer_start..outer_start + span.len();
        // Only trust the mapping when the outer file holds the very same bytes.
        if e.outer.text.get(outer_span.clone())? != &self.text[span] {
            return None;
        }
        Some(Origin {
            location: e.outer.location(&e.outer.marker_at(outer_start_char)),
            span: outer_span,
        })
    }

    /// Path of the file as given, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
