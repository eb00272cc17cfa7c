//! The join service of a master (`tele join-server`): admits new nodes
//! that show a valid token, over TLS with a certificate from the cluster CA.

use super::{Component, NodeContext, Probe};
use crate::service::ServiceSpec;

pub struct JoinServer;

impl Component for JoinServer {
    fn name(&self) -> &'static str {
        "join-server"
    }
    fn write_files(&self, n: &NodeContext) -> anyhow::Result<()> {
        let sans: Vec<String> = vec![n.cfg.node_ip.to_string(), n.cfg.node_name.clone()];
        crate::pki::ensure_service_cert(
            &n.state.pki_dir(),
            "join-server",
            &sans,
            n.cfg.cert_validity(),
            false,
        )?;
        Ok(())
    }
    fn service(&self, n: &NodeContext) -> anyhow::Result<ServiceSpec> {
        Ok(ServiceSpec::new("join-server", n.state.tele())
            .arg("join-server")
            .arg("--state-dir")
            .arg(n.state.root().display().to_string())
            .flag("listen", format!("{}:{}", n.host(), n.cfg.ports.join))
            .env("PATH", n.path_env()?))
    }
    fn credentials(&self, n: &NodeContext) -> Vec<std::path::PathBuf> {
        vec![n.pki.ca_cert(), n.pki.cert("join-server")]
    }
    fn probe(&self, n: &NodeContext) -> Probe {
        Probe::Tcp((n.cfg.node_ip, n.cfg.ports.join).into())
    }
}
