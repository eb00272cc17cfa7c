//! `./install`: verify, then run the saved plan of phases to a working
//! cluster with the app on it.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::kube::Kubectl;
use crate::node::{self, Layout, NodeConfig, Ports};
use crate::plan::{write_durably, PhaseState, Plan};
use crate::supervisor;

/// What `./install` was asked to do.
#[derive(Clone, Debug)]
pub struct InstallOptions {
    /// The extracted bundle.
    pub bundle_dir: PathBuf,
    /// Where everything the install writes goes.
    pub state_dir: PathBuf,
    /// The node's address (default: the address of the default route's interface).
    pub advertise_addr: Option<IpAddr>,
    /// The node's name (default: the hostname).
    pub node_name: Option<String>,
    /// The pod network.
    pub pod_cidr: String,
    /// The service network.
    pub service_cidr: String,
    /// cgroup under which pods run (several nodes on one machine need one each).
    pub cgroup_root: Option<String>,
    /// Listening ports.
    pub ports: Ports,
    /// Node profile from the manifest (default: the first).
    pub profile: Option<String>,
    /// Preflight checks to skip.
    pub skip_checks: Vec<String>,
    /// Load kernel modules and set sysctls the checks need.
    pub autofix: bool,
    /// Continue a failed or interrupted install.
    pub resume: bool,
    /// How long to wait for the app and each hook.
    pub app_timeout: Duration,
    /// `kind: smtp` / `kind: alerttarget` resources: where alerts go.
    pub config: Option<PathBuf>,
}

/// Progress of an install, implemented by the CLI.
pub trait InstallReporter {
    /// A phase starts.
    fn phase_started(&self, _id: &str, _description: &str) {}
    /// A phase ended well after `secs`.
    fn phase_completed(&self, _id: &str, _secs: f64) {}
    /// A phase was already done (resume).
    fn phase_skipped(&self, _id: &str) {}
    /// A phase failed.
    fn phase_failed(&self, _id: &str, _error: &str) {}
    /// Text for the user (the preflight table, notes).
    fn note(&self, _text: &str) {}
}

/// What the install left behind, for the closing summary.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InstallSummary {
    /// The app.
    pub app: String,
    /// Its version.
    pub version: String,
    /// The admin kubeconfig.
    pub kubeconfig: PathBuf,
    /// kubectl from the bundle.
    pub kubectl: PathBuf,
    /// The node's name and address.
    pub node: String,
    /// The node's address.
    pub node_ip: IpAddr,
    /// The app's services: `namespace/name type cluster-ip ports`.
    pub endpoints: Vec<String>,
    /// Each phase and the seconds it took.
    pub phases: Vec<(String, f64)>,
}

const PHASES: &[(&str, &str)] = &[
    ("/checks", "preflight checks"),
    ("/configure", "certificates and configuration"),
    (
        "/services",
        "start etcd, containerd, the image registry and Kubernetes",
    ),
    ("/wait", "wait for the API server and the node"),
    ("/system", "cluster system settings"),
    ("/app", "apply the app's resources and wait for them"),
];

/// The default route's interface address, else the first non-loopback IPv4.
pub fn detect_node_ip() -> anyhow::Result<IpAddr> {
    let routes = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    let default_if = routes
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 2 && f[1] == "00000000").then(|| f[0].to_string())
        })
        .next();
    let addrs: Vec<(String, IpAddr)> = nix::ifaddrs::getifaddrs()?
        .filter_map(|i| {
            let a = i.address?;
            let v4 = a.as_sockaddr_in()?;
            Some((i.interface_name, IpAddr::V4(v4.ip())))
        })
        .filter(|(_, ip)| !ip.is_loopback())
        .collect();
    if let Some(ifname) = default_if {
        if let Some((_, ip)) = addrs.iter().find(|(n, _)| *n == ifname) {
            return Ok(*ip);
        }
    }
    addrs.first().map(|(_, ip)| *ip).ok_or_else(|| {
        anyhow::anyhow!(
            "this machine has no non-loopback IPv4 address; give one with --advertise-addr"
        )
    })
}

fn node_name(opts: &InstallOptions) -> anyhow::Result<String> {
    let raw = match &opts.node_name {
        Some(n) => n.clone(),
        None => nix::unistd::gethostname()?.to_string_lossy().into_owned(),
    };
    let name: String = raw
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let name = name.trim_matches(|c| c == '-' || c == '.').to_string();
    anyhow::ensure!(
        !name.is_empty(),
        "cannot make a node name of `{raw}`; give one with --node-name"
    );
    Ok(name)
}

