//! `runtime.json`: the Kubernetes runtime a bundle carries under `runtime/`,
//! and a runtime directory before it is packed.
//!
//! A runtime is a directory holding `runtime.json` ([`RuntimeMeta`]) and the
//! files it names, plus an OCI image layout `images/` with the system images
//! (at least the pod sandbox, [`SANDBOX_COMPONENT`]). Each [`Component`] is
//! either one file (`path` + `sha256`, optionally fetched from a `url`) or one
//! image (`image`). The format is documented in `docs/runtime.md`; checking a
//! runtime before it is packed is the bundler's work.
//!
//! ```no_run
//! use std::path::Path;
//! use tele_bundle::runtime_json;
//! let bundle = Path::new("/opt/shop-1.0.0");
//! for (name, path) in runtime_json::binaries(bundle)? {
//!     println!("{name}: {}", path.display());
//! }
//! println!("sandbox: {}", runtime_json::sandbox_image(bundle)?);
//! # Ok::<(), tele_bundle::Error>(())
//! ```

use std::collections::BTreeMap;
use std::io;
use std::path::{Component as PathPart, Path, PathBuf};

use crate::error::{parse_json, Error};

/// The `apiVersion` of the `runtime.json` this module reads.
pub const API_VERSION: &str = "runtime.tele.dev/v1";
/// The metadata file at the top of a runtime.
pub const META_FILE: &str = "runtime.json";
/// The OCI image layout inside a runtime that holds its system images.
pub const IMAGES_DIR: &str = "images";
/// Where a runtime's files go inside a bundle.
pub const BUNDLE_DIR: &str = "runtime";
/// The component that is the pod sandbox image.
pub const SANDBOX_COMPONENT: &str = "pause";

const HINT: &str = "see docs/runtime.md for the format of runtime.json";

/// `runtime.json`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuntimeMeta {
    /// Always [`API_VERSION`].
    pub api_version: String,
    /// A name for people, e.g. `kubernetes-1.20.2-debian`.
    pub name: String,
    /// The Kubernetes version, without a leading `v` (`1.20.2`).
    pub kubernetes_version: String,
    /// The platform of its binaries (`linux/amd64`), when recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// Every file and image of the runtime.
    pub components: Vec<Component>,
    /// The fixes its Kubernetes was built with on top of the upstream source,
    /// in the order they were applied; none when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub patches: Vec<Patch>,
}

/// A fix applied to the Kubernetes source a runtime was built from
/// (`scripts/kubernetes-patches/NAME.patch` for `scripts/build-runtime`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Patch {
    /// The patch's file name without `.patch`
    /// (`0001-endpointslice-no-duplicate-slices`).
    pub name: String,
    /// What it fixes, in one line: the patch's first line.
    pub summary: String,
    /// The sha256 of the patch file (64 lowercase hex digits).
    pub sha256: String,
}

/// One binary or one image of a runtime.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Component {
    /// `kubelet`, `etcd`, `cni-bridge`, `pause`, ...; unique in the runtime.
    pub name: String,
    /// The version the component itself reports (`v1.20.2`, `3.4.23`).
    pub version: String,
    /// Where the file is, relative to the runtime directory, `/`-separated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The file's sha256 (64 lowercase hex digits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Where to download the file from when it is not in the directory (https, or
    /// http on loopback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// For an image component: its full reference, present in `images/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// For an image component: its manifest digest in `images/`, when recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Which nodes need it.
    pub runs_on: RunsOn,
    /// Where `version` comes from when the binary does not report one
    /// (e.g. `package:containernetworking-plugins=1.1.1+ds1-3+b5`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_source: Option<String>,
}

/// The nodes a component runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RunsOn {
    /// Control plane nodes only (etcd, kube-apiserver, ...).
    ControlPlane,
    /// Worker nodes only.
    Worker,
    /// Every node (kubelet, containerd, ...).
    All,
}

impl Component {
    /// True for an image component (`image` set), false for a file.
    pub fn is_image(&self) -> bool {
        self.image.is_some()
    }
}

impl RuntimeMeta {
    /// Reads `runtime.json` of the runtime directory `root`; a parse error
    /// names the file, line and column.
    pub fn read(root: &Path) -> Result<RuntimeMeta, Error> {
        let path = root.join(META_FILE);
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        parse_json(&path, &bytes, HINT)
    }

    /// Reads the runtime a bundle carries (`runtime/runtime.json` of the
    /// extracted bundle at `bundle_dir`); [`Error::NoRuntime`] when it has none.
    pub fn read_in_bundle(bundle_dir: &Path) -> Result<RuntimeMeta, Error> {
        let root = bundle_dir.join(BUNDLE_DIR);
        RuntimeMeta::read(&root).map_err(|e| match e {
            Error::Io { path, source } if source.kind() == io::ErrorKind::NotFound => {
                Error::NoRuntime { path, source }
            }
            e => e,
        })
    }

    /// The file components by name, each path relative to the runtime
    /// directory; a path that is not relative and inside it is refused.
    pub fn files(&self) -> Result<BTreeMap<&str, &str>, String> {
        self.components
            .iter()
            .filter_map(|c| Some((c.name.as_str(), c.path.as_deref()?)))
            .map(|(name, path)| {
                let inside = !path.is_empty()
                    && Path::new(path)
                        .components()
                        .all(|p| matches!(p, PathPart::Normal(_)));
                if inside {
                    Ok((name, path))
                } else {
                    Err(format!(
                        "component `{name}`: path `{path}` is not inside the runtime"
                    ))
                }
            })
            .collect()
    }

