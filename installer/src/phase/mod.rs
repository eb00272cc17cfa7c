//! The install's phases. Each phase kind is one type in its own file,
//! implementing [`Phase`]: an `execute` that does its work (idempotently)
//! and a `check` that says whether its effect is already in place, which
//! `--resume` asks before running an interrupted phase again.
//! [`install_phases`] builds the plan: a new phase kind is one new file
//! plus one line there.

pub mod app;
pub mod checks;
pub mod configure;
pub mod hook;
pub mod join;
pub mod labels;
pub mod monitoring;
pub mod provision;
pub mod runtime;
pub mod services;
pub mod system;
pub mod wait;

use std::path::{Path, PathBuf};

use crate::component::NodeContext;
use crate::kube::Kubectl;
use crate::node::NodeConfig;
use crate::reporter::InstallReporter;
use crate::service::ServiceManager;
use crate::state_dir::StateDir;

/// What every phase may use.
pub struct PhaseContext<'a> {
    /// The extracted bundle this run was started from (verified).
    pub bundle: &'a Path,
    /// The state directory.
    pub state: &'a StateDir,
    /// The node's settings.
    pub cfg: &'a NodeConfig,
    /// The app's manifest.
    pub manifest: &'a tele_manifests::Manifest,
    /// Preflight checks to skip.
    pub skip_checks: &'a [String],
    /// Fix what preflight can fix.
    pub autofix: bool,
    /// Where `tele` and `kubectl` are linked for the admin (e.g. /usr/local/bin).
    pub bin_dir: Option<&'a Path>,
    /// The node's service manager.
    pub manager: &'a dyn ServiceManager,
    /// Progress.
    pub reporter: &'a dyn InstallReporter,
}

impl<'a> PhaseContext<'a> {
    /// The same context with other node settings.
    pub fn with_cfg<'b>(&self, cfg: &'b NodeConfig) -> PhaseContext<'b>
    where
        'a: 'b,
    {
        PhaseContext {
            bundle: self.bundle,
            state: self.state,
            cfg,
            manifest: self.manifest,
            skip_checks: self.skip_checks,
            autofix: self.autofix,
            bin_dir: self.bin_dir,
            manager: self.manager,
            reporter: self.reporter,
        }
    }

    /// The flavor the cluster was installed with, from the manifest.
    pub fn flavor(&self) -> Option<tele_manifests::Flavor> {
        let name = self.cfg.flavor.as_ref()?;
        self.manifest
            .installer
            .as_ref()?
            .flavors
            .as_ref()?
            .items
            .iter()
            .find(|f| &f.name == name)
            .cloned()
    }

    /// kubectl from the node's runtime, with the admin kubeconfig.
    pub fn kubectl(&self) -> anyhow::Result<Kubectl> {
        kubectl(self.state)
    }

    /// Where a joining node's cluster is; an error on a cluster's first node.
    pub fn joined(&self) -> anyhow::Result<crate::node::Joined> {
        self.cfg
            .joined
            .clone()
            .ok_or_else(|| anyhow::anyhow!("this install did not join a cluster"))
    }

    /// The node's components' context (after the runtime was copied).
    pub fn node(&self) -> anyhow::Result<NodeContext> {
        NodeContext::new(self.cfg.clone(), self.state.clone())
    }
}

/// kubectl of the install in `state`, with its admin kubeconfig (a master)
/// or, on a worker, which holds none, the kubelet's (it may read nodes).
pub fn kubectl(state: &StateDir) -> anyhow::Result<Kubectl> {
    let bin: PathBuf = crate::node::runtime_binaries(state.root())?
        .get("kubectl")
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("the runtime has no kubectl"))?;
    Ok(Kubectl::new(bin, state.pki().node_kubeconfig()))
}

/// One kind of phase.
pub trait Phase {
    /// Its id in the plan, e.g. `/nodes/node-1/services`.
    fn id(&self) -> String;
    /// What it does, for people.
    fn description(&self) -> String;
    /// Phases that must be completed before it runs.
    fn requires(&self) -> Vec<String> {
        Vec::new()
    }
    /// Does the phase's work; safe to run again.
    fn execute(&self, ctx: &PhaseContext) -> anyhow::Result<()>;
    /// True when the phase's effect is already in place.
    fn check(&self, ctx: &PhaseContext) -> anyhow::Result<bool>;
}

/// The phases of a node joining a cluster, in run order: a master makes
/// its own certificates from the cluster CA it was given.
pub fn join_phases(cfg: &NodeConfig) -> Vec<Box<dyn Phase>> {
    let node = cfg.node_name.clone();
    let master = cfg.role == crate::node::NodeRole::Master;
    let mut phases: Vec<Box<dyn Phase>> = vec![
        Box::new(checks::Checks),
        Box::new(join::Join { node: node.clone() }),
    ];
    if master {
        phases.push(Box::new(configure::Configure));
    }
    phases.extend::<Vec<Box<dyn Phase>>>(vec![
        Box::new(runtime::NodeRuntime {
            node: node.clone(),
            after: if master {
                "/configure".into()
            } else {
                format!("/nodes/{node}/join")
            },
        }),
        Box::new(services::NodeServices { node: node.clone() }),
        Box::new(wait::Wait {
            node: node.clone(),
            joining: true,
        }),
        Box::new(labels::Labels { node }),
    ]);
    phases
}

/// The phases of an install of `manifest` on the node `cfg`, in run order.
pub fn install_phases(
    cfg: &NodeConfig,
    manifest: &tele_manifests::Manifest,
    bundle: &Path,
) -> Vec<Box<dyn Phase>> {
    let node = cfg.node_name.clone();
    let mut phases: Vec<Box<dyn Phase>> = vec![
        Box::new(checks::Checks),
        Box::new(configure::Configure),
        Box::new(runtime::NodeRuntime {
            node: node.clone(),
            after: "/configure".into(),
        }),
        Box::new(services::NodeServices { node: node.clone() }),
        Box::new(wait::Wait {
            node: node.clone(),
            joining: false,
        }),
        Box::new(system::System { node }),
    ];
    if cfg
        .cloud_settings
        .as_ref()
        .is_some_and(|s| s.provision.is_some())
    {
        phases.push(Box::new(provision::Provision));
    }
    phases.push(Box::new(app::App));
    if bundle.join("monitoring").is_dir() {
        phases.push(Box::new(monitoring::Monitoring));
    }
    for name in ["install", "postInstall"] {
        if manifest.hooks.get(name).is_some() {
            phases.push(Box::new(hook::Hook { name: name.into() }));
        }
    }
    phases
}
