//! Certificate renewal. Every node renews its own certificates and
//! kubeconfigs once a third of their life is left (so at two thirds of it
//! at the latest), then restarts the services that read them when they
//! start, one at a time, each once the one before is ready; pods keep
//! running throughout. A master issues them from the cluster CA it holds
//! ([`crate::pki::ensure`]); a worker asks the master it joined through
//! (`/v1/renew`), proving who it is with its kubelet's client certificate,
//! so it must renew while that certificate is still valid.
//!
//! The health checker runs [`renew_if_due`] every round, under systemd and
//! the tele agent alike. Nothing happens while an install, resume or
//! uninstall holds the state directory's lock: the next round tries again.
//! `tele certificates renew` runs [`renew`] at once, for every certificate,
//! and may change the validity of those a master issues from then on.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::component::{self, NodeContext};
use crate::node::{NodeConfig, NodeRole};
use crate::state_dir::StateDir;

/// How long a restarted service may take to become ready.
const READY_LIMIT: Duration = Duration::from_secs(180);

/// What a renewal did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Renewal {
    /// The files renewed, relative to the PKI directory.
    pub renewed: Vec<String>,
    /// The services restarted, in order.
    pub restarted: Vec<String>,
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// True when one of the certificates or kubeconfigs in `pki_dir` (the CAs'
/// too) has a third of its life or less left, or the kubelet's own client
/// certificate is past the point where it should have rotated it
/// ([`crate::kubelet_client::is_due`]). A master remakes a due CA
/// certificate from its key; a worker gets it from its master.
pub fn is_due(pki_dir: &std::path::Path) -> bool {
    let now = now();
    crate::pki::expiries(pki_dir)
        .iter()
        .any(|e| match e.file.as_str() {
            crate::pki::KUBELET_CLIENT_CURRENT => crate::kubelet_client::is_due(e, now),
            _ => e.seconds_left(now) <= (e.not_after - e.not_before) / 3,
        })
}

/// What `tele certificates renew` asks for.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RenewOptions {
    /// Reissue every leaf certificate and kubeconfig, due or not.
    pub all: bool,
    /// On a master: the validity of what it issues from now on, this
    /// renewal included (seconds).
    pub validity_secs: Option<u64>,
}

/// Renews this node's certificates when [`is_due`], and restarts what uses
/// them; `Ok(None)` when nothing was due or the state directory is locked.
pub fn renew_if_due(state: &StateDir) -> anyhow::Result<Option<Renewal>> {
    if !is_due(&state.pki_dir()) {
        return Ok(None);
    }
    let Ok(_lock) = crate::install::try_lock(state) else {
        return Ok(None);
    };
    renew(state, RenewOptions::default()).map(Some)
}

/// Renews what is due (everything with `opts.all`) and restarts, in start
/// order, every service whose credentials changed. The caller holds the
/// state directory's lock.
pub fn renew(state: &StateDir, opts: RenewOptions) -> anyhow::Result<Renewal> {
    let mut cfg = NodeConfig::load(state)?;
    let master = state.pki().key("ca").is_file();
    if let Some(secs) = opts.validity_secs {
        if !master {
            return Err(crate::error::InstallError::bad_input(
                "a worker's certificates are issued by the master it joined through",
                "set the validity with `tele certificates renew --validity` on that master; \
                 then run `tele certificates renew` here",
            )
            .into());
        }
        if secs != cfg.cert_validity_secs {
            cfg.cert_validity_secs = secs;
            cfg.save(state)?;
        }
    }
    let node = NodeContext::new(cfg.clone(), state.clone())?;
    let components = component::for_node(&cfg);
    let renewed = if master && opts.all {
        crate::pki::reissue(&state.pki_dir(), &cfg.pki_config()?)?.written
    } else if master {
        crate::pki::ensure(&state.pki_dir(), &cfg.pki_config()?)?.written
    } else {
        renew_worker(state, &cfg)?
    };
    // After a reissue of everything, the kubelet starts again on its
    // kubeconfig's new client certificate too.
    if opts.all {
        crate::kubelet_client::seed(&state.pki(), now(), true)?;
    }
    // Certificates a component makes for itself (the join service's), and
    // the kubelet's client certificate when its own rotation failed.
    for c in &components {
        c.write_files(&node)?;
    }
    // Every service whose credentials differ from those it was started
    // with, whenever they were renewed (a renewal cut short by a crash is
    // completed here).
    let manager = crate::service::for_host(state);
    let mut restarted = Vec::new();
    let mut previous = None;
    for c in &components {
        let spec = component::service_of(c.as_ref(), &node)?;
        let stale = component::credentials_digest(c.as_ref(), &node).is_some()
            && !manager.is_current(&spec, previous);
        if stale {
            component::start_one(
                c.as_ref(),
                &node,
                manager.as_ref(),
                &crate::reporter::Silent,
                previous,
                READY_LIMIT,
            )?;
            restarted.push(c.name().to_string());
        }
        previous = Some(c.name());
    }
    let mut renewed = renewed;
    if master {
        renewed.extend(crate::monitoring_phase::renew_service_certs(
            &cfg, state, opts.all,
        )?);
    }
    Ok(Renewal { renewed, restarted })
}

/// A worker's certificates anew from the master it joined through.
fn renew_worker(state: &StateDir, cfg: &NodeConfig) -> anyhow::Result<Vec<String>> {
    anyhow::ensure!(
        cfg.role == NodeRole::Worker,
        "this master holds no cluster CA key ({})",
        state.pki().key("ca").display()
    );
    let joined = cfg
        .joined
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("this worker has no record of the master it joined"))?;
    let pki = state.pki();
    let ca = std::fs::read_to_string(pki.ca_cert())?;
    let identity = kubeconfig_identity(&std::fs::read_to_string(pki.kubeconfig("kubelet"))?)
        .ok_or_else(|| anyhow::anyhow!("the kubelet's kubeconfig holds no client certificate"))?;
    let resp = crate::join::client::renew(
        &joined.join_addr,
        &ca,
        &identity,
        &crate::join::RenewRequest {
            node_name: cfg.node_name.clone(),
        },
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    crate::phase::join::write_node_files(
        &state.pki_dir(),
        &resp.files,
        &crate::phase::join::WORKER_FILES,
    )
}

/// The client certificate and key (PEM) embedded in a kubeconfig.
fn kubeconfig_identity(text: &str) -> Option<String> {
    let field = |name: &str| crate::pki::kubeconfig_data(text, name);
    Some(format!(
        "{}\n{}",
        field("client-certificate-data")?,
        field("client-key-data")?
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_kubeconfigs_embedded_certificate_and_key_make_a_client_identity() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = crate::pki::PkiConfig {
            node_name: "w1".into(),
            node_ips: vec!["10.0.0.9".parse().unwrap()],
            hostnames: vec![],
            service_cidr: "10.100.0.0/16".into(),
            cluster_domain: "cluster.local".into(),
            api_server: "https://127.0.0.1:6445".into(),
            leaf_validity: crate::pki::DEFAULT_LEAF_VALIDITY,
            ca_validity: crate::pki::DEFAULT_CA_VALIDITY,
        };
        let pki = crate::pki::ensure(tmp.path(), &cfg).unwrap();
        let text = std::fs::read_to_string(pki.kubeconfig("kubelet")).unwrap();
        let pem = super::kubeconfig_identity(&text).unwrap();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
        assert!(pem.contains("PRIVATE KEY-----"));
        reqwest::Identity::from_pem(pem.as_bytes()).unwrap();
        assert_eq!(super::kubeconfig_identity("apiVersion: v1\n"), None);
    }
}
