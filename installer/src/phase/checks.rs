//! `/checks`: preflight. Nothing on the machine changes unless `--autofix`
//! is given; the results are saved for the install's JSON output.

use super::{Phase, PhaseContext};
use crate::durable::write_durably;

/// Runs the preflight checks.
pub struct Checks;

/// Preflight found the machine unfit.
#[derive(Debug, thiserror::Error)]
#[error("preflight checks failed: {}", failed_names(.results))]
pub struct PreflightFailed {
    /// The results.
    pub results: Vec<crate::preflight::CheckResult>,
}

fn failed_names(results: &[crate::preflight::CheckResult]) -> String {
    results
        .iter()
        .filter(|r| r.status == crate::preflight::Status::Fail)
        .map(|r| r.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Where the last results are kept.
pub fn results_file(state: &crate::state_dir::StateDir) -> std::path::PathBuf {
    state.root().join("preflight.json")
}

/// What preflight checks on the node `cfg` describes: its profile's
/// requirements, the ports its components listen on, the state directory's
/// filesystem, its cloud.
pub fn preflight_config(
    cfg: &crate::node::NodeConfig,
    manifest: &tele_manifests::Manifest,
    state: &crate::state_dir::StateDir,
    skip: &[String],
    autofix: bool,
) -> crate::preflight::PreflightConfig {
    let profile = cfg
        .profile
        .as_ref()
        .and_then(|p| manifest.node_profiles.iter().find(|n| &n.name == p))
        .cloned();
    let ports = &cfg.ports;
    let mut wanted = vec![
        (ports.kubelet, "kubelet"),
        (ports.registry, "image registry"),
        (ports.api_proxy, "local API endpoint"),
        (10248, "kubelet healthz"),
        (10249, "kube-proxy metrics"),
        (10256, "kube-proxy healthz"),
    ];
    if cfg.role == crate::node::NodeRole::Master {
        wanted.extend([
            (ports.api, "kube-apiserver"),
            (ports.etcd_client, "etcd"),
            (ports.etcd_peer, "etcd peers"),
            (ports.join, "join service"),
            (10257, "kube-controller-manager"),
            (10259, "kube-scheduler"),
        ]);
    }
    crate::preflight::PreflightConfig {
        profile,
        state_dir: state.root().to_path_buf(),
        ports: wanted,
        skip: skip.to_vec(),
        autofix,
        proc_root: "/proc".into(),
        sys_root: "/sys".into(),
        cloud: cfg.cloud.clone().zip(cfg.cloud_settings.clone()),
    }
}

impl Phase for Checks {
    fn id(&self) -> String {
        "/checks".into()
    }
    fn description(&self) -> String {
        "preflight checks".into()
    }
    fn execute(&self, ctx: &PhaseContext) -> anyhow::Result<()> {
        let cfg = preflight_config(
            ctx.cfg,
            ctx.manifest,
            ctx.state,
            ctx.skip_checks,
            ctx.autofix,
        );
        let results = crate::preflight::run(&cfg)?;
        let table = crate::preflight::render_table(&results);
        ctx.reporter.note(&table);
        write_durably(
            &results_file(ctx.state),
            &serde_json::to_vec_pretty(&results)?,
            0o600,
        )?;
        if crate::preflight::failed(&results) {
            return Err(PreflightFailed { results }.into());
        }
        // The profile's volumes that the install is to make.
        crate::preflight::create_volumes(cfg.profile.as_ref())?;
        Ok(())
    }
    fn check(&self, _ctx: &PhaseContext) -> anyhow::Result<bool> {
        // Checks change nothing worth keeping: after an interruption they run again.
        Ok(false)
    }
}
