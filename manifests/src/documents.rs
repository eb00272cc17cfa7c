//! Plain YAML documents with their positions, for configuration files other
//! than the app manifest (the installer's `--config` resources).

use std::path::Path;

use crate::diagnostic::{Location, ManifestError};
use crate::source_text::SourceText;

/// One YAML document of a file, as JSON, with where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// Where the document starts.
    pub location: Location,
    /// Its content.
    pub value: serde_json::Value,
}

/// Reads every document of a YAML (or JSON) file; a syntax error is reported
/// at its `FILE:LINE:COLUMN`.
pub fn load_documents(path: &Path) -> Result<Vec<Document>, ManifestError> {
    let text = crate::source_text::read_text(path).map_err(|source| ManifestError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let src = SourceText::new(path, text);
    let docs = src.load().map_err(|d| ManifestError::Invalid(vec![d]))?;
    Ok(docs
        .iter()
        .filter(|d| !crate::schema_check::is_null(d))
        .map(|d| Document {
            location: src.node_location(d),
            value: crate::manifest::to_json(d),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_come_back_as_json_with_their_lines() {
        let dir = std::env::temp_dir().join(format!("tele-docs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("c.yaml");
        std::fs::write(
            &p,
            "kind: smtp\nspec:\n  port: 587\n---\nkind: alerttarget\n",
        )
        .unwrap();
        let docs = load_documents(&p).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].value["spec"]["port"], 587);
        assert_eq!(docs[1].location.line, 5);
        std::fs::write(&p, "kind: [smtp\n").unwrap();
        let err = load_documents(&p).unwrap_err();
        assert!(err.to_string().contains("YAML") || matches!(err, ManifestError::Invalid(_)));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
