//! `tele build`: manifest -> images -> resolved digests -> blobs in the cache -> tarball.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use futures_util::{stream, StreamExt, TryStreamExt};
use tele_bundle::bundle_json::{
    BlobInfo, BundleMeta, ComponentInfo, ImageInfo, InstallerInfo, RuntimeInfo, API_VERSION,
    IMAGES_DIR,
};
use tele_bundle::media_type as media;
use tele_bundle::oci_layout::{self, Descriptor, Index};
use tele_bundle::signature::{read_key_file, SigningKey};
use tele_manifests::{ImageRef, ImageSet, Manifest};

use crate::blob_store::BlobStore;
use crate::bundle_writer::{write_bundle, BundleFile, Content};
use crate::error::BuildError;
use crate::image::{Blob, Origin, Platform, ResolvedImage};
use crate::local_source::{self, LocalSource};
use crate::registry::Registries;
use crate::reporter::{Reporter, Stage};
use crate::runtime::Runtime;
use crate::tar_writer::Compression;

/// Everything `tele build` needs to know.
#[derive(Clone, Debug)]
pub struct BuildOptions {
    /// The app manifest (`app.yaml`).
    pub manifest: PathBuf,
    /// The tarball to write; default `<name>-<version>.tar[.zst|.gz]` here.
    pub output: Option<PathBuf>,
    /// The blob cache directory.
    pub cache_dir: PathBuf,
    /// Local image sources, consulted in order before any registry.
    pub sources: Vec<LocalSource>,
    /// Registries (HOST:PORT) reached over plain HTTP.
    pub insecure_registries: Vec<String>,
    /// Platform to pick from multi-platform images.
    pub platform: Platform,
    /// Parallel fetches.
    pub jobs: usize,
    /// Outer compression.
    pub compression: Compression,
    /// The binary packed as `install`.
    pub installer: PathBuf,
    /// mtime of every entry (SOURCE_DATE_EPOCH, else 0).
    pub mtime: u64,
    /// Which Kubernetes runtime to pack.
    pub runtime: RuntimeChoice,
    /// Pack the monitoring stack (unless the manifest disables it).
    pub monitoring: bool,
    /// Store the runtime's files zstd-compressed (`FILE.zst`, unpacked and
    /// checked at install) rather than as they are.
    pub pack_runtime: bool,
    /// The private key (PEM) that signs the bundle, if any.
    pub sign_key: Option<PathBuf>,
}

/// Where the bundle's Kubernetes runtime comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RuntimeChoice {
    /// `--runtime PATH`: a runtime directory or tarball.
    Path(PathBuf),
    /// The manifest's `systemOptions.runtime`, else the newest in the cache.
    Default,
    /// `--no-runtime`: an app-only bundle for an existing cluster.
    None,
}

/// What a build did, for people and for CI.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildSummary {
    /// App name.
    pub name: String,
    /// App version.
    pub version: String,
    /// The tarball written.
    pub output: PathBuf,
    /// Size of the tarball.
    pub bundle_bytes: u64,
    /// Each image with its digest, size and source.
    pub images: Vec<ImageSummary>,
    /// Unique blobs in the bundle.
    pub blobs: usize,
    /// Bytes of those blobs.
    pub blob_bytes: u64,
    /// Bytes not stored thanks to shared blobs.
    pub bytes_saved_by_sharing: u64,
    /// Blobs fetched by this build.
    pub blobs_fetched: usize,
    /// Bytes fetched by this build.
    pub bytes_fetched: u64,
    /// Blobs found in the cache.
    pub blobs_cached: usize,
    /// The Kubernetes version packed, if any.
    pub kubernetes_version: Option<String>,
    /// The fingerprint of the key that signed the bundle, if it is signed.
    pub signed_by: Option<String>,
    /// The app's resource and hook files packed, as paths in the bundle.
    pub resource_files: Vec<String>,
}

/// One image in the summary.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ImageSummary {
    /// Full reference.
    pub reference: String,
    /// Pinned digest.
    pub digest: String,
    /// Bytes of its blobs.
    pub size: u64,
    /// Where it came from.
    pub source: String,
}

/// The manifest `path` names: the file, or `app.yaml` in the directory.
pub fn manifest_path(path: &Path) -> Result<PathBuf, BuildError> {
    if !path.is_dir() {
        return Ok(path.to_path_buf());
    }
    let inside = path.join("app.yaml");
    if inside.is_file() {
        Ok(inside)
    } else {
        Err(BuildError::input(
            format!("{} is a directory with no app.yaml in it", path.display()),
            "give the app's manifest file (tele build path/to/app.yaml)",
        ))
    }
}

