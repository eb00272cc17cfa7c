//! `tele inspect`

use std::process::ExitCode;

use crate::args::BundleArg;
use crate::output::{human_bytes, untrusted as t, Printer};

pub fn run(a: BundleArg, p: &Printer) -> anyhow::Result<ExitCode> {
    let i = tele_bundle::inspect::inspect(&a.bundle)?;
    let m = &i.meta;
    p.out(format!("name:        {}", t(&m.name)));
    p.out(format!("version:     {}", t(&m.version)));
    if let Some(d) = &m.description {
        p.out(format!("description: {}", t(d)));
    }
    p.out(format!("built by:    tele {}", t(&m.tele_version)));
    p.out(format!("installer:   {} binary", t(&m.installer.linkage)));
    p.out(format!("compression: {:?}", i.compression).to_lowercase());
    match &m.runtime {
        Some(rt) => {
            p.out(format!(
                "kubernetes:  {} ({})",
                t(&rt.kubernetes_version),
                t(&rt.name)
            ));
            for c in &rt.components {
                p.out(format!("  {:<26} {}", t(&c.name), t(&c.version)));
            }
            for patch in &rt.patches {
                p.out(format!(
                    "  with fix {}: {}",
                    t(&patch.name),
                    t(&patch.summary)
                ));
            }
        }
        None => p.out("kubernetes:  none (app-only bundle)"),
    }
    match &m.monitoring {
        Some(c) => p.out(format!("monitoring:  {}", t(&c.join(", ")))),
        None => p.out("monitoring:  none"),
    }
    p.out(format!("images:      {}", m.images.len()));
    for img in &m.images {
        p.out(format!(
            "  {}\n    {}  {}  {}",
            t(&img.reference.to_string()),
            img.digest,
            t(&img.platform.to_string()),
            human_bytes(img.size)
        ));
    }
    p.out(format!(
        "unique blobs: {} ({})",
        i.unique_blobs,
        human_bytes(i.unique_blob_bytes)
    ));
    match i.bytes_saved_by_sharing {
        Some(n) => p.out(format!("saved by sharing: {}", human_bytes(n))),
        None => p.out("saved by sharing: unknown (the image sizes in bundle.json add up to more than any disk holds)"),
    }
    p.detail(format!("files: {}", m.files.len()));
    for f in &m.files {
        p.detail(format!(
            "  {}  {}  {}",
            t(&f.sha256),
            human_bytes(f.size),
            t(&f.path)
        ));
    }
    p.json(&i);
    Ok(ExitCode::SUCCESS)
}
