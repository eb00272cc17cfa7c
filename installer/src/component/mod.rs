//! Everything that runs on a node is a [`Component`]: it writes its files,
//! says which service runs it ([`ServiceSpec`]) and how to tell it is ready.
//! [`start_all`] starts components in order through the node's
//! [`ServiceManager`], each waiting for the previous to be ready; a service
//! that crashes meanwhile ends the wait at once, quoting its log; on failure
//! the components started by that call stop in reverse order. [`stop_all`]
//! is safe in any state.

mod api_proxy;
mod apiserver;
mod cluster_dns;
mod containerd;
mod controller_manager;
mod etcd;
mod health_checker;
mod join_server;
mod kube_proxy;
mod kubelet;
mod local_volumes;
mod pod_network;
mod registry;
mod scheduler;

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::node::{NodeConfig, NodeRole};
use crate::pki::Pki;
use crate::reporter::InstallReporter;
use crate::service::{ServiceManager, ServiceSpec, ServiceState};
use crate::state_dir::StateDir;

pub use containerd::{cni_conflist, containerd_config, hosts_toml};
pub use kubelet::kubelet_config;

/// What components need to know about their node.
pub struct NodeContext {
    /// The node's settings.
    pub cfg: NodeConfig,
    /// Its state directory.
    pub state: StateDir,
    /// The cluster's certificates.
    pub pki: Pki,
    /// The runtime's binaries (name -> path under the state directory).
    pub bins: BTreeMap<String, PathBuf>,
}

impl NodeContext {
    /// The context of the install in `state`, reading the runtime copied there.
    pub fn new(cfg: NodeConfig, state: StateDir) -> anyhow::Result<NodeContext> {
        let bins = crate::node::runtime_binaries(state.root())?;
        Ok(NodeContext {
            pki: state.pki(),
            cfg,
            state,
            bins,
        })
    }

