//! `/monitoring`: the monitoring stack, its database, retention policies,
//! rollups and alerts; then the health checker is told where to write.

use super::{Phase, PhaseContext};

/// Installs the monitoring stack.
pub struct Monitoring;

impl Phase for Monitoring {
    fn id(&self) -> String {
        "/monitoring".into()
    }
    fn description(&self) -> String {
        "the monitoring stack, its database and alerts".into()
    }
    fn requires(&self) -> Vec<String> {
        vec!["/system".into()]
    }
    fn execute(&self, ctx: &PhaseContext) -> anyhow::Result<()> {
        let summary = crate::monitoring_phase::install_monitoring(
            ctx.cfg,
            ctx.state,
            ctx.bundle,
            &ctx.kubectl()?,
        )?;
        ctx.reporter.note(&summary);
        Ok(())
    }
    fn check(&self, ctx: &PhaseContext) -> anyhow::Result<bool> {
        // The target file is written last, once InfluxDB answered.
        Ok(ctx.state.monitoring_target().is_file())
    }
}