/// The first /24 of an IPv4 pod network, for the single node's bridge.
fn first_subnet(cidr: &str) -> anyhow::Result<String> {
    let (base, bits) = cidr
        .split_once('/')
        .ok_or_else(|| anyhow::anyhow!("`{cidr}` is not a CIDR like 10.244.0.0/16"))?;
    let ip: std::net::Ipv4Addr = base
        .parse()
        .map_err(|_| anyhow::anyhow!("`{cidr}` is not an IPv4 CIDR"))?;
    let bits: u8 = bits
        .parse()
        .map_err(|_| anyhow::anyhow!("`{cidr}` has a bad prefix length"))?;
    anyhow::ensure!(bits <= 24, "the pod network {cidr} is smaller than a /24");
    let o = ip.octets();
    Ok(format!("{}.{}.{}.0/24", o[0], o[1], o[2]))
}

fn new_config(opts: &InstallOptions, profile: Option<String>) -> anyhow::Result<NodeConfig> {
    let node_ip = match opts.advertise_addr {
        Some(ip) => ip,
        None => detect_node_ip()?,
    };
    Ok(NodeConfig {
        bundle_dir: std::fs::canonicalize(&opts.bundle_dir)?,
        state_dir: opts.state_dir.clone(),
        node_name: node_name(opts)?,
        node_ip,
        node_pod_subnet: first_subnet(&opts.pod_cidr)?,
        pod_cidr: opts.pod_cidr.clone(),
        service_cidr: opts.service_cidr.clone(),
        cgroup_root: opts.cgroup_root.clone(),
        ports: opts.ports.clone(),
        profile,
        app_timeout_secs: opts.app_timeout.as_secs(),
    })
}

/// Verifies the bundle, then runs (or resumes) the install plan.
pub fn install(
    opts: &InstallOptions,
    reporter: &dyn InstallReporter,
) -> anyhow::Result<InstallSummary> {
    anyhow::ensure!(
        nix::unistd::geteuid().is_root(),
        "installing needs root: it starts system services, mounts filesystems and changes iptables\nhint: run `sudo ./install`"
    );
    // 1. Nothing on the machine changes before the whole bundle checks out.
    let v = tele_bundle::verify::verify(&opts.bundle_dir)?;
    if !v.problems.is_empty() {
        anyhow::bail!(
            "the bundle is damaged, nothing was changed:\n  {}\nhint: copy the bundle again from the vendor",
            v.problems.join("\n  ")
        );
    }
    reporter.note(&format!(
        "bundle verified: {} files and {} blobs",
        v.files_checked, v.blobs_checked
    ));
    let manifest = tele_manifests::load_manifest(&opts.bundle_dir.join("app.yaml"))?;
    let layout = Layout::new(&opts.state_dir);
    // Bad --config input is refused before anything changes.
    let alerting = opts
        .config
        .as_deref()
        .map(crate::alerting::parse)
        .transpose()?;

    let (cfg, mut plan) = match Plan::load(&opts.state_dir)? {
        Some(plan) if opts.resume => {
            let cfg: NodeConfig = serde_json::from_slice(&std::fs::read(layout.config_file())?)?;
            (cfg, plan)
        }
        Some(plan) if plan.is_complete() => anyhow::bail!(
            "{} is already installed from {}\nhint: see `tele status --state-dir {}`, or remove it with `tele uninstall`",
            manifest.metadata.name,
            opts.state_dir.display(),
            opts.state_dir.display()
        ),
        Some(plan) => anyhow::bail!(
            "an earlier install stopped at phase {} (state directory {})\nhint: run `./install --resume` to carry on, or `./install --uninstall` to start over",
            plan.next().map(|p| p.id.as_str()).unwrap_or("?"),
            opts.state_dir.display()
        ),
        None if opts.resume => anyhow::bail!("there is no install to resume in {}\nhint: run ./install without --resume", opts.state_dir.display()),
        None => {
            let profile = match &opts.profile {
                Some(p) => {
                    anyhow::ensure!(
                        manifest.node_profiles.iter().any(|n| &n.name == p),
                        "the manifest has no node profile `{p}` (it has: {})",
                        manifest.node_profiles.iter().map(|n| n.name.as_str()).collect::<Vec<_>>().join(", ")
                    );
                    Some(p.clone())
                }
                None => manifest.node_profiles.first().map(|n| n.name.clone()),
            };
            let cfg = new_config(opts, profile)?;
            std::fs::create_dir_all(&opts.state_dir)?;
            let mut bytes = serde_json::to_vec_pretty(&cfg)?;
            bytes.push(b'\n');
            write_durably(&layout.config_file(), &bytes, 0o600)?;
            let mut phases: Vec<(&str, &str)> = PHASES.to_vec();
            if opts.bundle_dir.join("monitoring").is_dir() {
                phases.push(("/monitoring", "the monitoring stack, its database and alerts"));
            }
            for hook in ["install", "postInstall"] {
                if manifest.hooks.get(hook).is_some() {
                    phases.push(if hook == "install" { ("/hooks/install", "the install hook") } else { ("/hooks/postInstall", "the postInstall hook") });
                }
            }
            let plan = Plan::create(&opts.state_dir, "install", &phases)?;
            (cfg, plan)
        }
    };

    if let Some(a) = &alerting {
        crate::alerting::save(&opts.state_dir, a)?;
    }
    let ctx = Context {
        cfg: &cfg,
        layout: &layout,
        opts,
        manifest: &manifest,
        reporter,
    };
    let ids: Vec<String> = plan.phases.iter().map(|p| p.id.clone()).collect();
    for id in ids {
        let phase = plan
            .phases
            .iter()
            .find(|p| p.id == id)
            .expect("phase")
            .clone();
        if phase.state == PhaseState::Completed {
            reporter.phase_skipped(&id);
            continue;
        }
        reporter.phase_started(&id, &phase.description);
        plan.start(&id)?;
        match ctx.run_phase(&id) {
            Ok(()) => {
                plan.complete(&id)?;
                let secs = plan
                    .phases
                    .iter()
                    .find(|p| p.id == id)
                    .and_then(|p| p.duration_secs())
                    .unwrap_or(0.0);
                reporter.phase_completed(&id, secs);
            }
            Err(e) => {
                let text = format!("{e:#}");
                plan.fail(&id, &text)?;
                reporter.phase_failed(&id, &text);
                return Err(e.context(format!(
                    "phase {id} failed\nhint: fix the cause, then run `./install --resume` (the plan: `tele plan --state-dir {}`)",
                    opts.state_dir.display()
                )));
            }
        }
    }
    ctx.summary(&plan)
}