    /// The runtime's binary `name`.
    pub fn bin(&self, name: &str) -> anyhow::Result<PathBuf> {
        self.bins
            .get(name)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("the bundle's runtime has no {name}"))
    }

    /// PATH for services that run helpers (containerd's shims, runc, CNI plugins).
    pub fn path_env(&self) -> anyhow::Result<String> {
        let dir = self.bin("containerd")?;
        let dir = dir
            .parent()
            .map(|d| d.display().to_string())
            .unwrap_or_default();
        Ok(format!(
            "{dir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        ))
    }

    /// A Kubernetes component's service with the node's cloud provider,
    /// when it runs on one the runtime has a provider for (AWS):
    /// `--cloud-provider`, `--cloud-config`, and the SDK's settings given at
    /// install. Credentials come from the SDK's own chain on the machine
    /// (the instance profile), never from here.
    pub fn with_cloud(&self, spec: ServiceSpec) -> ServiceSpec {
        let (Some(c), Some(s)) = (&self.cfg.cloud, &self.cfg.cloud_settings) else {
            return spec;
        };
        let spec = spec
            .flag("cloud-provider", c.provider.as_str())
            .path_flag("cloud-config", &self.state.cloud_config());
        match (&s.imds_endpoint, &s.azure) {
            (Some(e), _) if c.provider == "aws" => {
                spec.env("AWS_EC2_METADATA_SERVICE_ENDPOINT", e.clone())
            }
            (
                _,
                Some(crate::cloud::azure::Auth {
                    environment: Some(_),
                    ..
                }),
            ) if c.provider == "azure" => spec.env(
                "AZURE_ENVIRONMENT_FILEPATH",
                self.state.azure_environment().display().to_string(),
            ),
            _ => spec,
        }
    }

    /// Writes the cloud provider's configuration, when [`Self::with_cloud`]
    /// uses one (idempotent).
    pub fn write_cloud_config(&self) -> anyhow::Result<()> {
        let (Some(c), Some(s)) = (&self.cfg.cloud, &self.cfg.cloud_settings) else {
            return Ok(());
        };
        let path = self.state.cloud_config();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let text = match (c.provider.as_str(), &s.azure) {
            ("aws", _) => crate::cloud::aws::cloud_config(c, &s.cluster_id, &s.endpoints),
            ("azure", Some(auth)) => {
                if let Some(env) = &auth.environment {
                    crate::durable::write_if_changed(
                        &self.state.azure_environment(),
                        &serde_json::to_vec_pretty(env)?,
                        0o600,
                    )?;
                }
                // The service principal's secret is had only at install:
                // on --resume the azure.json written then stays.
                if auth.client_id.is_some() && auth.client_secret.is_none() {
                    anyhow::ensure!(
                        path.exists(),
                        "{} is missing and the service principal's secret is not kept: set AZURE_CLIENT_SECRET and run the install again",
                        path.display()
                    );
                    return Ok(());
                }
                crate::cloud::azure::cloud_config(c, auth)
            }
            _ => return Ok(()),
        };
        crate::durable::write_if_changed(&path, text.as_bytes(), 0o600)?;
        Ok(())
    }

    /// The node's address as a URL host.
    pub fn host(&self) -> String {
        crate::node::fmt_host(self.cfg.node_ip)
    }
}

/// How to tell that a component is ready.
#[derive(Clone, Debug, PartialEq)]
pub enum Probe {
    /// A TCP connection is accepted.
    Tcp(SocketAddr),
    /// A connection to a Unix socket is accepted.
    Unix(PathBuf),
    /// `GET url` (plain HTTP) answers 200.
    HttpOk(String),
    /// The process has kept running for a second.
    Running,
    /// The first master's etcd answers on 127.0.0.1 and its access control
    /// is on ([`crate::etcd::Etcdctl::enable_auth`]).
    EtcdAuthorized {
        /// The state directory (for etcdctl and its certificates).
        state_dir: PathBuf,
        /// The local client port.
        client_port: u16,
    },
    /// A joining master's etcd is a voting member: it answers on
    /// 127.0.0.1 and is promoted from learner (through `endpoints`) once it
    /// has caught up with the leader.
    EtcdVoter {
        /// The state directory (for etcdctl and its certificates).
        state_dir: PathBuf,
        /// The local client port.
        client_port: u16,
        /// The other members' client URLs.
        endpoints: Vec<String>,
        /// This member's peer URL.
        peer_url: String,
    },
}

impl Probe {
    fn passes(&self) -> bool {
        match self {
            Probe::Tcp(addr) => TcpStream::connect_timeout(addr, Duration::from_secs(1)).is_ok(),
            Probe::Unix(p) => std::os::unix::net::UnixStream::connect(p).is_ok(),
            Probe::HttpOk(url) => reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(2))
                .build()
                .ok()
                .and_then(|c| c.get(url).send().ok())
                .is_some_and(|r| r.status().is_success()),
            Probe::Running => true,
            Probe::EtcdAuthorized {
                state_dir,
                client_port,
            } => {
                let addr = SocketAddr::from(([127, 0, 0, 1], *client_port));
                TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
                    && crate::etcd::Etcdctl::local(&StateDir::new(state_dir), *client_port)
                        .and_then(|ctl| ctl.enable_auth())
                        .is_ok()
            }
            Probe::EtcdVoter {
                state_dir,
                client_port,
                endpoints,
                peer_url,
            } => {
                let local = format!("https://127.0.0.1:{client_port}");
                let addr = SocketAddr::from(([127, 0, 0, 1], *client_port));
                TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
                    && crate::etcd::Etcdctl::new(
                        &StateDir::new(state_dir),
                        endpoints.iter().cloned().chain([local]).collect(),
                    )
                    .and_then(|ctl| ctl.promote(peer_url))
                    .unwrap_or(false)
            }
        }
    }
}

/// One thing that runs on a node.
pub trait Component {
    /// The service's short name: `etcd`, `kubelet`, ...
    fn name(&self) -> &'static str;
    /// Writes the component's configuration files (idempotent).
    fn write_files(&self, _node: &NodeContext) -> anyhow::Result<()> {
        Ok(())
    }
    /// The service that runs it.
    fn service(&self, node: &NodeContext) -> anyhow::Result<ServiceSpec>;
    /// The certificates and kubeconfigs it reads when it starts (and never
    /// again): when one of them is renewed, the service is restarted.
    fn credentials(&self, _node: &NodeContext) -> Vec<PathBuf> {
        Vec::new()
    }
    /// How to tell it is ready.
    fn probe(&self, node: &NodeContext) -> Probe;
}

