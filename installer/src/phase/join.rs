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

/// The files a master gets: from the cluster CA, etcd's CA and the
/// service-account keys it makes its own certificates (`/configure`); the
/// key that encrypts Secrets in etcd, shared by every API server.
const MASTER_FILES: [&str; 7] = [
    "ca.crt",
    "ca.key",
    "etcd-ca.crt",
    "etcd-ca.key",
    "encryption.yaml",
    "sa.key",
    "sa.pub",
];

/// The files a worker's components need from its PKI directory.
pub(crate) const WORKER_FILES: [&str; 10] = [
    "ca.crt",
    "kubelet-server.crt",
    "kubelet-server.key",
    "registry.crt",
    "registry.key",
    "registry-client.crt",
    "registry-client.key",
    "kubeconfig/kubelet.conf",
    "kubeconfig/kube-proxy.conf",
    "kubeconfig/volumes.conf",
];

fn expected_files(ctx: &PhaseContext) -> &'static [&'static str] {
    match ctx.cfg.role {
        crate::node::NodeRole::Master => &MASTER_FILES,
        crate::node::NodeRole::Worker => &WORKER_FILES,
    }
}

/// Writes the credentials a master sent into the PKI directory `pki`
/// (keys and the encryption key 0600, the rest at most 0644), refusing any
/// file not in `expected`; returns the files whose content changed.
pub(crate) fn write_node_files(
    pki: &std::path::Path,
    files: &[crate::join::NodeFile],
    expected: &[&str],
) -> anyhow::Result<Vec<String>> {
    if let Some(f) = files.iter().find(|f| !expected.contains(&f.path.as_str())) {
        anyhow::bail!("the join service sent an unexpected file `{}`", f.path);
    }
    let mut changed = Vec::new();
    for f in files {
        let path = pki.join(&f.path);
        if std::fs::read(&path).is_ok_and(|old| old == f.content.as_bytes()) {
            continue;
        }
        let mode = if f.path.ends_with(".key") || f.path == "encryption.yaml" {
            0o600
        } else {
            f.mode & 0o644
        };
        write_durably(&path, f.content.as_bytes(), mode)?;
        changed.push(f.path.clone());
    }
    Ok(changed)
}

/// How long a master waits while another master joins the etcd cluster.
const ETCD_BUSY_WAIT: std::time::Duration = std::time::Duration::from_secs(600);

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
        let request = JoinRequest {
            token: token.credential(),
            node_name: ctx.cfg.node_name.clone(),
            node_ip: ctx.cfg.node_ip,
            role: ctx.cfg.profile.clone(),
        };
        // Masters join etcd one at a time: while another one is joining, wait.
        let begun = std::time::Instant::now();
        let resp = loop {
            match client::join(&joined.join_addr, &ca, &request) {
                Err(client::JoinError::Refused(r))
                    if r.retry && begun.elapsed() < ETCD_BUSY_WAIT =>
                {
                    ctx.reporter
                        .waiting(&r.error, begun.elapsed(), ETCD_BUSY_WAIT);
                    crate::interrupt::check()?;
                    std::thread::sleep(std::time::Duration::from_secs(2));
                }
                other => break other?,
            }
        };
        write_node_files(&ctx.state.pki_dir(), &resp.files, expected_files(ctx))?;
        anyhow::ensure!(
            !resp.api_servers.is_empty(),
            "the join service named no API server"
        );
        crate::api_proxy::write(ctx.state, &resp.api_servers)?;
        write_durably(
            &ctx.state.leave_secret_file(),
            resp.leave_secret.as_bytes(),
            0o600,
        )?;
        let mut cfg = ctx.cfg.clone();
        cfg.pod_cidr = resp.pod_cidr;
        cfg.node_pod_subnet = resp.node_pod_subnet;
        cfg.service_cidr = resp.service_cidr;
        cfg.etcd_join = resp.etcd;
        if let Some(secs) = resp.cert_validity_secs {
            cfg.cert_validity_secs = secs;
        }
        anyhow::ensure!(
            cfg.role == crate::node::NodeRole::Worker || cfg.etcd_join.is_some(),
            "the join service admitted this master without an etcd membership"
        );
        if let Some(j) = cfg.joined.as_mut() {
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
            && ctx.state.api_servers_file().is_file()
            && expected_files(ctx).iter().all(|f| pki.join(f).is_file()))
    }
}
