//! `tele build`

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use tele_bundler::build::{build, BuildOptions};
use tele_bundler::image::Platform;
use tele_bundler::local_source::LocalSource;
use tele_bundler::tar_writer::Compression;
use tele_bundler::BuildError;

use crate::args::{BuildArgs, CompressionArg};
use crate::output::{human_bytes, Printer};

/// The default blob cache: `$XDG_CACHE_HOME/tele`, else `~/.cache/tele`.
pub fn default_cache_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|x| !x.is_empty()) {
        return PathBuf::from(x).join("tele");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"));
    home.join(".cache").join("tele")
}

/// mtime for every entry: `SOURCE_DATE_EPOCH` when set, else 0.
pub fn source_date_epoch() -> Result<u64, BuildError> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.is_empty() => v.trim().parse().map_err(|_| {
            BuildError::input(
                format!("SOURCE_DATE_EPOCH={v} is not a number of seconds"),
                "set it to a Unix time such as $(git log -1 --format=%ct), or unset it",
            )
        }),
        _ => Ok(0),
    }
}

pub fn run(a: BuildArgs, p: &Printer) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let sources = a
        .image_sources
        .iter()
        .map(|s| {
            s.parse::<LocalSource>()
                .map_err(|e| BuildError::input(e, ""))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let platform = Platform::parse(&a.platform).map_err(|e| BuildError::input(e, ""))?;
    let installer = match a.installer {
        Some(i) => i,
        None => std::env::current_exe()
            .context("cannot find the running tele binary; give --installer PATH")?,
    };
    let opts = BuildOptions {
        manifest: a.manifest,
        output: a.output,
        cache_dir: a.cache_dir.unwrap_or_else(default_cache_dir),
        sources,
        insecure_registries: a.insecure_registries,
        platform,
        jobs: a.jobs,
        compression: match a.compression {
            CompressionArg::None => Compression::None,
            CompressionArg::Zstd => Compression::Zstd,
            CompressionArg::Gzip => Compression::Gzip,
        },
        installer,
        mtime: source_date_epoch()?,
        monitoring: !a.parts.no_monitoring,
        pack_runtime: a.runtime_compression == crate::args::RuntimeCompressionArg::Zstd,
        sign_key: a.sign_key,
        runtime: a.parts.runtime_choice(),
    };
    let reporter = p.reporter();
    let s = build(&opts, &reporter)?;
    let secs = started.elapsed().as_secs_f64();
    p.out(format!(
        "built {} ({}) in {secs:.1}s",
        s.output.display(),
        human_bytes(s.bundle_bytes)
    ));
    p.out(format!(
        "  {} images, {} unique blobs ({}), {} saved by sharing layers",
        s.images.len(),
        s.blobs,
        human_bytes(s.blob_bytes),
        human_bytes(s.bytes_saved_by_sharing)
    ));
    if let Some(k) = &s.kubernetes_version {
        p.out(format!("  Kubernetes {k} runtime included"));
    }
    if s.resource_files.is_empty() {
        p.out("  no resource files (only images)");
    } else {
        p.out(format!("  packs {}", s.resource_files.join(", ")));
    }
    match &s.signed_by {
        Some(key) => p.out(format!("  signed by {key}")),
        None => p.out("  not signed (sign it with --sign-key KEY; `tele keygen` makes a key)"),
    }
    if s.blobs_fetched == 0 {
        p.out(format!(
            "  fetched nothing: all {} blobs came from the cache",
            s.blobs_cached
        ));
    } else {
        p.out(format!(
            "  fetched {} blobs ({}), {} from the cache",
            s.blobs_fetched,
            human_bytes(s.bytes_fetched),
            s.blobs_cached
        ));
    }
    for i in &s.images {
        p.detail(format!(
            "  {}  {}  {}  from {}",
            i.reference,
            i.digest,
            human_bytes(i.size),
            i.source
        ));
    }
    let mut json = serde_json::to_value(&s)?;
    json["ok"] = true.into();
    json["seconds"] = secs.into();
    p.json(&json);
    Ok(ExitCode::SUCCESS)
}
