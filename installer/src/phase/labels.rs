//! `/nodes/<node>/labels`: once a joined node is Ready, the master puts its
//! profile's labels and taints on it (a node may not label itself with a
//! role), and the join token is forgotten.

use super::{Phase, PhaseContext};
use crate::join::{client, JoinedRequest};

/// Has the master label a joined node.
pub struct Labels {
    /// The node.
    pub node: String,
}

impl Phase for Labels {
    fn id(&self) -> String {
        format!("/nodes/{}/labels", self.node)
    }
    fn description(&self) -> String {
        "the node's role, labels and taints, set by the master".into()
    }
    fn requires(&self) -> Vec<String> {
        vec![format!("/nodes/{}/wait", self.node)]
    }
    fn execute(&self, ctx: &PhaseContext) -> anyhow::Result<()> {
        let joined = ctx.joined()?;
        let token = super::join::read_token(ctx)?;
        let ca = std::fs::read_to_string(ctx.state.pki().ca_cert())?;
        client::joined(
            &joined.join_addr,
            &ca,
            &JoinedRequest {
                token: token.credential(),
                node_name: self.node.clone(),
                role: ctx.cfg.profile.clone(),
            },
        )?;
        // The token was for joining; the node needs it no more.
        let _ = std::fs::remove_file(ctx.state.join_token_file());
        Ok(())
    }
    fn check(&self, ctx: &PhaseContext) -> anyhow::Result<bool> {
        let labels = ctx
            .kubectl()?
            .node_field(&self.node, "{.metadata.labels}")
            .unwrap_or_default();
        let role = match ctx.cfg.role {
            crate::node::NodeRole::Master => super::system::ROLE_LABELS[1],
            crate::node::NodeRole::Worker => "node-role.kubernetes.io/worker",
        };
        Ok(labels.contains(role))
    }
}
