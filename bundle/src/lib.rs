//! tele's formats, owned in one place and shared by the build path
//! (`tele-bundler`, which writes them) and the install path
//! (`tele-installer`, which reads them).
//!
//! - [`digest`]: `sha256:<hex>` content digests and a hashing writer;
//! - [`media_type`]: every manifest, index, config and layer media type;
//! - [`platform`]: a platform, `os/architecture[/variant]`;
//! - [`oci_layout`]: the OCI image layout (`oci-layout`, `index.json` and its
//!   name annotations, `blobs/sha256/<hex>`);
//! - [`bundle_json`]: `bundle.json`, what a bundle holds, and the names of its
//!   top-level entries;
//! - [`runtime_json`]: `runtime.json`, the Kubernetes runtime a bundle carries;
//! - [`tarball`], [`verify`], [`inspect`]: reading a bundle as a tarball or an
//!   extracted directory, checking every file against `bundle.json`;
//! - [`signature`]: a vendor's ECDSA P-256 signature of `bundle.json`, as a
//!   Sigstore bundle beside it, and the keys that make and check it;
//! - [`durable`]: writing a file so that a crash leaves the old content or the
//!   new (temporary file, fsync, rename, fsync of the directory), for every
//!   file tele writes whole.
//!
//! Nothing here fetches, builds or installs; errors ([`Error`]) name the
//! file and carry a hint where there is something to do.
//!
//! ```no_run
//! use std::path::Path;
//! use tele_bundle::{bundle_json::BundleMeta, runtime_json, verify::verify};
//! let bundle = Path::new("/opt/shop-1.0.0");
//! let v = verify(bundle)?;
//! assert!(v.problems.is_empty(), "{}", v.problems.join("\n"));
//! let meta = BundleMeta::read(bundle)?;
//! println!("{} {}: {} images", meta.name, meta.version, meta.images.len());
//! let kubelet = &runtime_json::binaries(bundle)?["kubelet"];
//! # Ok::<(), tele_bundle::Error>(())
//! ```
#![deny(missing_docs)]

pub mod bundle_json;
pub mod digest;
pub mod durable;
pub mod error;
pub mod inspect;
pub mod media_type;
pub mod oci_layout;
pub mod packed;
pub mod platform;
pub mod runtime_json;
pub mod signature;
pub mod tarball;
pub mod verify;

pub use error::Error;
