//! [`StateDir`] names every path an install writes. All of them are under
//! the state directory (default `/var/lib/tele`), so that several nodes can
//! share one machine in tests and uninstall knows what is its own. The only
//! exceptions are systemd unit files and the `tele`/`kubectl` links on the
//! PATH, which [`crate::service`] and [`crate::phase::configure`] own.

use std::path::{Path, PathBuf};

/// The default state directory.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/tele";

/// The paths under one install's state directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// The state directory at `root`.
    pub fn new(root: impl Into<PathBuf>) -> StateDir {
        StateDir { root: root.into() }
    }
    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// The settings of this install (`install.json`).
    pub fn config_file(&self) -> PathBuf {
        self.root.join("install.json")
    }
    /// The operation plan (`plan.json`).
    pub fn plan_file(&self) -> PathBuf {
        self.root.join("plan.json")
    }
    /// The lock held while an install or uninstall runs.
    pub fn lock_file(&self) -> PathBuf {
        self.root.join(".lock")
    }
    /// Certificates, keys and kubeconfigs (see [`crate::pki::Pki`] for the files).
    pub fn pki_dir(&self) -> PathBuf {
        self.root.join("pki")
    }
    /// The cluster's PKI paths.
    pub fn pki(&self) -> crate::pki::Pki {
        crate::pki::Pki::at(self.pki_dir())
    }
    /// The Kubernetes runtime, copied from the bundle: services run from here.
    pub fn runtime_dir(&self) -> PathBuf {
        self.root.join("runtime")
    }
    /// The bundle's images, linked or copied from the bundle: the node's registry serves them.
    pub fn images_dir(&self) -> PathBuf {
        self.root.join("images")
    }
    /// The bundle's manifest and resources, kept for status, hooks and resume.
    pub fn app_source_dir(&self) -> PathBuf {
        self.root.join("bundle")
    }
    /// The app's manifest, kept for the node profiles (joins, status).
    pub fn manifest_file(&self) -> PathBuf {
        self.root.join("app.yaml")
    }
    /// The bundle's `bundle.json`: the digest of every file and blob a
    /// master serves to nodes that join without the bundle.
    pub fn bundle_meta_file(&self) -> PathBuf {
        self.root.join("bundle.json")
    }
    /// On a node that joined without the bundle: the part of it the node
    /// runs, as fetched from a master and verified.
    pub fn fetched_bundle_dir(&self) -> PathBuf {
        self.root.join("fetched-bundle")
    }
    /// The node's volumes: one directory per claim (see [`crate::local_volumes`]).
    pub fn volumes_dir(&self) -> PathBuf {
        self.root.join("volumes")
    }
    /// The token a joining node was given, until it has joined (0600).
    pub fn join_token_file(&self) -> PathBuf {
        self.root.join("join-token")
    }
    /// What a joined node shows the master when it leaves (0600).
    pub fn leave_secret_file(&self) -> PathBuf {
        self.root.join("leave-secret")
    }
    /// The masters' API servers (`ADDR:PORT`) the node's local API
    /// endpoint passes connections to.
    pub fn api_servers_file(&self) -> PathBuf {
        self.root.join("api-servers.json")
    }
    /// tele itself (the agent, the registry, the health checker run it).
    pub fn tele(&self) -> PathBuf {
        self.root.join("bin").join("tele")
    }
    /// etcd's data.
    pub fn etcd_data(&self) -> PathBuf {
        self.root.join("etcd")
    }
    /// containerd's directory (config, root, state, socket, registry hosts).
    pub fn containerd_dir(&self) -> PathBuf {
        self.root.join("containerd")
    }
    /// containerd's socket.
    pub fn containerd_sock(&self) -> PathBuf {
        self.containerd_dir().join("containerd.sock")
    }
    /// containerd's configuration file.
    pub fn containerd_config(&self) -> PathBuf {
        self.containerd_dir().join("config.toml")
    }
    /// containerd's registry host configuration (`config_path`).
    pub fn certs_d(&self) -> PathBuf {
        self.containerd_dir().join("certs.d")
    }
    /// CNI network configuration.
    pub fn cni_conf(&self) -> PathBuf {
        self.root.join("cni").join("net.d")
    }
    /// CNI IP allocations.
    pub fn cni_ipam(&self) -> PathBuf {
        self.root.join("cni").join("ipam")
    }
    /// The kubelet's root directory.
    pub fn kubelet_root(&self) -> PathBuf {
        self.root.join("kubelet")
    }
    /// Configuration files of the Kubernetes components.
    pub fn kube_config_dir(&self) -> PathBuf {
        self.root.join("kubernetes")
    }
    /// The Kubernetes cloud provider's configuration (on a cloud).
    pub fn cloud_config(&self) -> PathBuf {
        self.kube_config_dir().join("cloud.conf")
    }
    /// An Azure Stack environment's endpoints, for the Azure provider
    /// (`AZURE_ENVIRONMENT_FILEPATH`).
    pub fn azure_environment(&self) -> PathBuf {
        self.kube_config_dir().join("azure-environment.json")
    }
    /// The kubelet's configuration file.
    pub fn kubelet_config(&self) -> PathBuf {
        self.kube_config_dir().join("kubelet.yaml")
    }
    /// Service logs.
    pub fn logs_dir(&self) -> PathBuf {
        self.root.join("logs")
    }
    /// The log of one service (or of the agent).
    pub fn log(&self, name: &str) -> PathBuf {
        self.logs_dir().join(format!("{name}.log"))
    }
    /// Pid and restart files of the agent's services.
    pub fn run_dir(&self) -> PathBuf {
        self.root.join("run")
    }
    /// The services the agent supervises.
    pub fn services_file(&self) -> PathBuf {
        self.root.join("agent").join("services.json")
    }
    /// What the app phase applied.
    pub fn app_work_dir(&self) -> PathBuf {
        self.root.join("app")
    }
    /// Monitoring secrets and alert destinations.
    pub fn monitoring_dir(&self) -> PathBuf {
        self.root.join("monitoring")
    }
    /// InfluxDB's data on this node.
    pub fn monitoring_data(&self) -> PathBuf {
        self.root.join("monitoring-data")
    }
    /// Where the health checker sends its points.
    pub fn monitoring_target(&self) -> PathBuf {
        self.root.join("monitoring.json")
    }
    /// The health checker's results and buffer.
    pub fn health_dir(&self) -> PathBuf {
        self.root.join("health")
    }
    /// True when this directory holds an install (its settings or its plan).
    pub fn holds_install(&self) -> bool {
        self.config_file().exists() || self.plan_file().exists()
    }
}
