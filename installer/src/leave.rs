//! Taking a node out of the cluster. `tele leave`, on the node: the
//! master drains it (a master only when etcd keeps its quorum without it,
//! and then it leaves etcd), the node removes everything it installed, then
//! the master deletes its Node and frees its pod subnet. `tele remove
//! NODE`, on a master: the same, the machine told to clean itself through
//! an annotation on its Node (when it is gone, the cluster's side only).

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
            match e {
                client::JoinError::Refused(r) => {
                    anyhow::anyhow!("the master refused: {}\nhint: {hint}", r.error)
                }
                e => anyhow::anyhow!("{e}\nhint: {hint}"),
            }
        })
    };
    step("drain")?;
    if cfg.role == crate::node::NodeRole::Master {
        step("etcd")?;
    }
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

/// Removes `node` from the cluster of the master in `state_dir`: checks
/// that etcd keeps its quorum without it (when it is a master), drains it,
/// asks the machine to uninstall itself, removes it from etcd, deletes its
/// Node and frees its pod subnet. True when the machine answered that it
/// cleans itself.
pub fn remove(state_dir: &std::path::Path, node: &str) -> anyhow::Result<bool> {
    let state = StateDir::new(state_dir);
    let cfg = NodeConfig::load(&state)?;
    anyhow::ensure!(
        cfg.role == crate::node::NodeRole::Master,
        "{} is a worker; remove nodes on a master\nhint: to take this node out, run `tele leave` here",
        state.root().display()
    );
    anyhow::ensure!(
        node != cfg.node_name,
        "{node} is this master\nhint: run `tele remove {node}` on another master, or `tele leave` here"
    );
    let k = crate::phase::kubectl(&state)?;
    let nodes: Vec<String> = crate::pod_network::nodes(&k)?
        .into_iter()
        .map(|n| n.name)
        .collect();
    let admitted = server::admitted_nodes(&state);
    if !admitted.iter().any(|n| n.name == node) && !nodes.iter().any(|n| n == node) {
        anyhow::bail!(
            "the cluster has no node {node}\nhint: its nodes are: {}",
            nodes.join(", ")
        );
    }
    server::remove_etcd_member(&state, &cfg, node, true)
        .map_err(|e| e.context(format!("{node} stays: nothing was changed")))?;
    server::drain(&state, node)?;
    let cleaned = nodes.iter().any(|n| n == node) && ask_to_clean(&k, node);
    server::remove_etcd_member(&state, &cfg, node, false)?;
    server::forget(&state, node)?;
    Ok(cleaned)
}

/// Asks the machine of `node` to uninstall itself (an annotation its
/// pod-network service looks for every few seconds); true when it says it
/// started within a minute.
fn ask_to_clean(k: &crate::kube::Kubectl, node: &str) -> bool {
    use crate::pod_network::{REMOVE_ANNOTATION, REMOVING_ANNOTATION};
    let target = format!("node/{node}");
    if k.run(&[
        "annotate",
        "--overwrite",
        &target,
        &format!("{REMOVE_ANNOTATION}=true"),
    ])
    .is_err()
    {
        return false;
    }
    let path = format!(
        "{{.metadata.annotations.{}}}",
        REMOVING_ANNOTATION.replace('.', "\\.")
    );
    let begun = std::time::Instant::now();
    while begun.elapsed() < std::time::Duration::from_secs(60) {
        if k.node_field(node, &path).is_ok_and(|v| v == "true") {
            // Its kubelet stops first thing: give it the moment it takes.
            std::thread::sleep(std::time::Duration::from_secs(5));
            return true;
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
    false
}
