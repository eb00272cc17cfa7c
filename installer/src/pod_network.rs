//! One pod network across the cluster's nodes, by routes: every node's pod
//! subnet (a /24 of the pod network, the `tele.dev/pod-subnet` annotation
//! of its Node) is reached through that node's address. Nodes on one L2
//! network (one subnet, as the machines of a site usually are) need no
//! tunnel: plain routes carry pod traffic, with nothing to encapsulate and
//! no MTU lost. `tele pod-network` runs on every node and keeps the routes
//! in line with the cluster's Nodes every few seconds; the routes it made
//! are kept in `STATE/routes.json` so that uninstall removes exactly them.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::durable::write_durably;
use crate::node::NodeConfig;
use crate::state_dir::StateDir;

/// The Node annotation naming a node's pod subnet.
pub const SUBNET_ANNOTATION: &str = "tele.dev/pod-subnet";

/// How often the routes are brought in line.
const INTERVAL: Duration = Duration::from_secs(5);

fn routes_file(state: &StateDir) -> std::path::PathBuf {
    state.root().join("routes.json")
}

/// The routes this node made: pod subnet -> the node address it goes through.
pub fn made_routes(state: &StateDir) -> BTreeMap<String, IpAddr> {
    std::fs::read(routes_file(state))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// What tele reads of a Node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    /// Its name.
    pub name: String,
    /// Its pod subnet ([`SUBNET_ANNOTATION`]; empty when it has none yet).
    pub subnet: String,
    /// Its InternalIP.
    pub addr: Option<IpAddr>,
    /// A master asked the machine to clean itself ([`REMOVE_ANNOTATION`]).
    pub remove_requested: bool,
}

/// Set on a Node by `tele remove`: the machine uninstalls itself.
pub const REMOVE_ANNOTATION: &str = "tele.dev/remove";
/// Set on its Node by a machine that starts cleaning itself.
pub const REMOVING_ANNOTATION: &str = "tele.dev/removing";

/// Every Node, as tele reads it.
pub fn nodes(k: &crate::kube::Kubectl) -> anyhow::Result<Vec<NodeInfo>> {
    let out = k.run(&[
        "get",
        "nodes",
        "-o",
        r#"jsonpath={range .items[*]}{.metadata.name}{"\t"}{.metadata.annotations.tele\.dev/pod-subnet}{"\t"}{.status.addresses[?(@.type=="InternalIP")].address}{"\t"}{.metadata.annotations.tele\.dev/remove}{"\n"}{end}"#,
    ])?;
    Ok(out
        .lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            let (name, subnet, addr, remove) = (f.next()?, f.next()?, f.next()?, f.next()?);
            Some(NodeInfo {
                name: name.to_string(),
                subnet: subnet.to_string(),
                addr: addr.parse().ok(),
                remove_requested: !remove.is_empty(),
            })
        })
        .collect())
}

/// The other nodes' pod subnets and addresses, from the cluster's Nodes.
fn wanted(state: &StateDir, cfg: &NodeConfig) -> anyhow::Result<BTreeMap<String, IpAddr>> {
    let k = crate::phase::kubectl(state)?;
    let nodes = nodes(&k)?;
    if nodes
        .iter()
        .any(|n| n.name == cfg.node_name && n.remove_requested)
    {
        clean_self(state, cfg, &k);
    }
    Ok(nodes
        .into_iter()
        .filter_map(|n| {
            (n.name != cfg.node_name && !n.subnet.is_empty() && n.subnet != cfg.node_pod_subnet)
                .then_some((n.subnet, n.addr?))
        })
        .collect())
}

/// Brings the routes in line with `want`; returns what is now in place.
fn sync(
    have: &BTreeMap<String, IpAddr>,
    want: &BTreeMap<String, IpAddr>,
    log: &dyn Fn(&str),
) -> BTreeMap<String, IpAddr> {
    let mut now = have.clone();
    for (subnet, via) in have {
        if want.get(subnet) != Some(via) {
            match ip(&["route", "del", subnet]) {
                Ok(()) => log(&format!("route to {subnet} via {via} removed")),
                Err(e) => log(&e),
            }
            now.remove(subnet);
        }
    }
    for (subnet, via) in want {
        if have.get(subnet) == Some(via) {
            continue;
        }
        match ip(&["route", "replace", subnet, "via", &via.to_string()]) {
            Ok(()) => {
                log(&format!("route to {subnet} via {via}"));
                now.insert(subnet.clone(), *via);
            }
            Err(e) => log(&e),
        }
    }
    now
}

/// A master removed this node (`tele remove`): says so on the Node, then
/// starts `tele uninstall` outside the node's services (they stop first
/// thing): a transient systemd unit, or, under the agent, a process group
/// of its own.
fn clean_self(state: &StateDir, cfg: &NodeConfig, k: &crate::kube::Kubectl) {
    let marker = state.root().join(".removing");
    if marker.exists() {
        return;
    }
    log("a master removed this node: uninstalling");
    let node = format!("node/{}", cfg.node_name);
    if let Err(e) = k.run(&[
        "annotate",
        "--overwrite",
        &node,
        &format!("{REMOVING_ANNOTATION}=true"),
    ]) {
        log(&format!("{e:#}"));
    }
    let _ = std::fs::write(&marker, b"");
    let tele = state.tele().display().to_string();
    let dir = state.root().display().to_string();
    let uninstall = [
        tele.as_str(),
        "uninstall",
        "--yes",
        "--state-dir",
        dir.as_str(),
    ];
    let started = if crate::service::for_host(state).kind() == "systemd" {
        Command::new("systemd-run")
            .args([
                "--unit",
                &format!("tele-removed-{}", std::process::id()),
                "--collect",
                "--",
            ])
            .args(uninstall)
            .status()
            .map(|s| s.success())
    } else {
        let mut c = Command::new(uninstall[0]);
        c.args(&uninstall[1..])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        std::os::unix::process::CommandExt::process_group(&mut c, 0);
        c.spawn().map(|_| true)
    };
    match started {
        Ok(true) => {}
        Ok(false) => log("cannot start the uninstall"),
        Err(e) => log(&format!("cannot start the uninstall: {e}")),
    }
}

#[allow(clippy::print_stderr)]
fn log(line: &str) {
    eprintln!("pod-network: {line}");
}

/// Keeps the routes in line until SIGTERM or SIGINT.
pub fn run(state_dir: &std::path::Path) -> anyhow::Result<()> {
    let state = StateDir::new(state_dir);
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, Arc::clone(&stop))?;
    }
    let mut have = made_routes(&state);
    while !stop.load(Ordering::Relaxed) {
        match NodeConfig::load(&state).and_then(|cfg| wanted(&state, &cfg)) {
            Ok(want) => {
                let now = sync(&have, &want, &log);
                if now != have {
                    let bytes = serde_json::to_vec_pretty(&now)?;
                    write_durably(&routes_file(&state), &bytes, 0o644)?;
                    have = now;
                }
            }
            // The API may be away for a while: keep the routes as they are.
            Err(e) => log(&format!("cannot read the nodes: {e:#}")),
        }
        for _ in 0..(INTERVAL.as_millis() / 100) {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(())
}

/// Removes the routes this node made (uninstall).
pub fn remove_routes(state: &StateDir) -> usize {
    made_routes(state)
        .keys()
        .filter(|subnet| ip(&["route", "del", subnet]).is_ok())
        .count()
}
