//! `/nodes/<node>/services`: starts the node's components in order through
//! its service manager (systemd or the tele agent).

use std::time::Duration;

use super::{Phase, PhaseContext};
use crate::component;

/// How long one component may take to become ready.
pub const COMPONENT_LIMIT: Duration = Duration::from_secs(120);

/// Starts one node's components.
pub struct NodeServices {
    /// The node.
    pub node: String,
}

/// Starts every component of the node (a no-op for those already running
/// with the same settings).
pub fn ensure_running(ctx: &PhaseContext) -> anyhow::Result<()> {
    let node = ctx.node()?;
    let components = component::for_node(ctx.cfg);
    component::start_all(
        &components,
        &node,
        ctx.manager,
        ctx.reporter,
        COMPONENT_LIMIT,
    )?;
    Ok(())
}

impl Phase for NodeServices {
    fn id(&self) -> String {
        format!("/nodes/{}/services", self.node)
    }
    fn description(&self) -> String {
        "start etcd, containerd, the image registry, Kubernetes and the health checker".into()
    }
    fn requires(&self) -> Vec<String> {
        vec![format!("/nodes/{}/runtime", self.node)]
    }
    fn execute(&self, ctx: &PhaseContext) -> anyhow::Result<()> {
        ensure_running(ctx)
    }
    fn check(&self, ctx: &PhaseContext) -> anyhow::Result<bool> {
        let node = ctx.node()?;
        Ok(component::all_ready(
            &component::for_node(ctx.cfg),
            &node,
            ctx.manager,
        ))
    }
}
