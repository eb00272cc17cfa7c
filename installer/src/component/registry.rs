//! The node's read-only image registry: tele serving the bundle's images
//! (copied into the state directory) over TLS; containerd's mirror. Only
//! this node's containerd uses it: it listens on loopback and lets in only
//! clients with the node's registry-client certificate.

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
            .flag("listen", registry_addr(n))
            .path_flag("tls-cert", &n.pki.cert("registry"))
            .path_flag("tls-key", &n.pki.key("registry"))
            .path_flag("client-ca", &n.pki.ca_cert()))
    }
    fn credentials(&self, n: &NodeContext) -> Vec<std::path::PathBuf> {
        vec![n.pki.ca_cert(), n.pki.cert("registry")]
    }
    fn probe(&self, n: &NodeContext) -> Probe {
        Probe::Tcp(registry_addr(n))
    }
}

/// Where the node's registry listens: this node's loopback, where only its
/// own containerd reaches it.
pub fn registry_addr(n: &NodeContext) -> std::net::SocketAddr {
    (std::net::Ipv4Addr::LOCALHOST, n.cfg.ports.registry).into()
}
