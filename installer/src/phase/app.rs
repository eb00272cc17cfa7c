//! `/app`: applies the app's resources (namespaces and CRDs first) and
//! waits until its workloads are ready.

use std::path::PathBuf;
use std::time::Duration;

use super::{Phase, PhaseContext};
use crate::durable::write_durably;

/// Applies the app and waits for it.
pub struct App;

const FILES: [&str; 2] = ["0-namespaces-crds.yaml", "1-resources.yaml"];

impl Phase for App {
    fn id(&self) -> String {
        "/app".into()
    }
    fn description(&self) -> String {
        "apply the app's resources and wait for them".into()
    }
    fn requires(&self) -> Vec<String> {
        vec!["/system".into()]
    }
    fn execute(&self, ctx: &PhaseContext) -> anyhow::Result<()> {
        let k = ctx.kubectl()?;
        let resources = ctx.bundle.join("resources");
        let hook_files: Vec<PathBuf> = ctx
            .manifest
            .hooks
            .files()
            .map(|p| resources.join(p))
            .collect();
        let mut first = Vec::new();
        let mut rest = Vec::new();
        // A bundle of images alone has no resources directory.
        let walk = resources
            .is_dir()
            .then(|| walkdir::WalkDir::new(&resources).sort_by_file_name());
        for entry in walk.into_iter().flatten() {
            let entry = entry?;
            if !entry.file_type().is_file() || hook_files.iter().any(|h| h == entry.path()) {
                continue;
            }
            let text = std::fs::read_to_string(entry.path())?;
            let (f, r) = crate::kube::split_by_priority(&text);
            first.extend(f);
            rest.extend(r);
        }
        let work = ctx.state.app_work_dir();
        let timeout = Duration::from_secs(ctx.cfg.app_timeout_secs);
        let mut applied = Vec::new();
        for (name, docs) in FILES.iter().zip([&first, &rest]) {
            let file = work.join(name);
            if docs.is_empty() {
                let _ = std::fs::remove_file(&file);
                continue;
            }
            write_durably(&file, docs.join("---\n").as_bytes(), 0o600)?;
            applied.extend(k.apply(&file)?);
            if name.starts_with('0') {
                let _ = k.run(&[
                    "wait",
                    "--for=condition=established",
                    "crd",
                    "--all",
                    "--timeout=60s",
                ]);
            }
        }
        for obj in &applied {
            k.wait_ready(obj, timeout)?;
        }
        ctx.reporter
            .note(&format!("{} resources applied and ready", applied.len()));
        Ok(())
    }
    fn check(&self, ctx: &PhaseContext) -> anyhow::Result<bool> {
        // Done when what was applied is all there and ready.
        let k = ctx.kubectl()?;
        let work = ctx.state.app_work_dir();
        let files: Vec<PathBuf> = FILES
            .iter()
            .map(|f| work.join(f))
            .filter(|f| f.is_file())
            .collect();
        if files.is_empty() {
            return Ok(false);
        }
        for f in files {
            let listed = k.run(&["get", "-f", &f.display().to_string(), "-o", "json"]);
            let Ok(json) = listed else { return Ok(false) };
            for obj in crate::kube::parse_applied(&json) {
                if k.wait_ready(&obj, Duration::from_secs(1)).is_err() {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }
}
