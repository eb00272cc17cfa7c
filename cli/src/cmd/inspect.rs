//! `tele inspect`

use std::process::ExitCode;

use crate::args::BundleArg;
use crate::output::{human_bytes, Printer};

pub fn run(a: BundleArg, p: &Printer) -> anyhow::Result<ExitCode> {
    let i = tele_bundle::inspect::inspect(&a.bundle)?;
    let m = &i.meta;
    p.out(format!("name:        {}", m.name));
    p.out(format!("version:     {}", m.version));
    if let Some(d) = &m.description {
        p.out(format!("description: {d}"));
    }
    p.out(format!("built by:    tele {}", m.tele_version));
    p.out(format!("installer:   {} binary", m.installer.linkage));
    p.out(format!("compression: {:?}", i.compression).to_lowercase());
    match &m.runtime {
        Some(rt) => {
            p.out(format!(
                "kubernetes:  {} ({})",
                rt.kubernetes_version, rt.name
            ));
            for c in &rt.components {
                p.out(format!("  {:<26} {}", c.name, c.version));
            }
        }
        None => p.out("kubernetes:  none (app-only bundle)"),
    }
    match &m.monitoring {
        Some(c) => p.out(format!("monitoring:  {}", c.join(", "))),
        None => p.out("monitoring:  none"),
    }
    p.out(format!("images:      {}", m.images.len()));
    for img in &m.images {
        p.out(format!(
            "  {}\n    {}  {}  {}",
            img.reference,
            img.digest,
            img.platform,
            human_bytes(img.size)
        ));
    }
    p.out(format!(
        "unique blobs: {} ({})",
        i.unique_blobs,
        human_bytes(i.unique_blob_bytes)
    ));
    p.out(format!(
        "saved by sharing: {}",
        human_bytes(i.bytes_saved_by_sharing)
    ));
    p.detail(format!("files: {}", m.files.len()));
    for f in &m.files {
        p.detail(format!(
            "  {}  {}  {}",
            f.sha256,
            human_bytes(f.size),
            f.path
        ));
    }
    p.json(&i);
    Ok(ExitCode::SUCCESS)
}