/// The components of a node, in start order: every node runs the image
/// registry, the local API endpoint, containerd, the kubelet, kube-proxy,
/// the pod network's routes and the health checker; masters also etcd, the
/// control plane and the join service.
pub fn for_node(cfg: &NodeConfig) -> Vec<Box<dyn Component>> {
    let mut components = by_role(cfg);
    if cfg.cluster_dns {
        // Before the kubelet, whose pods are given it as their nameserver.
        let at = components
            .iter()
            .position(|c| c.name() == "kubelet")
            .unwrap_or(components.len());
        components.insert(at, Box::new(cluster_dns::ClusterDns));
    }
    components
}

fn by_role(cfg: &NodeConfig) -> Vec<Box<dyn Component>> {
    match cfg.role {
        NodeRole::Master => vec![
            Box::new(registry::Registry),
            Box::new(etcd::Etcd),
            Box::new(containerd::Containerd),
            Box::new(apiserver::ApiServer),
            Box::new(api_proxy::ApiProxy),
            Box::new(controller_manager::ControllerManager),
            Box::new(scheduler::Scheduler),
            Box::new(kubelet::Kubelet),
            Box::new(kube_proxy::KubeProxy),
            Box::new(join_server::JoinServer),
            Box::new(pod_network::PodNetwork),
            Box::new(local_volumes::LocalVolumes),
            Box::new(health_checker::HealthChecker),
        ],
        NodeRole::Worker => vec![
            Box::new(registry::Registry),
            Box::new(api_proxy::ApiProxy),
            Box::new(containerd::Containerd),
            Box::new(kubelet::Kubelet),
            Box::new(kube_proxy::KubeProxy),
            Box::new(pod_network::PodNetwork),
            Box::new(local_volumes::LocalVolumes),
            Box::new(health_checker::HealthChecker),
        ],
    }
}

/// Why a component did not come up.
#[derive(Debug, thiserror::Error)]
pub enum ComponentError {
    /// Its service exited while we waited for it.
    #[error("{name} exited while starting; the end of its log ({log}):\n{tail}")]
    Crashed {
        /// The component.
        name: String,
        /// Its log file.
        log: String,
        /// The log's last lines.
        tail: String,
    },
    /// It did not become ready in time.
    #[error("{name} did not become ready within {secs} s; the end of its log ({log}):\n{tail}")]
    NotReady {
        /// The component.
        name: String,
        /// The limit.
        secs: u64,
        /// Its log file.
        log: String,
        /// The log's last lines.
        tail: String,
    },
    /// Writing its files or starting its service failed.
    #[error("{name}: {source:#}")]
    Start {
        /// The component.
        name: String,
        /// What went wrong.
        source: anyhow::Error,
    },
}

/// Starts `components` in order, each once the previous is ready, waiting
/// at most `limit` for each. On failure, stops the ones it started (in
/// reverse order) and returns what went wrong.
pub fn start_all(
    components: &[Box<dyn Component>],
    node: &NodeContext,
    manager: &dyn ServiceManager,
    reporter: &dyn InstallReporter,
    limit: Duration,
) -> Result<(), ComponentError> {
    let mut started: Vec<&'static str> = Vec::new();
    let mut previous: Option<&'static str> = None;
    for c in components {
        let name = c.name();
        let result = start_one(c.as_ref(), node, manager, reporter, previous, limit);
        match result {
            Ok(()) => {
                started.push(name);
                previous = Some(name);
            }
            Err(e) => {
                started.push(name);
                for n in started.iter().rev() {
                    let _ = manager.stop(n);
                }
                return Err(e);
            }
        }
    }
    Ok(())
}

