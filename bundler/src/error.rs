//! Build errors, each with a kind that decides the exit code and a hint for the user.

use std::fmt;
use std::path::{Path, PathBuf};

use tele_manifests::ManifestError;

/// Why a build (or an inspect/verify) failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The app manifest or its resources are wrong.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// Something the user gave is wrong (a source, a flag, a bundle).
    #[error("{message}")]
    Input {
        /// What is wrong.
        message: String,
        /// What to do about it (may be empty).
        hint: String,
    },
    /// A registry refused or could not be reached.
    #[error("{message}")]
    Registry {
        /// What failed, naming the image (and blob).
        message: String,
        /// What to do about it.
        hint: String,
    },
    /// Reading or writing a local file failed.
    #[error("failed to access `{}`: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

impl BuildError {
    /// Bad input, with a hint.
    pub fn input(message: impl Into<String>, hint: impl Into<String>) -> BuildError {
        BuildError::Input {
            message: message.into(),
            hint: hint.into(),
        }
    }

    /// A registry or network failure, with a hint.
    pub fn registry(message: impl Into<String>, hint: impl Into<String>) -> BuildError {
        BuildError::Registry {
            message: message.into(),
            hint: hint.into(),
        }
    }

    /// A file system failure on `path`.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> BuildError {
        BuildError::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    /// What the user can do, when there is something to say.
    pub fn hint(&self) -> Option<String> {
        match self {
            BuildError::Input { hint, .. } | BuildError::Registry { hint, .. } if !hint.is_empty() => Some(hint.clone()),
            BuildError::Io { source, .. } if source.kind() == std::io::ErrorKind::StorageFull => {
                Some("free some disk space (or point --cache-dir / -o elsewhere) and run the build again".into())
            }
            BuildError::Io { source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied => {
                Some("check the permissions of that path".into())
            }
            _ => None,
        }
    }

    /// True for registry and network failures (exit code 2).
    pub fn is_registry(&self) -> bool {
        matches!(self, BuildError::Registry { .. })
    }
}

impl From<tele_bundle::Error> for BuildError {
    fn from(e: tele_bundle::Error) -> BuildError {
        match e {
            tele_bundle::Error::Io { path, source } => BuildError::Io { path, source },
            e => BuildError::input(e.to_string(), e.hint().unwrap_or_default()),
        }
    }
}

/// A list of problems found by `tele verify`.
#[derive(Debug)]
pub struct Problems(pub Vec<String>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.0 {
            writeln!(f, "{p}")?;
        }
        Ok(())
    }
}