/// The bundle's top directory name: `<name>-<version>`.
pub fn top_dir(m: &Manifest) -> String {
    format!("{}-{}", m.metadata.name, m.metadata.version)
}

/// Default output file name for a manifest.
pub fn default_output(m: &Manifest, compression: Compression) -> PathBuf {
    let ext = match compression {
        Compression::None => "tar",
        Compression::Zstd => "tar.zst",
        Compression::Gzip => "tar.gz",
    };
    PathBuf::from(format!("{}.{ext}", top_dir(m)))
}

/// Builds the bundle.
pub fn build(opts: &BuildOptions, reporter: &dyn Reporter) -> Result<BuildSummary, BuildError> {
    let manifest = tele_manifests::load_manifest(&manifest_path(&opts.manifest)?)?;
    let set = tele_manifests::discover_images(&manifest)?;
    for w in &set.warnings {
        reporter.note(&format!("warning: {w}"));
    }
    for s in &opts.sources {
        s.check()?;
    }
    if !opts.installer.is_file() {
        return Err(BuildError::input(
            format!(
                "installer binary {} does not exist",
                opts.installer.display()
            ),
            "give an existing tele binary with --installer PATH",
        ));
    }
    if crate::elf::linkage(&opts.installer) != "static" {
        reporter.note(&format!(
            "warning: the installer {} is not statically linked; it will only run where a compatible C library exists\n  hint: build tele for x86_64-unknown-linux-musl and pass it with --installer",
            opts.installer.display()
        ));
    }
    // A bad key fails the build before any work.
    let signer = opts
        .sign_key
        .as_deref()
        .map(|path| {
            read_key_file(path)
                .and_then(|pem| SigningKey::from_pem(&pem))
                .map_err(|e| {
                    BuildError::input(
                        format!("--sign-key {}: {e}", path.display()),
                        "give the private key that `tele keygen` wrote (NAME.key)",
                    )
                })
        })
        .transpose()?;
    let store = BlobStore::open(&opts.cache_dir).map_err(|e| BuildError::io(&opts.cache_dir, e))?;
    let kube_runtime = runtime_path(&manifest, &opts.runtime, &opts.cache_dir)?
        .map(|p| Runtime::load(&p, &opts.cache_dir))
        .transpose()?;
    let monitoring = monitoring_options(&manifest, opts.monitoring)?;
    let mut sources = opts.sources.clone();
    let mut references: BTreeSet<ImageRef> = set.images.keys().cloned().collect();
    if let Some(rt) = &kube_runtime {
        // System images come from the runtime's own layout, before any other source.
        let (layout, refs) = rt.images();
        sources.insert(0, LocalSource::OciLayout(layout));
        references.extend(refs);
    }
    if let Some(mon) = &monitoring {
        for image in tele_assets::monitoring::images(mon) {
            references.insert(image.parse().map_err(|e| {
                BuildError::input(
                    format!("monitoring image `{image}`: {e}"),
                    "fix extensions.monitoring.images in the manifest",
                )
            })?);
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| BuildError::io("tokio runtime", e))?;
    let registries = Registries::new(
        &references
            .iter()
            .map(|r| r.registry().to_string())
            .collect(),
        &opts.insecure_registries,
    );
    let jobs = opts.jobs.max(1);

    let images: Vec<ResolvedImage> = runtime.block_on(resolve_all(
        &references,
        &sources,
        opts,
        &registries,
        &store,
        reporter,
        jobs,
    ))?;
    let (fetched, fetched_bytes, cached) =
        runtime.block_on(fetch_all(&images, &registries, &store, reporter, jobs))?;
    drop(runtime);
    check_platforms(&images, &store)?;

    let output = opts
        .output
        .clone()
        .unwrap_or_else(|| default_output(&manifest, opts.compression));
    let top = top_dir(&manifest);
    let mut meta = bundle_meta(&manifest, &images, &store, opts)?;
    let mut files = bundle_files(&manifest, &set, &images, opts)?;
    let resource_files: Vec<String> = files
        .iter()
        .filter(|f| f.path.starts_with("resources/"))
        .map(|f| f.path.clone())
        .collect();
    if let Some(rt) = &kube_runtime {
        meta.runtime = Some(RuntimeInfo {
            name: rt.meta.name.clone(),
            kubernetes_version: rt.meta.kubernetes_version.clone(),
            components: rt
                .meta
                .components
                .iter()
                .map(|c| ComponentInfo {
                    name: c.name.clone(),
                    version: c.version.clone(),
                })
                .collect(),
            patches: rt.meta.patches.clone(),
        });
        let runtime_files = if opts.pack_runtime {
            rt.packed_files(&opts.cache_dir)?
        } else {
            rt.files()
        };
        for f in runtime_files {
            files.push(BundleFile {
                path: f.bundle_path,
                content: Content::File(f.source),
                mode: f.mode,
            });
        }
    }
    if let Some(mon) = &monitoring {
        meta.monitoring = Some(
            tele_assets::monitoring::COMPONENTS
                .iter()
                .filter(|c| mon.components.get(**c).copied().unwrap_or(true))
                .map(|c| c.to_string())
                .collect(),
        );
        for (path, content) in tele_assets::monitoring::render(mon) {
            let pinned = pin_monitoring(&path, &content, &images)?;
            files.push(BundleFile {
                path: format!("monitoring/{path}"),
                content: Content::Bytes(pinned.into_bytes()),
                mode: 0o644,
            });
        }
    }
    let bundle_bytes = write_bundle(
        &output,
        opts.compression,
        opts.mtime,
        &top,
        &files,
        &mut meta,
        &store,
        signer.as_ref(),
        reporter,
    )?;

    Ok(BuildSummary {
        name: meta.name.clone(),
        version: meta.version.clone(),
        output,
        bundle_bytes,
        images: images
            .iter()
            .map(|i| ImageSummary {
                reference: i.reference.to_string(),
                digest: i.top.digest.to_string(),
                size: i.size(),
                source: i.origin.to_string(),
            })
            .collect(),
        blobs: meta.blobs.len(),
        blob_bytes: meta.unique_blob_bytes(),
        bytes_saved_by_sharing: meta
            .bytes_without_sharing()
            .saturating_sub(meta.unique_blob_bytes()),
        blobs_fetched: fetched,
        bytes_fetched: fetched_bytes,
        blobs_cached: cached,
        kubernetes_version: kube_runtime.map(|r| r.meta.kubernetes_version),
        signed_by: signer.map(|k| k.public_key().fingerprint()),
        resource_files,
    })
}

/// The monitoring stack's options from the manifest, or None when it is off.
fn monitoring_options(
    manifest: &Manifest,
    wanted: bool,
) -> Result<Option<tele_assets::MonitoringOptions>, BuildError> {
    if !wanted {
        return Ok(None);
    }
    let mon =
        tele_assets::MonitoringOptions::from_extensions(&manifest.extensions).map_err(|e| {
            BuildError::input(
                format!("{}: {e}", manifest.path.display()),
                "see docs/monitoring.md for extensions.monitoring (disabled, images, components)",
            )
        })?;
    Ok((!mon.disabled).then_some(mon))
}

/// The runtime chosen by `--runtime`, the manifest, or the cache.
fn runtime_path(
    manifest: &Manifest,
    choice: &RuntimeChoice,
    cache_dir: &Path,
) -> Result<Option<PathBuf>, BuildError> {
    let from_manifest = manifest
        .system_options
        .as_ref()
        .and_then(|s| s.runtime.as_ref());
    let path = match choice {
        RuntimeChoice::None => return Ok(None),
        RuntimeChoice::Path(p) => p.clone(),
        RuntimeChoice::Default => match from_manifest.and_then(|r| r.path.as_ref()) {
            Some(p) => manifest.dir.join(p),
            None => {
                let version = from_manifest.and_then(|r| r.version.as_deref());
                Runtime::default_path(cache_dir, version).ok_or_else(|| {
                    BuildError::input(
                        format!(
                            "no Kubernetes runtime{} in {}",
                            version.map(|v| format!(" {v}")).unwrap_or_default(),
                            cache_dir.join("runtime").display()
                        ),
                        "make one with scripts/build-runtime, give one with --runtime PATH, or pass --no-runtime for an app-only bundle",
                    )
                })?
            }
        },
    };
    Ok(Some(path))
}

/// Why a build packs an image that the app's resources do not name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SystemImage {
    /// The Kubernetes runtime's own image (the pause container).
    Runtime,
    /// An image of the monitoring stack.
    Monitoring,
}