/// Starts `c` (after `after`) and waits, at most `limit`, until it is ready.
pub(crate) fn start_one(
    c: &dyn Component,
    node: &NodeContext,
    manager: &dyn ServiceManager,
    reporter: &dyn InstallReporter,
    after: Option<&str>,
    limit: Duration,
) -> Result<(), ComponentError> {
    let name = c.name();
    let wrap = |source: anyhow::Error| ComponentError::Start {
        name: name.into(),
        source,
    };
    c.write_files(node).map_err(wrap)?;
    let spec = service_of(c, node).map_err(wrap)?;
    let restarts_before = manager.state(name).restarts();
    manager.start(&spec, after).map_err(wrap)?;
    let probe = c.probe(node);
    let log = node.state.log(name);
    let tail = || crate::procfs::tail(&log, 15).join("\n");
    let begun = Instant::now();
    let mut running_since: Option<Instant> = None;
    loop {
        let state = manager.state(name);
        if state.restarts() > restarts_before
            || matches!(state, ServiceState::Stopped | ServiceState::Absent)
        {
            return Err(ComponentError::Crashed {
                name: name.into(),
                log: log.display().to_string(),
                tail: tail(),
            });
        }
        if state.pid().is_some() {
            let since = *running_since.get_or_insert_with(Instant::now);
            let ready = match probe {
                Probe::Running => since.elapsed() >= Duration::from_secs(1),
                _ => probe.passes(),
            };
            if ready {
                return Ok(());
            }
        }
        if begun.elapsed() > limit {
            return Err(ComponentError::NotReady {
                name: name.into(),
                secs: limit.as_secs(),
                log: log.display().to_string(),
                tail: tail(),
            });
        }
        reporter.waiting(&format!("{name} to become ready"), begun.elapsed(), limit);
        crate::interrupt::check().map_err(wrap)?;
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The service of `c`, which names a digest of the credentials it reads
/// (`TELE_CREDENTIALS`): a renewed certificate changes the service, so
/// starting it again restarts it, under systemd and the agent alike.
pub fn service_of(c: &dyn Component, node: &NodeContext) -> anyhow::Result<ServiceSpec> {
    let spec = c.service(node)?;
    Ok(match credentials_digest(c, node) {
        Some(digest) => spec.env("TELE_CREDENTIALS", digest),
        None => spec,
    })
}

/// A digest of the credentials `c` reads when it starts (None when it reads none).
pub fn credentials_digest(c: &dyn Component, node: &NodeContext) -> Option<String> {
    use sha2::Digest as _;
    let files = c.credentials(node);
    if files.is_empty() {
        return None;
    }
    let mut hash = sha2::Sha256::new();
    for f in files {
        // A missing file hashes as empty: the service then fails on it by itself.
        hash.update(std::fs::read(&f).unwrap_or_default());
        hash.update([0]);
    }
    Some(hex::encode(&hash.finalize()[..8]))
}

/// True when every component runs and passes its probe.
pub fn all_ready(
    components: &[Box<dyn Component>],
    node: &NodeContext,
    manager: &dyn ServiceManager,
) -> bool {
    components.iter().all(|c| {
        manager.state(c.name()).pid().is_some()
            && match c.probe(node) {
                Probe::Running => true,
                p => p.passes(),
            }
    })
}

/// Stops every service of the install, in reverse start order; safe in any state.
pub fn stop_all(manager: &dyn ServiceManager) -> anyhow::Result<()> {
    manager.stop_all()
}

/// Notices a node service that crashes during a long wait.
pub struct CrashWatch {
    baseline: Vec<(&'static str, u32)>,
}

impl CrashWatch {
    /// Remembers each component's restarts so far.
    pub fn new(components: &[Box<dyn Component>], manager: &dyn ServiceManager) -> CrashWatch {
        CrashWatch {
            baseline: components
                .iter()
                .map(|c| (c.name(), manager.state(c.name()).restarts()))
                .collect(),
        }
    }

    /// The first component that restarted since, with the end of its log.
    pub fn crashed(
        &self,
        state: &StateDir,
        manager: &dyn ServiceManager,
    ) -> Option<ComponentError> {
        self.baseline.iter().find_map(|(name, before)| {
            (manager.state(name).restarts() > *before).then(|| {
                let log = state.log(name);
                ComponentError::Crashed {
                    name: name.to_string(),
                    tail: crate::procfs::tail(&log, 15).join("\n"),
                    log: log.display().to_string(),
                }
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// A service manager that records what it is asked and makes `crashing` die.
    struct Recorder {
        calls: RefCell<Vec<String>>,
        running: RefCell<Vec<String>>,
        crashing: &'static str,
    }

    impl ServiceManager for Recorder {
        fn kind(&self) -> &'static str {
            "test"
        }
        fn start(&self, spec: &ServiceSpec, after: Option<&str>) -> anyhow::Result<()> {
            self.calls.borrow_mut().push(format!(
                "start {} after {}",
                spec.name,
                after.unwrap_or("-")
            ));
            self.running.borrow_mut().push(spec.name.clone());
            Ok(())
        }
        fn is_current(&self, spec: &ServiceSpec, _after: Option<&str>) -> bool {
            self.running.borrow().contains(&spec.name)
        }
        fn stop(&self, name: &str) -> anyhow::Result<()> {
            self.calls.borrow_mut().push(format!("stop {name}"));
            self.running.borrow_mut().retain(|n| n != name);
            Ok(())
        }
        fn state(&self, name: &str) -> ServiceState {
            match (
                name == self.crashing,
                self.running.borrow().iter().any(|n| n == name),
            ) {
                (true, true) => ServiceState::Restarting { restarts: 1 },
                (false, true) => ServiceState::Running {
                    pid: 1,
                    restarts: 0,
                },
                _ => ServiceState::Absent,
            }
        }
        fn installed(&self) -> Vec<String> {
            self.running.borrow().clone()
        }
    }

    struct Fake(&'static str);

    impl Component for Fake {
        fn name(&self) -> &'static str {
            self.0
        }
        fn service(&self, _n: &NodeContext) -> anyhow::Result<ServiceSpec> {
            Ok(ServiceSpec::new(self.0, "/bin/true"))
        }
        fn probe(&self, _n: &NodeContext) -> Probe {
            Probe::Running
        }
    }

    fn node(dir: &std::path::Path) -> NodeContext {
        let state = StateDir::new(dir);
        std::fs::create_dir_all(state.logs_dir()).unwrap();
        std::fs::write(
            state.log("c"),
            "starting\nfatal: bind: address already in use\n",
        )
        .unwrap();
        NodeContext {
            cfg: serde_json::from_value(serde_json::json!({
                "bundleDir": "/b", "stateDir": dir, "nodeName": "n", "nodeIp": "127.0.0.1",
                "podCidr": "10.244.0.0/16", "nodePodSubnet": "10.244.0.0/24",
                "serviceCidr": "10.100.0.0/16", "cgroupRoot": null,
                "ports": {"registry": 5043, "api": 6443, "etcdClient": 2379, "etcdPeer": 2380, "kubelet": 10250},
                "profile": null, "appTimeoutSecs": 60
            }))
            .unwrap(),
            pki: state.pki(),
            state,
            bins: BTreeMap::new(),
        }
    }

    #[test]
    fn components_start_in_order_and_a_crash_stops_the_started_ones_in_reverse() {
        let dir = tempfile::tempdir().unwrap();
        let node = node(dir.path());
        let components: Vec<Box<dyn Component>> = vec![
            Box::new(Fake("a")),
            Box::new(Fake("b")),
            Box::new(Fake("c")),
        ];
        let m = Recorder {
            calls: RefCell::new(Vec::new()),
            running: RefCell::new(Vec::new()),
            crashing: "c",
        };
        let err = start_all(
            &components,
            &node,
            &m,
            &crate::reporter::Silent,
            Duration::from_secs(30),
        )
        .unwrap_err();
        assert!(matches!(err, ComponentError::Crashed { .. }), "{err}");
        assert!(err.to_string().contains("address already in use"), "{err}");
        assert_eq!(
            *m.calls.borrow(),
            [
                "start a after -",
                "start b after a",
                "start c after b",
                "stop c",
                "stop b",
                "stop a"
            ]
        );
        assert!(m.running.borrow().is_empty());
    }
}
