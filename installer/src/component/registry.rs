//! The node's read-only image registry: tele serving the bundle's images
//! (copied into the state directory) over TLS; containerd's mirror.

use super::{Component, NodeContext, Probe};
use crate::service::ServiceSpec;

pub struct Registry;

impl Component for Registry {
    fn name(&self) -> &'static str {
        "registry"
    }
    fn service(&self, n: &NodeContext) -> anyhow::Result<ServiceSpec> {
        Ok(ServiceSpec::new("registry", n.state.tele())
            .arg("registry")
            .arg("serve")
            .path_flag("layout", &n.state.images_dir())
            .flag("listen", format!("{}:{}", n.host(), n.cfg.ports.registry))
            .path_flag("tls-cert", &n.pki.cert("registry"))
            .path_flag("tls-key", &n.pki.key("registry")))
    }
    fn probe(&self, n: &NodeContext) -> Probe {
        Probe::Tcp((n.cfg.node_ip, n.cfg.ports.registry).into())
    }
}
