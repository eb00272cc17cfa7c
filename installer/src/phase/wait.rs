//! `/wait`: waits for the API server and the node to be Ready, ending early
//! when one of the node's services crashes meanwhile (quoting its log).

use std::time::{Duration, Instant};

use super::{Phase, PhaseContext};
use crate::component;

const LIMIT: Duration = Duration::from_secs(180);

/// Waits for the API server and the node.
pub struct Wait {
    /// The node.
    pub node: String,
    /// A node joining a cluster (it waits for itself, under its own id).
    pub joining: bool,
}

impl Phase for Wait {
    fn id(&self) -> String {
        // A joining node waits for itself only.
        if self.joining {
            format!("/nodes/{}/wait", self.node)
        } else {
            "/wait".into()
        }
    }
    fn description(&self) -> String {
        "wait for the API server and the node".into()
    }
    fn requires(&self) -> Vec<String> {
        vec![format!("/nodes/{}/services", self.node)]
    }
    fn execute(&self, ctx: &PhaseContext) -> anyhow::Result<()> {
        // The services may have stopped since they started (a reboot before
        // --resume under the agent): making sure they run is cheap.
        super::services::ensure_running(ctx)?;
        let k = ctx.kubectl()?;
        let components = component::for_node(ctx.cfg);
        let watch = component::CrashWatch::new(&components, ctx.manager);
        let begun = Instant::now();
        let mut api = false;
        loop {
            if let Some(e) = watch.crashed(ctx.state, ctx.manager) {
                return Err(e.into());
            }
            api = api || k.api_ready();
            if api && k.node_ready(&self.node) {
                return Ok(());
            }
            let what = if api {
                format!("node {} to become Ready", self.node)
            } else {
                "the API server to become ready".to_string()
            };
            if begun.elapsed() > LIMIT {
                anyhow::bail!(
                    "timed out after {} s waiting for {what}; the node's services' logs are in {}",
                    LIMIT.as_secs(),
                    ctx.state.logs_dir().display()
                );
            }
            ctx.reporter.waiting(&what, begun.elapsed(), LIMIT);
            crate::interrupt::check()?;
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    fn check(&self, ctx: &PhaseContext) -> anyhow::Result<bool> {
        let k = ctx.kubectl()?;
        Ok(k.api_ready() && k.node_ready(&self.node))
    }
}