struct Context<'a> {
    cfg: &'a NodeConfig,
    layout: &'a Layout,
    opts: &'a InstallOptions,
    manifest: &'a tele_manifests::Manifest,
    reporter: &'a dyn InstallReporter,
}

impl Context<'_> {
    fn kubectl(&self) -> anyhow::Result<Kubectl> {
        let bins = node::runtime_binaries(&self.cfg.bundle_dir)?;
        let bin = bins
            .get("kubectl")
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("the runtime has no kubectl"))?;
        Ok(Kubectl::new(bin, self.layout.admin_kubeconfig()))
    }

    fn run_phase(&self, id: &str) -> anyhow::Result<()> {
        match id {
            "/checks" => self.checks(),
            "/configure" => self.configure(),
            "/services" => self.services(),
            "/wait" => {
                // The services may have stopped since /services ran (a reboot before --resume):
                // making sure they run is idempotent and cheap.
                self.services()?;
                let k = self.kubectl()?;
                k.wait_api(Duration::from_secs(180))
                    .and_then(|_| k.wait_node_ready(&self.cfg.node_name, Duration::from_secs(180)))
                    .map_err(|e| anyhow::anyhow!("{e}\n{}", self.service_errors()))
            }
            "/system" => self.system(),
            "/app" => self.app(),
            "/monitoring" => self.monitoring(),
            hook if hook.starts_with("/hooks/") => self.hook(&hook["/hooks/".len()..]),
            other => anyhow::bail!("unknown phase {other}"),
        }
    }

    fn checks(&self) -> anyhow::Result<()> {
        let profile = self
            .cfg
            .profile
            .as_ref()
            .and_then(|p| self.manifest.node_profiles.iter().find(|n| &n.name == p))
            .cloned();
        let ports = self.cfg.ports.clone();
        let cfg = crate::preflight::PreflightConfig {
            profile,
            state_dir: self.cfg.state_dir.clone(),
            ports: vec![
                (ports.api, "kube-apiserver"),
                (ports.etcd_client, "etcd"),
                (ports.etcd_peer, "etcd peers"),
                (ports.kubelet, "kubelet"),
                (ports.registry, "image registry"),
                (10248, "kubelet healthz"),
                (10249, "kube-proxy metrics"),
                (10256, "kube-proxy healthz"),
                (10257, "kube-controller-manager"),
                (10259, "kube-scheduler"),
            ],
            skip: self.opts.skip_checks.clone(),
            autofix: self.opts.autofix,
            proc_root: "/proc".into(),
            sys_root: "/sys".into(),
        };
        let results = crate::preflight::run(&cfg)?;
        self.reporter
            .note(&crate::preflight::render_table(&results));
        anyhow::ensure!(
            !crate::preflight::failed(&results),
            "preflight checks failed (see the table above)\nhint: fix what the table says, rerun with --autofix, or skip a check with --skip-check NAME"
        );
        Ok(())
    }

    fn configure(&self) -> anyhow::Result<()> {
        let cfg = self.cfg;
        let l = self.layout;
        let hostname = nix::unistd::gethostname()?.to_string_lossy().into_owned();
        crate::pki::ensure(
            &l.pki(),
            &crate::pki::PkiConfig {
                node_name: cfg.node_name.clone(),
                node_ips: vec![cfg.node_ip],
                hostnames: vec![hostname],
                service_cidr: cfg.service_cidr.clone(),
                cluster_domain: "cluster.local".into(),
                api_server: format!("https://{}:{}", node::fmt_host(cfg.node_ip), cfg.ports.api),
            },
        )?;
        let bins = node::runtime_binaries(&cfg.bundle_dir)?;
        let sandbox = node::sandbox_image(&cfg.bundle_dir)?;
        write_durably(
            &l.containerd().join("config.toml"),
            node::containerd_config(l, &bins, &sandbox).as_bytes(),
            0o644,
        )?;
        let ca = l.pki().join("ca.crt");
        for host in node::image_hosts(&cfg.bundle_dir)? {
            write_durably(
                &l.certs_d().join(&host).join("hosts.toml"),
                node::hosts_toml(&host, cfg, &ca).as_bytes(),
                0o644,
            )?;
        }
        write_durably(
            &l.cni_conf().join("10-tele.conflist"),
            node::cni_conflist(cfg).as_bytes(),
            0o644,
        )?;
        write_durably(
            &l.kube_config_dir().join("kubelet.yaml"),
            node::kubelet_config(cfg, l).as_bytes(),
            0o644,
        )?;
        std::fs::create_dir_all(l.kubelet_root())?;
        std::fs::create_dir_all(l.etcd_data())?;
        set_mode(&l.etcd_data(), 0o700)?;
        if let Some(root) = &cfg.cgroup_root {
            create_cgroup_root(root)?;
        }
        // The agent and the registry run from a copy of this binary in the state directory.
        let me = std::env::current_exe()?;
        let tele = l.tele();
        std::fs::create_dir_all(tele.parent().expect("bin dir"))?;
        if std::fs::read(&tele).ok() != std::fs::read(&me).ok() {
            let tmp = tele.with_extension("tmp");
            std::fs::copy(&me, &tmp)?;
            set_mode(&tmp, 0o755)?;
            std::fs::rename(&tmp, &tele)?;
        }
        Ok(())
    }

    fn services(&self) -> anyhow::Result<()> {
        let bins = node::runtime_binaries(&self.cfg.bundle_dir)?;
        let specs = crate::components::services(self.cfg, self.layout, &bins)?;
        supervisor::apply_services(&self.cfg.state_dir, &self.layout.tele(), &specs)
    }

    /// The last error lines of each service's log, for a failed wait.
    fn service_errors(&self) -> String {
        let mut out = String::new();
        let logs = self.layout.logs();
        for name in [
            "etcd",
            "containerd",
            "kube-apiserver",
            "kubelet",
            "registry",
        ] {
            let text =
                std::fs::read_to_string(logs.join(format!("{name}.log"))).unwrap_or_default();
            let errors: Vec<&str> = text
                .lines()
                .filter(|l| {
                    l.starts_with('E')
                        || l.starts_with('F')
                        || l.contains("level=error")
                        || l.contains("level=fatal")
                })
                .collect();
            if let Some(last) = errors.last() {
                out.push_str(&format!(
                    "{name}: {}\n",
                    last.chars().take(300).collect::<String>()
                ));
            }
        }
        format!("{out}logs: {}", logs.display())
    }

    fn system(&self) -> anyhow::Result<()> {
        let k = self.kubectl()?;
        let node = format!("node/{}", self.cfg.node_name);
        k.run(&[
            "label",
            "--overwrite",
            &node,
            "node-role.kubernetes.io/control-plane=",
            "node-role.kubernetes.io/master=",
        ])?;
        // Pods cannot be created before the namespace's default service account exists.
        crate::kube::poll(
            Duration::from_secs(120),
            "the default service account",
            || {
                Ok(
                    k.run(&["get", "serviceaccount", "default", "-n", "default"])
                        .is_ok(),
                )
            },
        )
    }

    fn app(&self) -> anyhow::Result<()> {
        let k = self.kubectl()?;
        let resources = self.cfg.bundle_dir.join("resources");
        let hook_files: Vec<PathBuf> = self
            .manifest
            .hooks
            .files()
            .map(|p| resources.join(p))
            .collect();
        let mut first = Vec::new();
        let mut rest = Vec::new();
        for entry in walkdir::WalkDir::new(&resources).sort_by_file_name() {
            let entry = entry?;
            if !entry.file_type().is_file() || hook_files.iter().any(|h| h == entry.path()) {
                continue;
            }
            let text = std::fs::read_to_string(entry.path())?;
            let (f, r) = crate::kube::split_by_priority(&text);
            first.extend(f);
            rest.extend(r);
        }
        let work = self.cfg.state_dir.join("app");
        let timeout = Duration::from_secs(self.cfg.app_timeout_secs);
        let mut applied = Vec::new();
        for (name, docs) in [
            ("0-namespaces-crds.yaml", &first),
            ("1-resources.yaml", &rest),
        ] {
            if docs.is_empty() {
                continue;
            }
            let file = work.join(name);
            write_durably(&file, docs.join("---\n").as_bytes(), 0o600)?;
            applied.extend(k.apply(&file)?);
            if name.starts_with('0') {
                let _ = k.run(&[
                    "wait",
                    "--for=condition=established",
                    "crd",
                    "--all",
                    "--timeout=60s",
                ]);
            }
        }
        for obj in &applied {
            k.wait_ready(obj, timeout)?;
        }
        self.reporter
            .note(&format!("{} resources applied and ready", applied.len()));
        Ok(())
    }

    fn monitoring(&self) -> anyhow::Result<()> {
        let summary =
            crate::monitoring_phase::install_monitoring(self.cfg, self.layout, &self.kubectl()?)?;
        self.reporter.note(&summary);
        Ok(())
    }

    fn hook(&self, name: &str) -> anyhow::Result<()> {
        let hook = self
            .manifest
            .hooks
            .get(name)
            .ok_or_else(|| anyhow::anyhow!("the manifest has no {name} hook"))?;
        let file = match &hook.job {
            tele_manifests::HookJob::Inline(text) => {
                let f = self
                    .cfg
                    .state_dir
                    .join("app")
                    .join(format!("hook-{name}.yaml"));
                write_durably(&f, text.as_bytes(), 0o600)?;
                f
            }
            tele_manifests::HookJob::File(p) => self.cfg.bundle_dir.join("resources").join(p),
        };
        self.kubectl()?
            .run_hook(name, &file, Duration::from_secs(self.cfg.app_timeout_secs))
    }

    fn summary(&self, plan: &Plan) -> anyhow::Result<InstallSummary> {
        let k = self.kubectl()?;
        let endpoints = k
            .run(&["get", "services", "-A", "-o", "jsonpath={range .items[*]}{.metadata.namespace}/{.metadata.name} {.spec.type} {.spec.clusterIP} {.spec.ports[*].port}{\"\\n\"}{end}"])
            .map(|s| s.lines().filter(|l| !l.starts_with("default/kubernetes ")).map(String::from).collect())
            .unwrap_or_default();
        let bins = node::runtime_binaries(&self.cfg.bundle_dir)?;
        Ok(InstallSummary {
            app: self.manifest.metadata.name.clone(),
            version: self.manifest.metadata.version.to_string(),
            kubeconfig: self.layout.admin_kubeconfig(),
            kubectl: bins.get("kubectl").cloned().unwrap_or_default(),
            node: self.cfg.node_name.clone(),
            node_ip: self.cfg.node_ip,
            endpoints,
            phases: plan
                .phases
                .iter()
                .map(|p| (p.id.clone(), p.duration_secs().unwrap_or(0.0)))
                .collect(),
        })
    }
}

fn set_mode(p: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
}

/// Creates the cgroup `root` in every controller hierarchy (cgroup v1), as the
/// kubelet expects its `cgroupRoot` to exist.
fn create_cgroup_root(root: &str) -> anyhow::Result<()> {
    let base = Path::new("/sys/fs/cgroup");
    let rel = root.trim_start_matches('/');
    for entry in std::fs::read_dir(base)? {
        let dir = entry?.path();
        if dir.join("cgroup.procs").exists() || dir.join("tasks").exists() {
            std::fs::create_dir_all(dir.join(rel))?;
        }
    }
    if base.join("cgroup.controllers").exists() {
        std::fs::create_dir_all(base.join(rel))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_subnet_is_the_first_slash_24() {
        assert_eq!(first_subnet("10.244.0.0/16").unwrap(), "10.244.0.0/24");
        assert!(first_subnet("10.244.0.0/28").is_err());
        assert!(first_subnet("nonsense").is_err());
    }
}
