//! etcd, the cluster's store: TLS for clients and peers, client
//! certificates required. The first master starts a new cluster; a master
//! that joins starts as the learner the join service added
//! ([`crate::etcd`]) and is ready once promoted to a voting member. The
//! first master turns etcd's access control on before the API server
//! starts: only the API servers' certificate has a role (root); the health
//! checker's reaches `/health` and no key.

use super::{Component, NodeContext, Probe};
use crate::service::ServiceSpec;

pub struct Etcd;

impl Component for Etcd {
    fn name(&self) -> &'static str {
        "etcd"
    }
    fn write_files(&self, n: &NodeContext) -> anyhow::Result<()> {
        let data = n.state.etcd_data();
        std::fs::create_dir_all(&data)?;
        crate::durable::set_mode(&data, 0o700)?;
        Ok(())
    }
    fn service(&self, n: &NodeContext) -> anyhow::Result<ServiceSpec> {
        let host = n.host();
        let p = &n.cfg.ports;
        // etcd's own CA: only the API servers' and the health checker's
        // client certificates (and the masters' peers) are let in, and of
        // those only the API servers' may read or write.
        let ca = n.pki.etcd_ca_cert();
        Ok(ServiceSpec::new("etcd", n.bin("etcd")?)
            .flag("name", &n.cfg.node_name)
            .path_flag("data-dir", &n.state.etcd_data())
            .flag(
                "listen-client-urls",
                format!("https://127.0.0.1:{0},https://{host}:{0}", p.etcd_client),
            )
            .flag(
                "advertise-client-urls",
                format!("https://{host}:{}", p.etcd_client),
            )
            .flag(
                "listen-peer-urls",
                format!("https://{host}:{}", p.etcd_peer),
            )
            .flag(
                "initial-advertise-peer-urls",
                format!("https://{host}:{}", p.etcd_peer),
            )
            .flag(
                "initial-cluster",
                match &n.cfg.etcd_join {
                    Some(j) => j.initial_cluster.clone(),
                    None => format!("{}=https://{host}:{}", n.cfg.node_name, p.etcd_peer),
                },
            )
            .flag(
                "initial-cluster-state",
                if n.cfg.etcd_join.is_some() {
                    "existing"
                } else {
                    "new"
                },
            )
            .path_flag("cert-file", &n.pki.cert("etcd-server"))
            .path_flag("key-file", &n.pki.key("etcd-server"))
            .path_flag("trusted-ca-file", &ca)
            .flag("client-cert-auth", true)
            .path_flag("peer-cert-file", &n.pki.cert("etcd-server"))
            .path_flag("peer-key-file", &n.pki.key("etcd-server"))
            .path_flag("peer-trusted-ca-file", &ca)
            .flag("peer-client-cert-auth", true))
    }
    fn credentials(&self, n: &NodeContext) -> Vec<std::path::PathBuf> {
        vec![n.pki.etcd_ca_cert(), n.pki.cert("etcd-server")]
    }
    fn probe(&self, n: &NodeContext) -> Probe {
        match &n.cfg.etcd_join {
            Some(j) => Probe::EtcdVoter {
                state_dir: n.state.root().to_path_buf(),
                client_port: n.cfg.ports.etcd_client,
                endpoints: j.endpoints.clone(),
                peer_url: format!("https://{}:{}", n.host(), n.cfg.ports.etcd_peer),
            },
            None => Probe::EtcdAuthorized {
                state_dir: n.state.root().to_path_buf(),
                client_port: n.cfg.ports.etcd_client,
            },
        }
    }
}