/// The images a build packs beyond the app's own: the runtime's (from its
/// runtime.json, without checking its files) and the monitoring stack's.
pub fn system_images(
    manifest: &Manifest,
    runtime: &RuntimeChoice,
    monitoring: bool,
    cache_dir: &Path,
) -> Result<Vec<(ImageRef, SystemImage)>, BuildError> {
    let mut out = Vec::new();
    if let Some(path) = runtime_path(manifest, runtime, cache_dir)? {
        for r in Runtime::image_refs(&path, cache_dir)? {
            out.push((r, SystemImage::Runtime));
        }
    }
    if let Some(mon) = monitoring_options(manifest, monitoring)? {
        for image in tele_assets::monitoring::images(&mon) {
            let r = image.parse().map_err(|e| {
                BuildError::input(
                    format!("monitoring image `{image}`: {e}"),
                    "fix extensions.monitoring.images in the manifest",
                )
            })?;
            out.push((r, SystemImage::Monitoring));
        }
    }
    Ok(out)
}

async fn resolve_one(
    r: &ImageRef,
    sources: &[LocalSource],
    opts: &BuildOptions,
    registries: &Registries,
    store: &BlobStore,
) -> Result<ResolvedImage, BuildError> {
    for source in sources {
        let found = tokio::task::block_in_place(|| source.resolve(r, &opts.platform, store))?;
        if let Some(image) = found {
            return Ok(image);
        }
    }
    registries.resolve(r, &opts.platform, store).await
}

