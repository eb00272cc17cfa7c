//! `/configure`: the cluster's PKI (CA, certificates, kubeconfigs, service
//! account keys); idempotent, keys 0600.

use super::{Phase, PhaseContext};

/// Makes the cluster's PKI.
pub struct Configure;

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
        crate::pki::ensure(&ctx.state.pki_dir(), &ctx.cfg.pki_config()?)?;
        Ok(())
    }
    fn check(&self, ctx: &PhaseContext) -> anyhow::Result<bool> {
        Ok(crate::pki::is_complete(&ctx.state.pki()))
    }
}
