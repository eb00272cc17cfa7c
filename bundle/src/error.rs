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
    /// A file parses but breaks a rule of its format.
    #[error("{}: {reason}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
        /// What to do about it.
        hint: &'static str,
    },
    /// The path is neither a bundle tarball nor an extracted bundle.
    #[error("{} is not a readable tele bundle: {reason}", path.display())]
    NotABundle {
        /// The path given.
        path: PathBuf,
        /// Why it is not one.
        reason: String,
    },
    /// The bundle has no `runtime/runtime.json`.
    #[error("{}: {source}; this bundle carries no Kubernetes runtime (it was built with --no-runtime)", path.display())]
    NoRuntime {
        /// The missing `runtime.json`.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The runtime names no pod sandbox image.
    #[error("{}: the bundle's runtime has no pause image", path.display())]
    NoSandboxImage {
        /// The `runtime.json`.
        path: PathBuf,
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
            Error::Json { hint, .. } | Error::Invalid { hint, .. } if !hint.is_empty() => {
                Some(hint)
            }
            Error::NotABundle { .. } => {
                Some("give the .tar written by `tele build` (or its extracted directory for verify)")
            }
            Error::NoRuntime { .. } => Some(
                "build the bundle with a runtime (without --no-runtime) to install Kubernetes from it",
            ),
            Error::NoSandboxImage { .. } => {
                Some("the runtime is incomplete; rebuild it with scripts/build-runtime")
            }
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
            Error::Io { source, .. } | Error::NoRuntime { source, .. } => Some(source.kind()),
            _ => None,
        }
    }
}

/// Reads a JSON file of some format.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(
    path: &Path,
    hint: &'static str,
) -> Result<T, Error> {
    let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let bytes = read_bounded(f, MAX_METADATA_BYTES).map_err(|e| Error::io(path, e))?;
    parse_json(path, &bytes, hint)
}

/// The most bytes read of one metadata file (bundle.json, runtime.json, an
/// image layout's index.json): far more than any real one holds.
pub const MAX_METADATA_BYTES: u64 = 16 << 20;

/// All of `r`, or an error once it goes past `limit` bytes.
pub(crate) fn read_bounded(r: impl std::io::Read, limit: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read as _;
    let mut v = Vec::new();
    r.take(limit + 1).read_to_end(&mut v)?;
    if v.len() as u64 > limit {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "larger than {} MiB, more than any such file holds",
                limit >> 20
            ),
        ));
    }
    Ok(v)
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