async fn resolve_all(
    references: &BTreeSet<ImageRef>,
    sources: &[LocalSource],
    opts: &BuildOptions,
    registries: &Registries,
    store: &BlobStore,
    reporter: &dyn Reporter,
    jobs: usize,
) -> Result<Vec<ResolvedImage>, BuildError> {
    reporter.start(Stage::Resolve, references.len() as u64);
    let mut images: Vec<ResolvedImage> = stream::iter(references)
        .map(|r| async move {
            let image = resolve_one(r, sources, opts, registries, store).await?;
            reporter.resolved(&image.reference, &image.top.digest, &image.origin);
            reporter.advance(Stage::Resolve, 1);
            Ok::<_, BuildError>(image)
        })
        .buffer_unordered(jobs)
        .try_collect()
        .await?;
    images.sort_by(|a, b| a.reference.cmp(&b.reference));
    reporter.finish(Stage::Resolve);
    Ok(images)
}

async fn fetch_all(
    images: &[ResolvedImage],
    registries: &Registries,
    store: &BlobStore,
    reporter: &dyn Reporter,
    jobs: usize,
) -> Result<(usize, u64, usize), BuildError> {
    let mut need: BTreeMap<&crate::digest::Digest, (&Blob, &ResolvedImage)> = BTreeMap::new();
    let mut all = BTreeSet::new();
    for image in images {
        for blob in &image.content {
            all.insert(&blob.digest);
            if !store.has(&blob.digest, blob.size) {
                need.entry(&blob.digest).or_insert((blob, image));
            }
        }
    }
    let cached = all.len() - need.len();
    if need.is_empty() {
        reporter.note(&format!(
            "all {} blobs are already in the cache: nothing to fetch",
            all.len()
        ));
        return Ok((0, 0, cached));
    }
    let bytes: u64 = need.values().map(|(b, _)| b.size).sum();
    reporter.start(Stage::Fetch, bytes);
    let count = need.len();
    stream::iter(need.into_values())
        .map(|(blob, image)| async move {
            match &image.origin {
                Origin::Registry => {
                    registries
                        .fetch_blob(&image.reference, blob, store, &|n| reporter.advance(Stage::Fetch, n))
                        .await
                }
                Origin::OciLayout(layout) => tokio::task::block_in_place(|| {
                    local_source::copy_layout_blob(layout, blob, store)?;
                    reporter.advance(Stage::Fetch, blob.size);
                    Ok(())
                }),
                Origin::DockerArchive(path) => Err(BuildError::input(
                    format!("blob {} of {} vanished from the cache while building from docker-archive:{}", blob.digest, image.reference, path.display()),
                    "run the build again",
                )),
            }
        })
        .buffer_unordered(jobs)
        .try_collect::<Vec<()>>()
        .await?;
    reporter.finish(Stage::Fetch);
    Ok((count, bytes, cached))
}

