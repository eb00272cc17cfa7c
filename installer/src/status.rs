//! `tele status`: the node's services, the node, and the app, from the state
//! directory and the cluster.

use std::path::Path;

use crate::kube::Kubectl;
use crate::node::{self, Layout, NodeConfig};
use crate::plan::Plan;
use crate::supervisor::{self, ServiceSpec};

/// One service.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ServiceStatus {
    /// Its name.
    pub name: String,
    /// Its pid when running.
    pub pid: Option<i32>,
}

/// The whole status.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// The operation and where its plan stands.
    pub plan: Option<String>,
    /// The agent's pid (None under systemd or when stopped).
    pub agent: Option<i32>,
    /// Each service.
    pub services: Vec<ServiceStatus>,
    /// The node's name and its Ready condition.
    pub node: Option<(String, String)>,
    /// Workloads: `namespace/kind/name ready/desired`.
    pub workloads: Vec<String>,
    /// The node health checker's latest round (seconds ago, results), read
    /// from the state directory: shown even when monitoring is down.
    pub health: Option<(u64, Vec<crate::health::CheckResult>)>,
}

impl Status {
    /// True when every service runs, the node is Ready and every workload is ready.
    pub fn healthy(&self) -> bool {
        self.services.iter().all(|s| s.pid.is_some())
            && self
                .health
                .as_ref()
                .is_none_or(|(_, checks)| checks.iter().all(|c| c.ok))
            && self.node.as_ref().is_some_and(|(_, r)| r == "True")
            && self.workloads.iter().all(|w| {
                w.rsplit(' ')
                    .next()
                    .is_some_and(|rd| rd.split_once('/').is_some_and(|(a, b)| a == b))
            })
    }
}

/// Reads the status of the install in `state_dir`.
pub fn status(state_dir: &Path) -> anyhow::Result<Status> {
    let layout = Layout::new(state_dir);
    let cfg: NodeConfig =
        serde_json::from_slice(&std::fs::read(layout.config_file()).map_err(|e| {
            anyhow::anyhow!(
                "no install in {}: {e}\nhint: give the install's --state-dir",
                state_dir.display()
            )
        })?)?;
    let plan = Plan::load(state_dir)?.map(|p| match p.next() {
        None => format!("{}: completed", p.operation),
        Some(ph) => format!("{}: stopped at {} ({:?})", p.operation, ph.id, ph.state),
    });
    let specs: Vec<ServiceSpec> = std::fs::read(supervisor::services_file(state_dir))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let services = specs
        .iter()
        .map(|s| ServiceStatus {
            name: s.name.clone(),
            pid: supervisor::running_pid(state_dir, &s.name, &s.binary),
        })
        .collect();
    let agent = supervisor::agent_pid(state_dir, &layout.tele());
    let mut node_status = None;
    let mut workloads = Vec::new();
    if let Some(kubectl) = node::runtime_binaries(&cfg.bundle_dir)
        .ok()
        .and_then(|b| b.get("kubectl").cloned())
    {
        let k = Kubectl::new(kubectl, layout.admin_kubeconfig());
        if let Ok(r) = k.run(&[
            "get",
            "node",
            &cfg.node_name,
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ]) {
            node_status = Some((cfg.node_name.clone(), r.trim().to_string()));
        }
        if let Ok(out) = k.run(&[
            "get",
            "deployments,statefulsets,daemonsets",
            "-A",
            "-o",
            "jsonpath={range .items[*]}{.metadata.namespace}/{.kind}/{.metadata.name} {.status.readyReplicas}{.status.numberReady}/{.status.replicas}{.status.desiredNumberScheduled}{\"\\n\"}{end}",
        ]) {
            workloads = out
                .lines()
                .map(|l| match l.split_once(' ') {
                    Some((name, rd)) if rd.starts_with('/') => format!("{name} 0{rd}"),
                    _ => l.to_string(),
                })
                .collect();
        }
    }
    let health = crate::health::latest(state_dir).map(|(at, results)| {
        let age = std::time::SystemTime::now()
            .duration_since(at)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        (age, results)
    });
    Ok(Status {
        plan,
        agent,
        services,
        node: node_status,
        workloads,
        health,
    })
}
