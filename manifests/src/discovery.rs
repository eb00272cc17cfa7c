//! Finding every image an app needs: Kubernetes resources beside the manifest,
//! hook jobs (inline or in files) and the manifest's own `images:`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::diagnostic::{sort_diagnostics, Diagnostic, ManifestError};
use crate::hooks::{inline_job_sources, HookJob};
use crate::image_ref::ImageRef;
use crate::kube_schema::{self, Checked, CustomKinds, Unresolved};
use crate::manifest::Manifest;
use crate::schema_check::{describe, is_null};
use crate::source_text::{Origin, SourceText};
use crate::workload::{scan_object, Object};

/// Every image an app uses, and the files they were found in.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageSet {
    /// Each image with every place that uses it, in file and position order.
    pub images: BTreeMap<ImageRef, Vec<ImageUse>>,
    /// Files holding at least one Kubernetes object, relative to the manifest
    /// directory, sorted.
    pub resource_files: Vec<PathBuf>,
    /// Hook job files (`job: file://...`), relative to the manifest directory, sorted.
    pub hook_files: Vec<PathBuf>,
    /// Things skipped that may be mistakes, e.g. a document without `kind`.
    pub warnings: Vec<Diagnostic>,
}

/// One place an image is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageUse {
    /// The image string's location and byte span in its file.
    pub origin: Origin,
    /// What uses it, e.g. `Deployment/web container nginx`, `hook install: Job/setup
    /// container main` or `manifest images:`.
    pub context: String,
}

const RESOURCE_EXTENSIONS: &[&str] = &["yaml", "yml", "json"];

/// Scans the manifest's directory and hooks for images.
///
/// Resource files are every `*.yaml`, `*.yml` and `*.json` under the manifest
/// directory except the manifest itself, hook files and hidden entries.
pub fn discover_images(manifest: &Manifest) -> Result<ImageSet, ManifestError> {
    let mut scan = Scan::default();
    let hook_files: BTreeSet<&Path> = manifest.hooks.files().collect();
    let manifest_name = manifest.path.file_name().map(Path::new);

    for rel in resource_candidates(&manifest.dir)? {
        if Some(rel.as_path()) == manifest_name || hook_files.contains(rel.as_path()) {
            continue;
        }
        let Some(src) = read_source(manifest, &rel, &mut scan)? else {
            continue;
        };
        if scan.scan_file(&src, None) {
            scan.set.resource_files.push(rel);
        }
    }

    for hook in &manifest.hooks.hooks {
        let HookJob::File(rel) = &hook.job else {
            continue;
        };
        if !manifest.dir.join(rel).is_file() {
            let message = format!(
                "hook `{}` job file `{}` does not exist",
                hook.name,
                rel.display()
            );
            scan.errors
                .push(Diagnostic::new(hook.origin.location.clone(), message));
            continue;
        }
        let Some(src) = read_source(manifest, rel, &mut scan)? else {
            continue;
        };
        scan.scan_file(&src, Some(&hook.name));
        scan.set.hook_files.push(rel.clone());
    }

    let manifest_src = SourceText::new(&manifest.path, manifest.text.as_str());
    if let Ok(documents) = manifest_src.load() {
        if let Some(root) = documents.first() {
            for (name, src) in inline_job_sources(&manifest_src, root) {
                scan.scan_file(&src, Some(&name));
            }
        }
    }

    for entry in &manifest.images {
        scan.add(
            entry.image.clone(),
            entry.origin.clone(),
            "manifest images:".to_string(),
        );
    }

    let Scan {
        mut set,
        mut errors,
        custom,
        unresolved,
    } = scan;
    for u in &unresolved {
        match u.judge(&custom) {
            Some((true, error)) => errors.push(error),
            Some((false, warning)) => set.warnings.push(warning),
            None => {}
        }
    }
    if !errors.is_empty() {
        sort_diagnostics(&mut errors);
        return Err(ManifestError::Invalid(errors));
    }
    set.resource_files.sort();
    set.hook_files.sort();
    set.hook_files.dedup();
    sort_diagnostics(&mut set.warnings);
    for uses in set.images.values_mut() {
        uses.sort_by(|a, b| {
            let key = |u: &ImageUse| (u.origin.location.clone(), u.origin.span.start);
            key(a).cmp(&key(b))
        });
    }
    Ok(set)
}