/// Every image is for the platform asked for: an image of one platform
/// (no index to choose from) says which in its config, and a bundle for
/// another platform would fail only at the customer.
fn check_platforms(images: &[ResolvedImage], store: &BlobStore) -> Result<(), BuildError> {
    use std::io::Read as _;
    for image in images {
        let Some(config) = image.content.first() else {
            continue;
        };
        let path = store.path(&config.digest);
        let mut bytes = Vec::new();
        let read = std::fs::File::open(&path).and_then(|f| f.take(4 << 20).read_to_end(&mut bytes));
        if read.is_err() {
            continue;
        }
        let Ok(doc) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
            continue;
        };
        let (Some(os), Some(arch)) = (doc["os"].as_str(), doc["architecture"].as_str()) else {
            continue;
        };
        if os != image.platform.os || arch != image.platform.architecture {
            return Err(BuildError::input(
                format!(
                    "{} is an image for {os}/{arch}, not for {}",
                    image.reference, image.platform
                ),
                format!(
                    "use an image (or a multi-platform index) with {} in it, or build for {os}/{arch} with --platform",
                    image.platform
                ),
            ));
        }
    }
    Ok(())
}

fn bundle_meta(
    manifest: &Manifest,
    images: &[ResolvedImage],
    store: &BlobStore,
    opts: &BuildOptions,
) -> Result<BundleMeta, BuildError> {
    let mut blobs = BTreeSet::new();
    for image in images {
        for b in image.blobs() {
            blobs.insert(BlobInfo {
                digest: b.digest.clone(),
                size: b.size,
            });
        }
    }
    for b in &blobs {
        if !store.has(&b.digest, b.size) {
            return Err(BuildError::input(
                format!(
                    "blob {} is missing from the cache {}",
                    b.digest,
                    opts.cache_dir.display()
                ),
                "another process removed it while building; run the build again",
            ));
        }
    }
    Ok(BundleMeta {
        api_version: API_VERSION.into(),
        name: manifest.metadata.name.clone(),
        version: manifest.metadata.version.to_string(),
        description: manifest.metadata.description.clone(),
        tele_version: env!("CARGO_PKG_VERSION").into(),
        installer: InstallerInfo {
            linkage: crate::elf::linkage(&opts.installer).into(),
        },
        images: images
            .iter()
            .map(|i| ImageInfo {
                reference: i.reference.to_string(),
                digest: i.top.digest.clone(),
                media_type: i.top.media_type.clone(),
                platform: i.platform.clone(),
                size: i.size(),
                blobs: i.blobs().map(|b| b.digest.clone()).collect(),
            })
            .collect(),
        blobs: blobs.into_iter().collect(),
        files: vec![],
        runtime: None,
        monitoring: None,
    })
}

/// The OCI layout's index.json: one entry per reference, named both ways.
pub fn layout_index(images: &[ResolvedImage]) -> Vec<u8> {
    let manifests = images
        .iter()
        .map(|i| {
            // an index spans platforms; a manifest is one
            let platform = (!media::is_index(&i.top.media_type)).then(|| i.platform.clone());
            Descriptor::named(
                &i.top.media_type,
                i.top.digest.clone(),
                i.top.size,
                platform,
                &i.reference.to_string(),
            )
        })
        .collect();
    Index::new(manifests).to_json()
}

/// The manifest text with each of its own image fields pinned by digest.
pub fn pinned_manifest(manifest: &Manifest, set: &ImageSet, images: &[ResolvedImage]) -> String {
    pin_images(&manifest.path, &manifest.text, set, images)
}

/// `text` (the file `path`) with each image field the scan found in it
/// pinned by digest (`REPO:TAG@sha256:...`, the tag kept for readability):
/// what the node runs is then exactly what the bundle holds and its
/// signature covers, whatever a registry's tags say.
pub fn pin_images(path: &Path, text: &str, set: &ImageSet, images: &[ResolvedImage]) -> String {
    let digests: BTreeMap<&ImageRef, &ResolvedImage> =
        images.iter().map(|i| (&i.reference, i)).collect();
    let mut edits = Vec::new();
    for (r, uses) in &set.images {
        let Some(image) = digests.get(r) else {
            continue;
        };
        let pinned = r.with_digest(&image.top.digest.to_string()).to_string();
        for u in uses {
            if u.origin.location.file != path {
                continue;
            }
            let span = u.origin.span.clone();
            let Some(raw) = text.get(span.clone()) else {
                continue;
            };
            let bare = raw.trim_matches(|c| c == '"' || c == '\'');
            // Only rewrite a span that really holds this image's reference.
            if bare.parse::<ImageRef>().is_ok_and(|p| p == *r) {
                edits.push((span, pinned.clone()));
            }
        }
    }
    edits.sort_by_key(|(s, _)| std::cmp::Reverse(s.start));
    edits.dedup_by_key(|(s, _)| s.start);
    let mut text = text.to_string();
    for (span, pinned) in edits {
        text.replace_range(span, &pinned);
    }
    text
}

