//! `/configure`: the cluster's PKI (CA, certificates, kubeconfigs, service
//! account keys); idempotent, keys 0600.

use super::{Phase, PhaseContext};

/// Makes the cluster's PKI.
pub struct Configure;

fn pki_config(ctx: &PhaseContext) -> anyhow::Result<crate::pki::PkiConfig> {
    let cfg = ctx.cfg;
    let hostname = nix::unistd::gethostname()?.to_string_lossy().into_owned();
    Ok(crate::pki::PkiConfig {
        node_name: cfg.node_name.clone(),
        node_ips: vec![cfg.node_ip],
        hostnames: vec![hostname],
        service_cidr: cfg.service_cidr.clone(),
        cluster_domain: "cluster.local".into(),
        api_server: cfg.api_server(),
    })
}

impl Phase for Configure {
    fn id(&self) -> String {
        "/configure".into()
    }
    fn description(&self) -> String {
        "the cluster's certificates and kubeconfigs".into()
    }
    fn requires(&self) -> Vec<String> {
        vec!["/checks".into()]
    }
    fn execute(&self, ctx: &PhaseContext) -> anyhow::Result<()> {
        crate::pki::ensure(&ctx.state.pki_dir(), &pki_config(ctx)?)?;
        Ok(())
    }
    fn check(&self, ctx: &PhaseContext) -> anyhow::Result<bool> {
        Ok(crate::pki::is_complete(&ctx.state.pki()))
    }
}
