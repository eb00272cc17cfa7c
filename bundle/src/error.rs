//! What can go wrong reading a bundle, a runtime or an image layout, each
//! naming the file and, where there is something to do, with a hint.

use std::io;
use std::path::{Path, PathBuf};

/// Why a file of a bundle, a runtime or a layout could not be read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading a file failed.
    #[error("failed to access `{}`: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A JSON file does not parse as its format.
    #[error("{}:{}:{}: {source}", path.display(), source.line(), source.column())]
    Json {
        /// The file.
        path: PathBuf,
        /// The parser's error, with its line and column.
        source: serde_json::Error,
        /// What to do about it.
        hint: &'static str,
    },
}

impl Error {
    /// A failed read of `path`.
    pub fn io(path: impl AsRef<Path>, source: io::Error) -> Error {
        Error::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    /// What the user can do, when there is something to say.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            Error::Json { hint, .. } if !hint.is_empty() => Some(hint),
            Error::Io { source, .. } if source.kind() == io::ErrorKind::PermissionDenied => {
                Some("check the permissions of that path")
            }
            _ => None,
        }
    }

    /// The OS error when this is a failed read, to tell a missing file from
    /// a broken one.
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match self {
            Error::Io { source, .. } => Some(source.kind()),
            _ => None,
        }
    }
}

/// Parses the bytes of a JSON file of some format.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(
    path: &Path,
    bytes: &[u8],
    hint: &'static str,
) -> Result<T, Error> {
    serde_json::from_slice(bytes).map_err(|source| Error::Json {
        path: path.to_path_buf(),
        source,
        hint,
    })
}