/// Resource-looking files under `dir`, relative to it, in a stable order.
fn resource_candidates(dir: &Path) -> Result<Vec<PathBuf>, ManifestError> {
    let walk = walkdir::WalkDir::new(dir)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|entry| {
            entry.depth() == 0 || !entry.file_name().to_string_lossy().starts_with('.')
        });
    let mut files = Vec::new();
    for entry in walk {
        let entry = entry.map_err(|e| {
            let path = e.path().unwrap_or(dir).to_path_buf();
            ManifestError::io(&path, e.into())
        })?;
        let is_resource = entry
            .path()
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| RESOURCE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()));
        if entry.file_type().is_file() && is_resource {
            let rel = entry.path().strip_prefix(dir).unwrap_or(entry.path());
            files.push(rel.to_path_buf());
        }
    }
    Ok(files)
}

/// Reads `rel` (relative to the manifest directory), naming it the way the
/// manifest path was given so diagnostics read naturally.
fn read_source(
    manifest: &Manifest,
    rel: &Path,
    scan: &mut Scan,
) -> Result<Option<SourceText>, ManifestError> {
    let shown = match manifest.path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.join(rel),
        _ => rel.to_path_buf(),
    };
    let bytes = crate::source_text::read_file(&manifest.dir.join(rel))
        .map_err(|e| ManifestError::io(&shown, e))?;
    match String::from_utf8(bytes) {
        Ok(text) => Ok(Some(SourceText::new(shown, text))),
        Err(_) => {
            let location = crate::diagnostic::Location::new(shown, 1, 1);
            scan.errors
                .push(Diagnostic::new(location, "the file is not valid UTF-8"));
            Ok(None)
        }
    }
}

#[derive(Default)]
struct Scan {
    set: ImageSet,
    errors: Vec<Diagnostic>,
    /// Kinds defined by CustomResourceDefinitions read so far.
    custom: CustomKinds,
    /// Objects of kinds Kubernetes does not know, judged once all is read.
    unresolved: Vec<Unresolved>,
}

impl Scan {
    /// Scans every document of `src`; returns whether it held a Kubernetes object.
    fn scan_file(&mut self, src: &SourceText, hook: Option<&str>) -> bool {
        let documents = match src.load() {
            Ok(documents) => documents,
            Err(diagnostic) => {
                self.errors.push(diagnostic);
                return false;
            }
        };
        let mut has_objects = false;
        for document in documents.iter().filter(|d| !is_null(d)) {
            let fields = match scan_object(document) {
                Object::Kubernetes(fields) => fields,
                Object::Other(reason) => {
                    let message = format!("skipped a document: {reason}");
                    self.set
                        .warnings
                        .push(Diagnostic::new(src.node_location(document), message));
                    continue;
                }
            };
            has_objects = true;
            self.custom.learn(document);
            let mut schema_errors = Vec::new();
            for checked in kube_schema::check(src, document) {
                match checked {
                    Checked::Known(found) => schema_errors.extend(found),
                    Checked::Unknown(u) => self.unresolved.push(u),
                }
            }
            for c in crate::workload::credentials(document) {
                self.errors
                    .push(Diagnostic::new(src.node_location(c.node), c.message).with_hint(c.hint));
            }
            for field in fields {
                let context = match hook {
                    Some(name) => format!("hook {name}: {}", field.context),
                    None => field.context,
                };
                let Some(text) = field.node.data.as_str() else {
                    let message = format!(
                        "{context}: image must be a string, found {}",
                        describe(field.node)
                    );
                    self.errors
                        .push(Diagnostic::new(src.node_location(field.node), message));
                    continue;
                };
                let image = match ImageRef::parse(text) {
                    Ok(image) => image,
                    Err(e) => {
                        let diagnostic = Diagnostic::new(
                            src.node_location(field.node),
                            format!("{context}: {e}"),
                        );
                        self.errors.push(Diagnostic {
                            hint: e.hint,
                            ..diagnostic
                        });
                        continue;
                    }
                };
                match src.origin(field.node) {
                    Some(origin) => self.add(image, origin, context),
                    None => {
                        let diagnostic = Diagnostic::new(
                            src.node_location(field.node),
                            format!("{context}: cannot locate image `{text}` exactly in the manifest text"),
                        );
                        self.errors.push(diagnostic.with_hint(
                            "write inline hook jobs as literal blocks (`job: |`) so images can be pinned in place",
                        ));
                    }
                }
            }
            // One message per place: an image field of the wrong type is
            // already reported, with its container.
            schema_errors.retain(|d| !self.errors.iter().any(|e| e.location == d.location));
            self.errors.extend(schema_errors);
        }
        has_objects
    }

