//! The node's volumes (`tele local-volumes`, see [`crate::local_volumes`]):
//! the provisioner of the default StorageClass for the claims of pods
//! scheduled on this node.

use super::{Component, NodeContext, Probe};
use crate::service::ServiceSpec;

pub struct LocalVolumes;

impl Component for LocalVolumes {
    fn name(&self) -> &'static str {
        "local-volumes"
    }
    fn write_files(&self, n: &NodeContext) -> anyhow::Result<()> {
        std::fs::create_dir_all(n.cfg.volumes_dir())?;
        Ok(())
    }
    fn service(&self, n: &NodeContext) -> anyhow::Result<ServiceSpec> {
        Ok(ServiceSpec::new("local-volumes", n.state.tele())
            .arg("local-volumes")
            .arg("--state-dir")
            .arg(n.state.root().display().to_string()))
    }
    fn credentials(&self, n: &NodeContext) -> Vec<std::path::PathBuf> {
        vec![n.pki.kubeconfig("volumes")]
    }
    fn probe(&self, _n: &NodeContext) -> Probe {
        Probe::Running
    }
}
