//! `/hooks/<name>`: runs one of the manifest's hook Jobs to completion.

use std::time::Duration;

use super::{Phase, PhaseContext};
use crate::durable::write_durably;

/// Runs one hook.
pub struct Hook {
    /// The hook's name in the manifest.
    pub name: String,
}

impl Hook {
    fn job_file(&self, ctx: &PhaseContext) -> anyhow::Result<std::path::PathBuf> {
        let hook = ctx
            .manifest
            .hooks
            .get(&self.name)
            .ok_or_else(|| anyhow::anyhow!("the manifest has no {} hook", self.name))?;
        Ok(match &hook.job {
            tele_manifests::HookJob::Inline(text) => {
                let f = ctx
                    .state
                    .app_work_dir()
                    .join(format!("hook-{}.yaml", self.name));
                write_durably(&f, text.as_bytes(), 0o600)?;
                f
            }
            tele_manifests::HookJob::File(p) => ctx.bundle.join("resources").join(p),
        })
    }
}

impl Phase for Hook {
    fn id(&self) -> String {
        format!("/hooks/{}", self.name)
    }
    fn description(&self) -> String {
        format!("the {} hook", self.name)
    }
    fn requires(&self) -> Vec<String> {
        vec!["/app".into()]
    }
    fn execute(&self, ctx: &PhaseContext) -> anyhow::Result<()> {
        ctx.kubectl()?.run_hook(
            &self.name,
            &self.job_file(ctx)?,
            Duration::from_secs(ctx.cfg.app_timeout_secs),
        )
    }
    fn check(&self, ctx: &PhaseContext) -> anyhow::Result<bool> {
        // Done when its Job exists and succeeded.
        let k = ctx.kubectl()?;
        let file = self.job_file(ctx)?.display().to_string();
        let Ok(out) = k.run(&["get", "-f", &file, "-o", "jsonpath={.status.succeeded}"]) else {
            return Ok(false);
        };
        Ok(out.trim().parse::<u32>().unwrap_or(0) > 0)
    }
}
