//! Progress reporting, kept out of the library: the CLI implements [`Reporter`]
//! with progress bars on a terminal and plain lines elsewhere.

use tele_manifests::ImageRef;

use crate::digest::Digest;
use crate::image::Origin;

/// The stages of a build, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Tags and indexes to manifest digests; counted in images.
    Resolve,
    /// Blobs into the cache; counted in bytes.
    Fetch,
    /// The tarball; counted in bytes.
    Write,
}

/// Receives progress from a build. Every method has a no-op default.
pub trait Reporter: Send + Sync {
    /// A stage begins with `total` units of work.
    fn start(&self, _stage: Stage, _total: u64) {}
    /// `n` more units of `stage` are done.
    fn advance(&self, _stage: Stage, _n: u64) {}
    /// A stage is over.
    fn finish(&self, _stage: Stage) {}
    /// An image was resolved.
    fn resolved(&self, _image: &ImageRef, _digest: &Digest, _origin: &Origin) {}
    /// Something worth telling the user, such as "nothing to fetch".
    fn note(&self, _message: &str) {}
}

/// A reporter that says nothing.
pub struct Silent;

impl Reporter for Silent {}