    /// The pod sandbox image's reference: the image of [`SANDBOX_COMPONENT`].
    pub fn sandbox_image(&self) -> Option<&str> {
        self.components
            .iter()
            .find(|c| c.name == SANDBOX_COMPONENT)
            .and_then(|c| c.image.as_deref())
    }
}

/// Component name -> absolute path of every file component of the runtime
/// the extracted bundle at `bundle_dir` carries.
pub fn binaries(bundle_dir: &Path) -> Result<BTreeMap<String, PathBuf>, Error> {
    let meta = RuntimeMeta::read_in_bundle(bundle_dir)?;
    let root = bundle_dir.join(BUNDLE_DIR);
    let files = meta.files().map_err(|reason| Error::Invalid {
        path: root.join(META_FILE),
        reason,
        hint: crate::bundle_json::HINT,
    })?;
    Ok(files
        .into_iter()
        .map(|(name, path)| (name.to_string(), root.join(path)))
        .collect())
}

/// The pod sandbox (pause) image of the runtime the extracted bundle at
/// `bundle_dir` carries.
pub fn sandbox_image(bundle_dir: &Path) -> Result<String, Error> {
    let meta = RuntimeMeta::read_in_bundle(bundle_dir)?;
    meta.sandbox_image()
        .map(String::from)
        .ok_or_else(|| Error::NoSandboxImage {
            path: bundle_dir.join(BUNDLE_DIR).join(META_FILE),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn component(name: &str) -> Component {
        Component {
            name: name.into(),
            version: "v1.20.2".into(),
            path: Some(format!("bin/{name}")),
            sha256: Some("a".repeat(64)),
            url: None,
            image: None,
            digest: None,
            runs_on: RunsOn::All,
            version_source: None,
        }
    }

    fn sample() -> RuntimeMeta {
        let mut etcd = component("etcd");
        etcd.runs_on = RunsOn::ControlPlane;
        etcd.url = Some("https://example.com/etcd".into());
        let mut cni = component("cni-bridge");
        cni.version_source = Some("package:containernetworking-plugins=1.1.1".into());
        let mut pause = component(SANDBOX_COMPONENT);
        (pause.path, pause.sha256) = (None, None);
        pause.image = Some("registry.k8s.io/pause:3.2".into());
        pause.digest = Some(format!("sha256:{}", "b".repeat(64)));
        RuntimeMeta {
            api_version: API_VERSION.into(),
            name: "kubernetes-1.20.2-debian".into(),
            kubernetes_version: "1.20.2".into(),
            platform: Some("linux/amd64".into()),
            components: vec![component("kubelet"), etcd, cni, pause],
            patches: vec![Patch {
                name: "0001-fix".into(),
                summary: "Controller: a fix".into(),
                sha256: "c".repeat(64),
            }],
        }
    }

    fn bundle_with(meta: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(BUNDLE_DIR)).unwrap();
        std::fs::write(dir.path().join(BUNDLE_DIR).join(META_FILE), meta).unwrap();
        dir
    }

    #[test]
    fn round_trips_and_answers_for_a_bundle() {
        let meta = sample();
        let text = serde_json::to_string_pretty(&meta).unwrap();
        assert!(text.contains("\"runsOn\": \"controlPlane\""), "{text}");
        assert!(!text.contains("\"url\": null"), "{text}");
        let dir = bundle_with(&text);
        assert_eq!(RuntimeMeta::read_in_bundle(dir.path()).unwrap(), meta);
        assert!(meta.components[3].is_image() && !meta.components[0].is_image());

        let bins = binaries(dir.path()).unwrap();
        let root = dir.path().join(BUNDLE_DIR);
        assert_eq!(
            bins.keys().collect::<Vec<_>>(),
            ["cni-bridge", "etcd", "kubelet"]
        );
        assert_eq!(bins["kubelet"], root.join("bin/kubelet"));
        assert_eq!(
            sandbox_image(dir.path()).unwrap(),
            "registry.k8s.io/pause:3.2"
        );
    }

    #[test]
    fn a_bundle_without_a_runtime_says_so_with_a_hint() {
        let dir = tempfile::tempdir().unwrap();
        for err in [
            binaries(dir.path()).unwrap_err(),
            sandbox_image(dir.path()).unwrap_err(),
        ] {
            assert!(matches!(err, Error::NoRuntime { .. }), "{err:?}");
            assert!(err.to_string().contains("--no-runtime"), "{err}");
            assert!(err.hint().is_some());
        }
    }

    #[test]
    fn unknown_fields_bad_paths_and_a_missing_pause_are_refused() {
        let dir = bundle_with(r#"{"apiVersion": "runtime.tele.dev/v1", "nme": "x"}"#);
        let err = RuntimeMeta::read_in_bundle(dir.path()).unwrap_err();
        assert!(err.to_string().contains("runtime.json:1:"), "{err}");
        assert!(err.hint().is_some());

        let mut meta = sample();
        meta.components[0].path = Some("../../etc/passwd".into());
        let dir = bundle_with(&serde_json::to_string(&meta).unwrap());
        let err = binaries(dir.path()).unwrap_err();
        assert!(err.to_string().contains("../../etc/passwd"), "{err}");

        let mut meta = sample();
        meta.components.pop();
        let dir = bundle_with(&serde_json::to_string(&meta).unwrap());
        let err = sandbox_image(dir.path()).unwrap_err();
        assert!(err.to_string().contains("no pause image"), "{err}");
    }
}
