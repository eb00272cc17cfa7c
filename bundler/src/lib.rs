//! tele's build path: an app manifest becomes one offline tarball.
//!
//! [`build::build`] loads the manifest (`tele-manifests`), resolves every
//! image to digests from local sources ([`local_source`]) or registries
//! ([`registry`]), fetches each blob once into the content-addressed
//! [`blob_store::BlobStore`], and writes a deterministic tarball
//! ([`bundle_writer`]) whose `images/` is one OCI image layout.
//! [`image_build`] makes one-layer images from directories.
//!
//! The formats it writes (digests, media types, the OCI layout, bundle.json,
//! runtime.json) belong to `tele-bundle`, which also reads and verifies bundles.
//!
//! ```no_run
//! use tele_bundler::build::{build, BuildOptions};
//! use tele_bundler::reporter::Silent;
//! # fn opts() -> BuildOptions { unimplemented!() }
//! let summary = build(&opts(), &Silent)?;
//! println!("{} images in {}", summary.images.len(), summary.output.display());
//! # Ok::<(), tele_bundler::error::BuildError>(())
//! ```
#![deny(missing_docs)]

pub mod blob_store;
pub mod build;
pub mod bundle_writer;
pub mod distribution;
pub mod elf;
pub mod error;
pub mod image;
pub mod image_build;
pub mod local_source;
pub mod registry;
pub mod reporter;
pub mod runtime;
pub mod tar_writer;

pub use error::BuildError;
/// Content digests, from `tele-bundle`.
pub use tele_bundle::digest;
