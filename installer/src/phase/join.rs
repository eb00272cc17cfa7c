//! `/nodes/<node>/join`: admission by the cluster. The node fetches the
//! cluster CA from the master it was pointed at, checks it against the
//! token's pin, and receives its credentials and the cluster's settings
//! (API server, networks, its pod subnet), which it saves.

use super::{Phase, PhaseContext};
use crate::durable::write_durably;
use crate::join::{client, JoinRequest};
use crate::token::Token;

/// Admits one node to the cluster.
pub struct Join {
    /// The node.
    pub node: String,
}

/// The token a joining node was given, kept (0600) until it has joined.
pub fn read_token(ctx: &PhaseContext) -> anyhow::Result<Token> {
    let file = ctx.state.join_token_file();
    let text = std::fs::read_to_string(&file).map_err(|e| {
        anyhow::anyhow!(
            "cannot read the join token `{}`: {e}\nhint: run the join command again with its --token",
            file.display()
        )
    })?;
    Ok(text.parse()?)
}

/// The files a worker's components need from its PKI directory.
const WORKER_FILES: [&str; 7] = [
    "ca.crt",
    "kubelet-server.crt",
    "kubelet-server.key",
    "registry.crt",
    "registry.key",
    "kubeconfig/kubelet.conf",
    "kubeconfig/kube-proxy.conf",
];

impl Phase for Join {
    fn id(&self) -> String {
        format!("/nodes/{}/join", self.node)
    }
    fn description(&self) -> String {
        "admission by the cluster: credentials and settings from a master".into()
    }
    fn requires(&self) -> Vec<String> {
        vec!["/checks".into()]
    }
    fn execute(&self, ctx: &PhaseContext) -> anyhow::Result<()> {
        let joined = ctx.joined()?;
        let token = read_token(ctx)?;
        let ca = client::fetch_ca(&joined.join_addr, &token.ca_pin)?;
        let resp = client::join(
            &joined.join_addr,
            &ca,
            &JoinRequest {
                token: token.credential(),
                node_name: ctx.cfg.node_name.clone(),
                node_ip: ctx.cfg.node_ip,
                role: ctx.cfg.profile.clone(),
            },
        )?;
        let pki = ctx.state.pki_dir();
        for f in &resp.files {
            anyhow::ensure!(
                WORKER_FILES.contains(&f.path.as_str()),
                "the join service sent an unexpected file `{}`",
                f.path
            );
            write_durably(&pki.join(&f.path), f.content.as_bytes(), f.mode & 0o644)?;
        }
        write_durably(
            &ctx.state.leave_secret_file(),
            resp.leave_secret.as_bytes(),
            0o600,
        )?;
        let mut cfg = ctx.cfg.clone();
        cfg.pod_cidr = resp.pod_cidr;
        cfg.node_pod_subnet = resp.node_pod_subnet;
        cfg.service_cidr = resp.service_cidr;
        if let Some(j) = cfg.joined.as_mut() {
            j.api_server = resp.api_server;
            j.admitted = true;
        }
        cfg.save(ctx.state)?;
        ctx.reporter.note(&format!(
            "admitted by {}; pod subnet {}",
            joined.join_addr, cfg.node_pod_subnet
        ));
        Ok(())
    }
    fn check(&self, ctx: &PhaseContext) -> anyhow::Result<bool> {
        let pki = ctx.state.pki_dir();
        Ok(ctx.cfg.joined.as_ref().is_some_and(|j| j.admitted)
            && WORKER_FILES.iter().all(|f| pki.join(f).is_file()))
    }
}
