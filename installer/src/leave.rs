//! Taking a worker out of the cluster. `tele leave`, on the node: the
//! master drains it, the node removes everything it installed, then the
//! master deletes its Node and frees its pod subnet. `tele remove NODE`, on
//! the master, for a node that is gone: drain, delete, forget.

use crate::join::{client, server, LeaveRequest};
use crate::node::NodeConfig;
use crate::state_dir::StateDir;
use crate::uninstall::UninstallReport;

/// What leaving did.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaveReport {
    /// The node.
    pub node: String,
    /// The master it left.
    pub master: String,
    /// The local clean-up.
    pub uninstall: UninstallReport,
}

/// Leaves the cluster the install in `state_dir` joined.
pub fn leave(state_dir: &std::path::Path) -> anyhow::Result<LeaveReport> {
    let state = StateDir::new(state_dir);
    let cfg = NodeConfig::load(&state)?;
    let Some(joined) = cfg.joined.clone() else {
        anyhow::bail!(
            "{} made its own cluster; it joined none\nhint: remove it with `tele uninstall`",
            state.root().display()
        );
    };
    let secret = std::fs::read_to_string(state.leave_secret_file()).map_err(|e| {
        anyhow::anyhow!(
            "this node has no leave secret ({e}): it was never admitted\nhint: remove it with `tele uninstall`"
        )
    })?;
    // Kept in memory: the state directory goes away in between.
    let ca = std::fs::read_to_string(state.pki().ca_cert())?;
    let step = |step: &str| {
        client::leave(
            &joined.join_addr,
            &ca,
            &LeaveRequest {
                node_name: cfg.node_name.clone(),
                leave_secret: secret.trim().to_string(),
                step: step.into(),
            },
        )
        .map_err(|e| {
            let hint = e.hint().unwrap_or_default();
            anyhow::anyhow!("{e}\nhint: {hint}")
        })
    };
    step("drain")?;
    let uninstall = crate::uninstall::uninstall(state_dir)?;
    step("forget").map_err(|e| {
        e.context(format!(
            "this machine is clean, but the master still lists {}; run `tele remove {}` on it",
            cfg.node_name, cfg.node_name
        ))
    })?;
    Ok(LeaveReport {
        node: cfg.node_name,
        master: joined.join_addr,
        uninstall,
    })
}

/// Removes `node` from the cluster of the master in `state_dir`: drains
/// it, deletes its Node and frees its pod subnet. The machine itself is not
/// reached: while its kubelet runs it registers again.
pub fn remove(state_dir: &std::path::Path, node: &str) -> anyhow::Result<()> {
    let state = StateDir::new(state_dir);
    let cfg = NodeConfig::load(&state)?;
    anyhow::ensure!(
        cfg.joined.is_none(),
        "{} is a node that joined a cluster; remove nodes on the master\nhint: to take this node out, run `tele leave` here",
        state.root().display()
    );
    anyhow::ensure!(
        node != cfg.node_name,
        "{node} is this master; removing masters is not supported\nhint: `tele uninstall` removes the whole cluster"
    );
    let admitted = server::admitted_nodes(&state);
    if !admitted.iter().any(|n| n.name == node) {
        let names: Vec<&str> = admitted.iter().map(|n| n.name.as_str()).collect();
        anyhow::bail!(
            "the cluster has no joined node {node}\nhint: the joined nodes are: {}",
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        );
    }
    server::drain(&state, node)?;
    server::forget(&state, node)?;
    Ok(())
}
