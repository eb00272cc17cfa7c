//! The tele app manifest.
//!
//! [`load_manifest`] reads and validates an `app.yaml` (Gravity's v2 app
//! manifest plus a top-level `images:` list). Every problem is reported at
//! once as a [`Diagnostic`] pinned to `FILE:LINE:COLUMN`, with a hint when we
//! can tell how to fix it. [`discover_images`] then finds every container image
//! the app needs: in the Kubernetes resources beside the manifest, in hook jobs
//! and in `images:`, each normalised to an [`ImageRef`] and tied to the exact
//! bytes it was written as, so callers can pin images by digest in place.
//!
//! ```
//! use std::path::Path;
//! use tele_manifests::{parse_manifest, ImageRef};
//!
//! let text = "\
//! apiVersion: bundle.gravitational.io/v2
//! kind: Bundle
//! metadata:
//!   name: web
//!   resourceVersion: 1.0.0
//! images:
//!   - nginx:1.25
//! ";
//! let manifest = parse_manifest(Path::new("app.yaml"), text).unwrap();
//! assert_eq!(manifest.metadata.version.to_string(), "1.0.0");
//! let entry = &manifest.images[0];
//! assert_eq!(entry.image, ImageRef::parse("docker.io/library/nginx:1.25").unwrap());
//! assert_eq!(&manifest.text[entry.origin.span.clone()], "nginx:1.25");
//!
//! let error = parse_manifest(Path::new("app.yaml"), "kind: Bundle\n").unwrap_err();
//! assert_eq!(
//!     error.to_string(),
//!     "app.yaml:1:1: missing required field `apiVersion` in the top level\n\
//!      app.yaml:1:1: missing required field `metadata` in the top level"
//! );
//! ```
#![deny(missing_docs)]

mod cluster_options;
mod diagnostic;
mod discovery;
mod documents;
mod hooks;
mod image_ref;
mod kube_schema;
mod manifest;
mod node_profile;
mod quantity;
mod schema_check;
mod source_text;
mod workload;

pub use cluster_options::{
    AwsProvider, AzureProvider, Dependencies, Endpoint, GenericProvider, License, Providers,
    RuntimePackage, SystemOptions,
};
pub use diagnostic::{Diagnostic, Location, ManifestError};
pub use discovery::{discover_images, ImageSet, ImageUse};
pub use documents::{load_documents, Document};
pub use hooks::{Hook, HookJob, Hooks, HOOK_NAMES};
pub use image_ref::{ImageRef, ImageRefError};
pub use kube_schema::{check_objects, KUBERNETES_VERSION};
pub use manifest::{load_manifest, parse_manifest, ImageEntry, Manifest, ManifestKind, Metadata};
pub use node_profile::{
    Flavor, FlavorNodes, Flavors, Installer, NetworkRequirement, NodeProfile, OsRequirement,
    PortRequirement, Range, Requirements, Taint, Volume,
};
pub use quantity::{Quantity, SIZE_UNITS};
pub use source_text::Origin;