/// The monitoring stack's file `text` (rendered by tele, one `image: REF`
/// per container) with each image pinned by digest; an error names an
/// image left unpinned, which would be a defect of the stack's templates.
fn pin_monitoring(path: &str, text: &str, images: &[ResolvedImage]) -> Result<String, BuildError> {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches('\n');
        let Some((indent, value)) = body.split_once("image: ") else {
            out.push_str(line);
            continue;
        };
        let value = value.trim().trim_matches('"');
        let image = value
            .parse::<ImageRef>()
            .ok()
            .and_then(|r| images.iter().find(|i| i.reference == r))
            .ok_or_else(|| {
                BuildError::input(
                    format!("monitoring/{path}: image `{value}` is not among the bundle's images"),
                    "this is a defect of tele's monitoring stack; please report it",
                )
            })?;
        let pinned = image
            .reference
            .with_digest(&image.top.digest.to_string())
            .to_string();
        out.push_str(&format!("{indent}image: {pinned}"));
        if line.ends_with('\n') {
            out.push('\n');
        }
    }
    Ok(out)
}

fn bundle_files(
    manifest: &Manifest,
    set: &ImageSet,
    images: &[ResolvedImage],
    opts: &BuildOptions,
) -> Result<Vec<BundleFile>, BuildError> {
    let mut files = vec![
        BundleFile {
            path: "app.yaml".into(),
            content: Content::Bytes(pinned_manifest(manifest, set, images).into_bytes()),
            mode: 0o644,
        },
        BundleFile {
            path: "install".into(),
            content: Content::File(opts.installer.clone()),
            mode: 0o755,
        },
        BundleFile {
            path: format!("{IMAGES_DIR}/{}", oci_layout::OCI_LAYOUT_FILE),
            content: Content::Bytes(oci_layout::OCI_LAYOUT_CONTENT.to_vec()),
            mode: 0o644,
        },
        BundleFile {
            path: format!("{IMAGES_DIR}/{}", oci_layout::INDEX_FILE),
            content: Content::Bytes(layout_index(images)),
            mode: 0o644,
        },
    ];
    let resources: BTreeSet<&PathBuf> = set
        .resource_files
        .iter()
        .chain(set.hook_files.iter())
        .collect();
    for rel in resources {
        let src = manifest.dir.join(rel);
        let mode = resource_mode(&src)?;
        let rel = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/");
        let text = std::fs::read_to_string(&src).map_err(|e| BuildError::io(&src, e))?;
        let pinned = pin_images(&src, &text, set, images);
        files.push(BundleFile {
            path: format!("resources/{rel}"),
            content: if pinned == text {
                Content::File(src)
            } else {
                Content::Bytes(pinned.into_bytes())
            },
            mode,
        });
    }
    Ok(files)
}

fn resource_mode(p: &Path) -> Result<u32, BuildError> {
    use std::os::unix::fs::PermissionsExt;
    let m = std::fs::metadata(p).map_err(|e| BuildError::io(p, e))?;
    Ok(if m.permissions().mode() & 0o111 != 0 {
        0o755
    } else {
        0o644
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// The monitoring stack tele packs is read by the same schema as a
    /// vendor's resources: every object fits Kubernetes 1.20.
    #[test]
    fn the_monitoring_stack_fits_the_kubernetes_schema() {
        let files = tele_assets::monitoring::render(&tele_assets::MonitoringOptions::default());
        assert!(files.len() > 3, "{files:?}");
        for (path, text) in files {
            let problems = tele_manifests::check_objects(Path::new(&path), &text);
            let shown: Vec<String> = problems.iter().map(|d| d.to_string()).collect();
            assert!(shown.is_empty(), "{path}:\n{}", shown.join("\n"));
        }
    }
}
