//! Strict, diagnostic-collecting reading of a YAML tree against a schema:
//! unknown fields (with "did you mean" hints), missing required fields and
//! wrong types are reported at their node, and reading carries on.

use std::collections::BTreeMap;

use saphyr::{MarkedYaml, Scalar, YamlData};

use crate::diagnostic::{Diagnostic, Location};
use crate::source_text::SourceText;

pub(crate) type Node<'y> = MarkedYaml<'y>;

/// Reads nodes of one file, collecting every problem instead of stopping.
pub(crate) struct Checker<'s> {
    pub src: &'s SourceText,
    pub diagnostics: Vec<Diagnostic>,
}

/// A mapping whose keys were checked against the known field names.
pub(crate) struct Fields<'a, 'y> {
    pub node: &'a Node<'y>,
    pub path: String,
    entries: Vec<(&'a Node<'y>, &'a str, &'a Node<'y>)>,
}

impl<'a, 'y> Fields<'a, 'y> {
    /// The value of field `name`, treating an explicit null as absent.
    pub fn get(&self, name: &str) -> Option<&'a Node<'y>> {
        self.entries
            .iter()
            .find(|(_, key, value)| *key == name && !is_null(value))
            .map(|(_, _, value)| *value)
    }

    /// The dotted path of field `name`, for messages.
    pub fn child(&self, name: &str) -> String {
        if self.path.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.path)
        }
    }

    /// Key/value pairs in document order.
    pub fn entries(&self) -> impl Iterator<Item = (&'a Node<'y>, &'a str, &'a Node<'y>)> + '_ {
        self.entries.iter().copied()
    }
}

pub(crate) fn is_null(node: &Node) -> bool {
    matches!(node.data, YamlData::Value(Scalar::Null))
}

/// How a node's type is named in "expected X, found Y" messages.
pub(crate) fn describe(node: &Node) -> &'static str {
    match &node.data {
        YamlData::Value(Scalar::Null) => "an empty value",
        YamlData::Value(Scalar::Boolean(_)) => "a boolean",
        YamlData::Value(Scalar::Integer(_)) => "an integer",
        YamlData::Value(Scalar::FloatingPoint(_)) => "a number",
        YamlData::Value(Scalar::String(_)) | YamlData::Representation(..) => "a string",
        YamlData::Sequence(_) => "a list",
        YamlData::Mapping(_) => "a mapping",
        YamlData::Tagged(_, inner) => describe(inner),
        YamlData::Alias(_) => "an alias",
        YamlData::BadValue => "an invalid value",
    }
}

fn shown(path: &str) -> String {
    if path.is_empty() {
        "the top level".to_string()
    } else {
        format!("`{path}`")
    }
}

