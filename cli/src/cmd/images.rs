//! `tele images`

use std::process::ExitCode;

use crate::args::ImagesArgs;
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
    p.json(&serde_json::json!({"ok": true, "images": json}));
    Ok(ExitCode::SUCCESS)
}
