//! `tele status`: the node's services (from its service manager), the node,
//! the app and the health checker's latest results, read from the state
//! directory and the cluster. Nothing here depends on where the bundle was
//! extracted.

use std::path::Path;

use crate::node::NodeConfig;
use crate::plan::Plan;
use crate::service::ServiceState;
use crate::state_dir::StateDir;

/// One service.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ServiceStatus {
    /// Its name.
    pub name: String,
    /// Where it stands.
    #[serde(flatten)]
    pub state: ServiceState,
}

/// The whole status.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// The operation and where its plan stands.
    pub plan: Option<String>,
    /// `systemd` or `agent`.
    pub service_manager: String,
    /// The agent's pid (None under systemd or when stopped).
    pub agent: Option<i32>,
    /// Each service.
    pub services: Vec<ServiceStatus>,
    /// The node's name and its Ready condition.
    pub node: Option<(String, String)>,
    /// Every node of the cluster and its Ready condition.
    pub nodes: Vec<(String, String)>,
    /// On a node that joined: the master it joined through.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub joined_through: Option<String>,
    /// Where the node runs: `aws`, `azure` or `onprem`.
    pub provider: String,
    /// The cloud machine it runs on (None: on premises).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cloud: Option<crate::cloud::Instance>,
    /// On a master: the join tokens.
    pub tokens: Vec<crate::token::TokenRecord>,
    /// On a master: the cluster against its flavor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flavor: Option<FlavorStatus>,
    /// Workloads: `namespace/kind/name ready/desired`.
    pub workloads: Vec<String>,
    /// The node health checker's latest round (seconds ago, results), read
    /// from the state directory: shown even when monitoring is down.
    pub health: Option<(u64, Vec<crate::health::CheckResult>)>,
}

impl Status {
    /// True when every service runs, the node is Ready and every workload is ready.
    pub fn healthy(&self) -> bool {
        self.services.iter().all(|s| s.state.pid().is_some())
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

/// The cluster against the flavor it was installed with.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FlavorStatus {
    /// The flavor.
    pub name: String,
    /// Per profile: how many nodes the flavor wants, how many are Ready.
    pub profiles: Vec<ProfileCount>,
}

/// Nodes of one profile.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProfileCount {
    /// The node profile.
    pub profile: String,
    /// How many the flavor wants.
    pub want: u32,
    /// How many are in the cluster and Ready.
    pub ready: u32,
}

impl FlavorStatus {
    /// `2 of 3 node, 0 of 1 db`.
    pub fn summary(&self) -> String {
        self.profiles
            .iter()
            .map(|p| format!("{} of {} {}", p.ready, p.want, p.profile))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// True when every profile has as many Ready nodes as the flavor wants.
    pub fn complete(&self) -> bool {
        self.profiles.iter().all(|p| p.ready >= p.want)
    }
}

fn flavor_status(
    state: &StateDir,
    cfg: &NodeConfig,
    nodes: &[(String, String)],
) -> Option<FlavorStatus> {
    let name = cfg.flavor.clone()?;
    let manifest = tele_manifests::load_manifest(&state.manifest_file()).ok()?;
    let flavor = manifest
        .installer?
        .flavors?
        .items
        .into_iter()
        .find(|f| f.name == name)?;
    let admitted = crate::join::server::admitted_nodes(state);
    let profile_of = |node: &str| -> Option<String> {
        if node == cfg.node_name {
            return cfg.profile.clone();
        }
        admitted.iter().find(|n| n.name == node)?.role.clone()
    };
    let profiles = flavor
        .nodes
        .iter()
        .map(|n| ProfileCount {
            profile: n.profile.clone(),
            want: n.count,
            ready: nodes
                .iter()
                .filter(|(node, ready)| {
                    ready == "True" && profile_of(node).as_deref() == Some(n.profile.as_str())
                })
                .count() as u32,
        })
        .collect();
    Some(FlavorStatus { name, profiles })
}

/// Reads the status of the install in `state_dir`.
pub fn status(state_dir: &Path) -> anyhow::Result<Status> {
    let state = StateDir::new(state_dir);
    let cfg = NodeConfig::load(&state)?;
    let plan = Plan::load(state_dir)?.map(|p| match p.next() {
        None => format!("{}: completed", p.operation),
        Some(ph) => format!("{}: stopped at {} ({})", p.operation, ph.id, ph.state),
    });
    let manager = crate::service::for_host(&state);
    let services = manager
        .installed()
        .into_iter()
        .map(|name| ServiceStatus {
            state: manager.state(&name),
            name,
        })
        .collect();
    let agent = crate::service::agent::agent_pid(&state);
    let mut node_status = None;
    let mut workloads = Vec::new();
    let mut nodes = Vec::new();
    if let Ok(k) = crate::phase::kubectl(&state) {
        if let Ok(r) = k.node_field(
            &cfg.node_name,
            r#"{.status.conditions[?(@.type=="Ready")].status}"#,
        ) {
            node_status = Some((cfg.node_name.clone(), r));
        }
        if let Ok(out) = k.run(&[
            "get",
            "nodes",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name} {.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}",
        ]) {
            nodes = out
                .lines()
                .filter_map(|l| l.split_once(' '))
                .map(|(n, r)| (n.to_string(), r.to_string()))
                .collect();
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
        flavor: flavor_status(&state, &cfg, &nodes),
        plan,
        service_manager: manager.kind().into(),
        agent,
        services,
        node: node_status,
        nodes,
        joined_through: cfg.joined.as_ref().map(|j| j.join_addr.clone()),
        provider: cfg
            .cloud
            .as_ref()
            .map_or_else(|| "onprem".to_string(), |c| c.provider.clone()),
        cloud: cfg.cloud.clone(),
        tokens: crate::token::TokenStore::new(&state)
            .list()
            .unwrap_or_default(),
        workloads,
        health,
    })
}