impl<'s> Checker<'s> {
    pub fn new(src: &'s SourceText) -> Checker<'s> {
        Checker {
            src,
            diagnostics: Vec::new(),
        }
    }

    pub fn at(&self, node: &Node) -> Location {
        self.src.node_location(node)
    }

    /// Records a problem at `node`; returns it so a hint can be added.
    pub fn error(&mut self, node: &Node, message: impl Into<String>) -> &mut Diagnostic {
        let diagnostic = Diagnostic::new(self.at(node), message);
        self.diagnostics.push(diagnostic);
        self.diagnostics.last_mut().expect("just pushed")
    }

    pub fn expected(&mut self, node: &Node, path: &str, what: &str) {
        let found = describe(node);
        self.error(
            node,
            format!("{} must be {what}, found {found}", shown(path)),
        );
    }

    /// Checks that `node` is a mapping whose keys are all in `known`.
    pub fn mapping<'a, 'y>(
        &mut self,
        node: &'a Node<'y>,
        path: &str,
        known: &[&str],
    ) -> Option<Fields<'a, 'y>> {
        let fields = self.any_mapping(node, path)?;
        for (key, name, _) in fields.entries() {
            if known.contains(&name) {
                continue;
            }
            let message = format!("unknown field `{name}` in {}", shown(path));
            let hint = suggest(name, known).map(|near| format!("did you mean `{near}`?"));
            let diagnostic = self.error(key, message);
            diagnostic.hint = hint;
        }
        Some(fields)
    }

    /// Checks that `node` is a mapping with string keys; any key is allowed.
    pub fn any_mapping<'a, 'y>(
        &mut self,
        node: &'a Node<'y>,
        path: &str,
    ) -> Option<Fields<'a, 'y>> {
        let YamlData::Mapping(map) = &node.data else {
            self.expected(node, path, "a mapping");
            return None;
        };
        let mut entries = Vec::new();
        for (key, value) in map {
            match key.data.as_str() {
                Some(name) => entries.push((key, name, value)),
                None => {
                    self.error(key, format!("keys in {} must be strings", shown(path)));
                }
            }
        }
        Some(Fields {
            node,
            path: path.to_string(),
            entries,
        })
    }

    /// The value of required field `name`, reporting its absence at the mapping.
    pub fn required<'a, 'y>(
        &mut self,
        fields: &Fields<'a, 'y>,
        name: &str,
    ) -> Option<&'a Node<'y>> {
        let value = fields.get(name);
        if value.is_none() {
            let message = format!("missing required field `{name}` in {}", shown(&fields.path));
            self.error(fields.node, message);
        }
        value
    }

    /// A string scalar; numbers are accepted as written (`ranges: [8080]`).
    pub fn string(&mut self, node: &Node, path: &str) -> Option<String> {
        match &node.data {
            YamlData::Value(Scalar::String(s)) => Some(s.to_string()),
            YamlData::Value(Scalar::Integer(_) | Scalar::FloatingPoint(_)) => {
                Some(self.src.raw(node).to_string())
            }
            YamlData::Tagged(_, inner) => self.string(inner, path),
            _ => {
                self.expected(node, path, "a string");
                None
            }
        }
    }

    pub fn bool(&mut self, node: &Node, path: &str) -> Option<bool> {
        match node.data {
            YamlData::Value(Scalar::Boolean(b)) => Some(b),
            _ => {
                self.expected(node, path, "`true` or `false`");
                None
            }
        }
    }

    pub fn integer(&mut self, node: &Node, path: &str) -> Option<i64> {
        match node.data {
            YamlData::Value(Scalar::Integer(i)) => Some(i),
            _ => {
                self.expected(node, path, "an integer");
                None
            }
        }
    }

    /// The items of a list, each with its path (`path[i]`).
    pub fn list<'a, 'y>(&mut self, node: &'a Node<'y>, path: &str) -> Vec<(String, &'a Node<'y>)> {
        match &node.data {
            YamlData::Sequence(items) => items
                .iter()
                .enumerate()
                .map(|(i, item)| (format!("{path}[{i}]"), item))
                .collect(),
            _ => {
                self.expected(node, path, "a list");
                Vec::new()
            }
        }
    }

    pub fn string_list(&mut self, node: &Node, path: &str) -> Vec<String> {
        let items = self.list(node, path);
        items
            .into_iter()
            .filter_map(|(item_path, item)| self.string(item, &item_path))
            .collect()
    }

    pub fn string_map(&mut self, node: &Node, path: &str) -> BTreeMap<String, String> {
        let Some(fields) = self.any_mapping(node, path) else {
            return BTreeMap::new();
        };
        let mut map = BTreeMap::new();
        for (_, key, value) in fields.entries() {
            let value_path = fields.child(key);
            if let Some(value) = self.string(value, &value_path) {
                map.insert(key.to_string(), value);
            }
        }
        map
    }

    // Shorthands for optional fields of a checked mapping.

    pub fn opt_string(&mut self, fields: &Fields, name: &str) -> Option<String> {
        let node = fields.get(name)?;
        self.string(node, &fields.child(name))
    }

    pub fn opt_bool(&mut self, fields: &Fields, name: &str) -> Option<bool> {
        let node = fields.get(name)?;
        self.bool(node, &fields.child(name))
    }

    pub fn opt_string_list(&mut self, fields: &Fields, name: &str) -> Vec<String> {
        match fields.get(name) {
            Some(node) => self.string_list(node, &fields.child(name)),
            None => Vec::new(),
        }
    }

    pub fn req_string(&mut self, fields: &Fields, name: &str) -> Option<String> {
        let node = self.required(fields, name)?;
        self.string(node, &fields.child(name))
    }
}

/// The known name closest to `name`, if it is close enough to be a typo.
pub(crate) fn suggest<'k>(name: &str, known: &[&'k str]) -> Option<&'k str> {
    let lower = name.to_lowercase();
    known
        .iter()
        .map(|k| (edit_distance(&lower, &k.to_lowercase()), *k))
        .filter(|(distance, k)| *distance <= (k.len() / 3).max(2) && *distance < k.len())
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != *cb);
            current.push(substitute.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        let known = ["name", "resourceVersion", "description"];
        assert_eq!(suggest("resourceVersio", &known), Some("resourceVersion"));
        assert_eq!(suggest("resourceversion", &known), Some("resourceVersion"));
        assert_eq!(suggest("nmae", &known), Some("name"));
        assert_eq!(suggest("colour", &known), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
