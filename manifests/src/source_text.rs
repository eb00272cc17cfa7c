//! YAML text with positions: turns the parser's character markers into
//! `FILE:LINE:COLUMN` locations and byte spans, also for YAML embedded in a
//! string scalar of another file (inline hook jobs).

use std::ops::Range;
use std::path::{Path, PathBuf};

use saphyr::{LoadableYamlNode, MarkedYaml, Marker};

use crate::diagnostic::{Diagnostic, Location};

/// The deepest nesting of collections a YAML file may have.
pub const MAX_DEPTH: usize = 100;
/// The most nodes a YAML file may hold once its aliases are expanded.
pub const MAX_EXPANDED_NODES: u64 = 1_000_000;
/// The most bytes of scalars a YAML file may hold once its aliases are expanded.
pub const MAX_EXPANDED_BYTES: u64 = 64 << 20;
/// The largest YAML file read (an app manifest or a resource file).
pub const MAX_FILE_BYTES: u64 = 16 << 20;

/// The bytes of the YAML file `path`, at most [`MAX_FILE_BYTES`].
pub(crate) fn read_file(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read as _;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "larger than {} MiB; no manifest or resource file is",
                MAX_FILE_BYTES >> 20
            ),
        ));
    }
    Ok(bytes)
}

/// [`read_file`] as UTF-8 text.
pub(crate) fn read_text(path: &Path) -> std::io::Result<String> {
    String::from_utf8(read_file(path)?)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text"))
}

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

    /// Parses every document; a syntax error becomes a diagnostic at its
    /// position, and so does a text whose aliases would expand beyond
    /// [`MAX_EXPANDED_NODES`] nodes or [`MAX_EXPANDED_BYTES`] bytes of
    /// scalars, or that nests deeper than [`MAX_DEPTH`]: checked on the
    /// parser's events before anything is built.
    pub fn load(&self) -> Result<Vec<MarkedYaml<'_>>, Diagnostic> {
        self.check_bounds()?;
        MarkedYaml::load_from_str(&self.text).map_err(|error| {
            Diagnostic::new(
                self.location(error.marker()),
                format!("YAML syntax error: {}", error.info()),
            )
        })
    }

    /// Walks the parser's events (the parser keeps its own stack, so deep
    /// nesting cannot overflow ours) and adds up what loading would build,
    /// each alias counting as a copy of what its anchor holds.
    fn check_bounds(&self) -> Result<(), Diagnostic> {
        use saphyr_parser::{Event, Parser};
        /// Nodes and scalar bytes.
        #[derive(Clone, Copy, Default)]
        struct Size {
            nodes: u64,
            bytes: u64,
        }
        impl Size {
            fn add(&mut self, other: Size) {
                self.nodes = self.nodes.saturating_add(other.nodes);
                self.bytes = self.bytes.saturating_add(other.bytes);
            }
        }
        let mut anchors: std::collections::HashMap<usize, Size> = Default::default();
        // One entry per open collection: its anchor and its size so far.
        let mut open: Vec<(usize, Size)> = vec![(0, Size::default())];
        for item in Parser::new_from_str(&self.text) {
            // Syntax errors are the loader's to report, with its wording.
            let Ok((event, span)) = item else {
                return Ok(());
            };
            let mut done = None;
            match event {
                Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                    if open.len() > MAX_DEPTH {
                        return Err(Diagnostic::new(
                            self.location(&span.start),
                            format!("the YAML nests deeper than {MAX_DEPTH} levels"),
                        ));
                    }
                    open.push((anchor, Size { nodes: 1, bytes: 0 }));
                }
                Event::SequenceEnd | Event::MappingEnd => {
                    if let Some((anchor, size)) = open.pop() {
                        done = Some((anchor, size));
                    }
                }
                Event::Scalar(value, _, anchor, _) => {
                    done = Some((
                        anchor,
                        Size {
                            nodes: 1,
                            bytes: value.len() as u64,
                        },
                    ));
                }
                Event::Alias(id) => {
                    done = Some((0, anchors.get(&id).copied().unwrap_or_default()));
                }
                _ => {}
            }
            if let Some((anchor, size)) = done {
                if anchor != 0 {
                    anchors.insert(anchor, size);
                }
                if let Some((_, parent)) = open.last_mut() {
                    parent.add(size);
                }
                let total = open.first().map(|(_, s)| *s).unwrap_or_default();
                let all = open.iter().skip(1).fold(total, |mut t, (_, s)| {
                    t.add(*s);
                    t
                });
                if all.nodes > MAX_EXPANDED_NODES || all.bytes > MAX_EXPANDED_BYTES {
                    return Err(Diagnostic::new(
                        self.location(&span.start),
                        format!(
                            "the YAML's aliases expand to more than {MAX_EXPANDED_NODES} nodes or {} MiB of text (an alias bomb?)",
                            MAX_EXPANDED_BYTES >> 20
                        ),
                    ));
                }
            }
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<usize, String> {
        let src = SourceText::new("app.yaml", text);
        src.load().map(|d| d.len()).map_err(|d| d.to_string())
    }

    #[test]
    fn alias_bombs_and_deep_nesting_are_errors_at_their_place() {
        // Billion laughs: ten levels of ten aliases each.
        let mut bomb = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
        for i in 1..10 {
            let p = i - 1;
            bomb.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let e = load(&bomb).unwrap_err();
        assert!(e.starts_with("app.yaml:"), "{e}");
        assert!(e.contains("aliases expand to more than"), "{e}");
        // A large string repeated through aliases.
        let big = "x".repeat(1 << 20);
        let mut text = format!("s: &s {big}\nl: [");
        for _ in 0..100 {
            text.push_str("*s, ");
        }
        text.push_str("*s]\n");
        let e = load(&text).unwrap_err();
        assert!(e.contains("MiB of text"), "{e}");
        // 20,000 nested sequences: an error, not a crash.
        let deep = "- ".repeat(20_000) + "x\n";
        let e = load(&deep).unwrap_err();
        assert!(e.contains("nests deeper than 100 levels"), "{e}");
        assert!(e.starts_with("app.yaml:1:"), "{e}");
        let deep = "[".repeat(20_000) + &"]".repeat(20_000);
        let e = load(&deep).unwrap_err();
        assert!(
            e.contains("nests deeper") || e.contains("recursion limit"),
            "{e}"
        );
        // Ordinary aliases and nesting load.
        assert_eq!(
            load("base: &b {cpu: 1}\nnode: *b\nlist: [[[[1]]]]\n---\nkind: Other\n"),
            Ok(2)
        );
    }
}