    fn add(&mut self, image: ImageRef, origin: Origin, context: String) {
        self.set
            .images
            .entry(image)
            .or_default()
            .push(ImageUse { origin, context });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{load_manifest, parse_manifest};

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/manifests")
            .join(name)
    }

    /// (image, file name, line:column, spanned text, context) for every use.
    fn uses(set: &ImageSet) -> Vec<(String, String, String, String, String)> {
        let mut all = Vec::new();
        for (image, uses) in &set.images {
            for u in uses {
                let file = &u.origin.location.file;
                let text = std::fs::read_to_string(file).unwrap();
                all.push((
                    image.to_string(),
                    file.file_name().unwrap().to_string_lossy().into_owned(),
                    format!("{}:{}", u.origin.location.line, u.origin.location.column),
                    text[u.origin.span.clone()].to_string(),
                    u.context.clone(),
                ));
            }
        }
        all
    }

    #[test]
    fn finds_every_workload_kind_hook_and_manifest_image() {
        let manifest = load_manifest(&fixture("full/app.yaml")).unwrap();
        let set = discover_images(&manifest).unwrap();
        let found = uses(&set);
        let expect = |image: &str, file: &str, at: &str, text: &str, context: &str| {
            let want = (
                image.into(),
                file.into(),
                at.into(),
                text.into(),
                context.into(),
            );
            assert!(found.contains(&want), "missing {want:?} in {found:#?}");
        };
        expect(
            "docker.io/shop/migrate:2",
            "web.yaml",
            "11:18",
            "shop/migrate:2",
            "Deployment/web init container migrate",
        );
        expect(
            "docker.io/library/nginx:1.25",
            "web.yaml",
            "14:18",
            "nginx:1.25",
            "Deployment/web container nginx",
        );
        expect(
            "docker.io/shop/app:2",
            "web.yaml",
            "16:18",
            "\"shop/app:2\"",
            "Deployment/web container app",
        );
        expect(
            "docker.io/library/postgres:16",
            "list.json",
            "9:146",
            "\"postgres:16\"",
            "StatefulSet/db container postgres",
        );
        expect(
            "docker.io/library/nginx:1.25",
            "workloads.yml",
            "8:14",
            "nginx:1.25",
            "Pod/debug container shell",
        );
        expect(
            "docker.io/library/busybox@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "workloads.yml", "11:14",
            "busybox@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "Pod/debug ephemeral container probe",
        );
        expect(
            "localhost:5000/rs:1",
            "workloads.yml",
            "16:90",
            "\"localhost:5000/rs:1\"",
            "ReplicaSet/rs container c",
        );
        expect(
            "docker.io/rc/image:1",
            "workloads.yml",
            "21:56",
            "rc/image:1",
            "ReplicationController/rc container c",
        );
        expect(
            "docker.io/ds/image:1",
            "workloads.yml",
            "26:90",
            "ds/image:1",
            "DaemonSet/ds container c",
        );
        expect(
            "docker.io/job/image:1",
            "workloads.yml",
            "31:56",
            "job/image:1",
            "Job/job container c",
        );
        expect(
            "docker.io/cron/v1:1",
            "workloads.yml",
            "36:97",
            "cron/v1:1",
            "CronJob/cron container c",
        );
        expect(
            "docker.io/cron/v1beta1:1",
            "workloads.yml",
            "49:22",
            "cron/v1beta1:1",
            "CronJob/legacy container c",
        );
        expect(
            "docker.io/library/tmpl:latest",
            "workloads.yml",
            "54:49",
            "index.docker.io/tmpl",
            "PodTemplate/tmpl container c",
        );
        expect(
            "quay.io/shop/installer:1.0",
            "app.yaml",
            "120:24",
            "\"quay.io/shop/installer:1.0\"",
            "hook install: Job/install container main",
        );
        expect(
            "quay.io/shop/updater:1.0",
            "update.yaml",
            "11:18",
            "quay.io/shop/updater:1.0",
            "hook update: Job/update container main",
        );
        expect(
            "docker.io/library/busybox:1.36",
            "app.yaml",
            "124:5",
            "busybox:1.36",
            "manifest images:",
        );
        assert_eq!(found.len(), 17, "{found:#?}");
        // The ConfigMap's `image: redis:7`, the comment and the hidden directory are not images.
        assert!(!set
            .images
            .keys()
            .any(|i| i.repository().contains("redis") || i.repository().contains("commented")));
        assert_eq!(
            set.resource_files,
            [
                "resources/list.json",
                "resources/web.yaml",
                "resources/workloads.yml"
            ]
            .map(PathBuf::from)
        );
        assert_eq!(set.hook_files, [PathBuf::from("hooks/update.yaml")]);
        let warnings: Vec<String> = set.warnings.iter().map(|w| w.to_string()).collect();
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].ends_with(
            "web.yaml:26:1: skipped a document: the document has no `apiVersion` and `kind`"
        ));
    }

    #[test]
    fn spans_let_callers_pin_manifest_images_in_place() {
        let manifest = load_manifest(&fixture("full/app.yaml")).unwrap();
        let set = discover_images(&manifest).unwrap();
        let digest = format!("sha256:{}", "ab".repeat(32));
        let mut edits: Vec<_> = set
            .images
            .iter()
            .flat_map(|(image, uses)| uses.iter().map(move |u| (image, u)))
            .filter(|(_, u)| u.origin.location.file == manifest.path)
            .map(|(image, u)| {
                (
                    u.origin.span.clone(),
                    image.with_digest(&digest).to_string(),
                )
            })
            .collect();
        assert_eq!(edits.len(), 3);
        edits.sort_by_key(|(span, _)| std::cmp::Reverse(span.start));
        let mut text = manifest.text.clone();
        for (span, replacement) in edits {
            text.replace_range(span, &replacement);
        }
        let pinned = parse_manifest(&manifest.path, &text).unwrap();
        assert!(pinned
            .images
            .iter()
            .all(|e| e.image.digest() == Some(digest.as_str())));
        assert!(text.contains(&format!("image: quay.io/shop/installer:1.0@{digest}")));
    }

    #[test]
    fn reports_bad_resources_at_their_position() {
        let manifest = load_manifest(&fixture("bad-resources/app.yaml")).unwrap();
        let err = discover_images(&manifest).unwrap_err();
        let shown: Vec<String> = err
            .diagnostics()
            .iter()
            .map(|d| {
                format!(
                    "{}:{}:{}: {}",
                    d.location.file.file_name().unwrap().to_string_lossy(),
                    d.location.line,
                    d.location.column,
                    d.message
                )
            })
            .collect();
        assert_eq!(
            shown,
            [
                "images.yaml:8:14: Pod/p container a: invalid image reference `nginx@sha256:abc`: digest `sha256:abc` is not valid",
                "images.yaml:10:14: Pod/p container b: image must be a string, found an integer",
                "syntax.yaml:5:2: YAML syntax error: while parsing a block mapping, did not find expected key",
            ]
        );
    }

    fn manifest_in(dir: &Path, hooks: &str) -> Manifest {
        let text = format!(
            "apiVersion: bundle.gravitational.io/v2\nkind: Bundle\nmetadata:\n  name: t\n  resourceVersion: 1.0.0\nhooks:\n{hooks}"
        );
        let path = dir.join("app.yaml");
        std::fs::write(&path, &text).unwrap();
        load_manifest(&path).unwrap()
    }

    fn scratch_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("tele-manifests-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn inline_job_in_a_quoted_flow_string_maps_exactly() {
        let dir = scratch_dir("flow");
        let job = "{apiVersion: batch/v1, kind: Job, spec: {template: {spec: {containers: [{name: c, image: alpine:3}]}}}}";
        let manifest = manifest_in(&dir, &format!("  install:\n    job: \"{job}\"\n"));
        let set = discover_images(&manifest).unwrap();
        let uses = &set.images[&ImageRef::parse("alpine:3").unwrap()];
        assert_eq!(&manifest.text[uses[0].origin.span.clone()], "alpine:3");
        assert_eq!(uses[0].origin.location.line, 8);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn inline_job_that_cannot_be_mapped_is_an_error_not_a_wrong_span() {
        let dir = scratch_dir("escaped");
        let job = "{apiVersion: batch/v1, kind: Job, spec: {template: {spec: {containers: [{name: \\u0063, image: alpine:3}]}}}}";
        let manifest = manifest_in(&dir, &format!("  install:\n    job: \"{job}\"\n"));
        let err = discover_images(&manifest).unwrap_err();
        let d = &err.diagnostics()[0];
        assert!(d.message.contains("cannot locate image `alpine:3`"), "{d}");
        assert_eq!(d.location.line, 8);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn missing_hook_file_is_reported_at_the_hook() {
        let dir = scratch_dir("missing-hook");
        let manifest = manifest_in(&dir, "  install:\n    job: file://hooks/nope.yaml\n");
        let err = discover_images(&manifest).unwrap_err();
        let d = &err.diagnostics()[0];
        assert_eq!((d.location.line, d.location.column), (8, 10));
        assert_eq!(
            d.message,
            "hook `install` job file `hooks/nope.yaml` does not exist"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn credentials_are_refused_unless_packed_on_purpose() {
        let dir = scratch_dir("credentials");
        let files = [
            ("kubeconfig.yaml", "apiVersion: v1\nkind: Config\nusers:\n  - name: prod\n    user: {token: abc}\n"),
            ("secret.yaml", "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\ndata:\n  password: aHVudGVyMg==\n"),
            ("tls.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: tls\ndata:\n  key: |\n    -----BEGIN PRIVATE KEY-----\n    MII\n"),
            ("meant.yaml", "apiVersion: v1\nkind: Secret\nmetadata:\n  name: licence\n  annotations:\n    tele.dev/pack-credentials: \"true\"\nstringData:\n  key: k\n"),
            ("empty.yaml", "apiVersion: v1\nkind: Secret\nmetadata:\n  name: filled-at-install\ntype: Opaque\n"),
            (".kube.yaml", "apiVersion: v1\nkind: Config\n"),
        ];
        for (name, text) in files {
            std::fs::write(dir.join(name), text).unwrap();
        }
        let manifest = manifest_in(&dir, "  {}\n");
        let err = discover_images(&manifest).unwrap_err();
        let shown: Vec<String> = err
            .diagnostics()
            .iter()
            .map(|d| {
                let file = d.location.file.file_name().unwrap().to_string_lossy();
                format!(
                    "{file}:{}:{}: {}",
                    d.location.line, d.location.column, d.message
                )
            })
            .collect();
        assert_eq!(
            shown,
            [
                "kubeconfig.yaml:1:1: a kubeconfig (kind: Config) holds a cluster's credentials and is never packed",
                "secret.yaml:6:3: Secret/db holds data: credentials are not packed unless meant",
                "tls.yaml:7:5: ConfigMap/tls holds a private key: credentials are not packed unless meant",
            ]
        );
        let hint = err.diagnostics()[1].hint.clone().unwrap_or_default();
        assert!(
            hint.contains("annotate Secret/db with tele.dev/pack-credentials: \"true\""),
            "{hint}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
