//! `tele images`: every image a build packs, and why: the app's (with the
//! file, line and column that names each), the runtime's and the monitoring stack's.

use std::process::ExitCode;

use tele_bundler::build::{system_images, RuntimeChoice, SystemImage};

use crate::args::ImagesArgs;
use crate::cmd::build::default_cache_dir;
use crate::output::Printer;

pub fn run(a: ImagesArgs, p: &Printer) -> anyhow::Result<ExitCode> {
    let manifest =
        tele_manifests::load_manifest(&tele_bundler::build::manifest_path(&a.manifest)?)?;
    let set = tele_manifests::discover_images(&manifest)?;
    for w in &set.warnings {
        p.note(format!("warning: {w}"));
    }
    let cwd = std::env::current_dir().unwrap_or_default();
    let mut json = Vec::new();
    for (image, uses) in &set.images {
        p.out(image.to_string());
        let mut where_ = Vec::new();
        for u in uses {
            let l = &u.origin.location;
            let file = l
                .file
                .strip_prefix(&cwd)
                .unwrap_or(&l.file)
                .display()
                .to_string();
            p.out(format!("    {file}:{}:{}  {}", l.line, l.column, u.context));
            where_.push(serde_json::json!({"file": file, "line": l.line, "column": l.column, "context": u.context}));
        }
        json.push(serde_json::json!({"reference": image.to_string(), "uses": where_}));
    }
    let runtime = a.parts.runtime_choice();
    let cache_dir = a.cache_dir.unwrap_or_else(default_cache_dir);
    let monitoring = !a.parts.no_monitoring;
    let system = match system_images(&manifest, &runtime, monitoring, &cache_dir) {
        // No runtime in the cache yet: the app's images are still worth listing.
        Err(e) if runtime == RuntimeChoice::Default => {
            p.note(format!("warning: {e}; the runtime's images are not listed"));
            system_images(&manifest, &RuntimeChoice::None, monitoring, &cache_dir)?
        }
        r => r?,
    };
    for (image, why) in &system {
        if set.images.contains_key(image) {
            continue;
        }
        let context = match why {
            SystemImage::Runtime => "the Kubernetes runtime (runtime.json)",
            SystemImage::Monitoring => "the monitoring stack (extensions.monitoring)",
        };
        p.out(image.to_string());
        p.out(format!("    {context}"));
        json.push(
            serde_json::json!({"reference": image.to_string(), "uses": [{"context": context}]}),
        );
    }
    p.json(&serde_json::json!({"ok": true, "images": json}));
    Ok(ExitCode::SUCCESS)
}
