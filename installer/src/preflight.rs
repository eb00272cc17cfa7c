//! Preflight checks: whether this machine can run the cluster, decided
//! before anything on it changes.
//!
//! Each check has a name (see [`check_names`]) that `--skip-check NAME`
//! accepts, and gives a [`CheckResult`] with a [`Status`], what it found and,
//! when something is wrong, the command that fixes it. [`render_table`] shows
//! them to people; [`failed`] says whether the install must stop.
//!
//! Requirements come from the chosen node profile; without one (or where it
//! is silent) these defaults apply: 2 CPUs and 2 GiB of RAM (kubeadm's
//! minimums; below them is a warning, not a failure), 10 GiB free space and
//! 100,000 free inodes on the filesystem of the state directory (etcd,
//! containerd's root and the logs live there).
//!
//! `--autofix` loads missing kernel modules with `modprobe` and writes `1` to
//! the two sysctls, then checks again (`Fixed` when that worked). These
//! changes last until the next reboot; making them permanent belongs to the
//! node configuration phase.

use crate::procfs::Procfs;
use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, UdpSocket};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use tele_manifests::NodeProfile;

/// Names of the checks, in the order they run.
const CHECK_NAMES: &[&str] = &[
    "os",
    "kernel",
    "kernel-modules",
    "sysctl-ip-forward",
    "sysctl-bridge-nf-call-iptables",
    "cpu",
    "ram",
    "disk-space",
    "inodes",
    "volumes",
    "ports",
    "conflicting-services",
    "etcd-fsync",
    "cloud-permissions",
];

/// Operating systems (`ID` in `/etc/os-release`) the installer is tested on.
const SUPPORTED_OS: &[&str] = &[
    "debian",
    "ubuntu",
    "rhel",
    "centos",
    "rocky",
    "almalinux",
    "sles",
    "amzn",
];

/// Kernel modules Kubernetes networking and containerd need.
const MODULES: &[&str] = &["br_netfilter", "overlay", "ip_tables", "nf_conntrack"];

/// Process names (`comm`, at most 15 characters) of services that would
/// fight over ports, the container runtime or etcd's data.
const CONFLICTING: &[&str] = &[
    "kubelet",
    "containerd",
    "containerd-shim",
    "dockerd",
    "etcd",
    "kube-apiserver",
    "kube-controller",
    "kube-scheduler",
    "kube-proxy",
];

const MIN_KERNEL: (u32, u32) = (3, 10);
const DEFAULT_MIN_CPUS: u32 = 2;
const DEFAULT_MIN_RAM: u64 = 2 << 30;
const DEFAULT_MIN_DISK: u64 = 10 << 30;
const DEFAULT_MIN_INODES: u64 = 100_000;
const FSYNC_ROUNDS: usize = 50;
const FSYNC_WRITE: usize = 2048;
/// etcd's own guidance: WAL fsync p99 under 10 ms.
const FSYNC_WARN: Duration = Duration::from_millis(10);
const FSYNC_FAIL: Duration = Duration::from_millis(100);

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The machine meets the requirement.
    Pass,
    /// The install can go on, but something is below what is recommended.
    Warn,
    /// The install must not go on.
    Fail,
    /// Not run: skipped with `--skip-check`.
    Skipped,
    /// Was wrong and `--autofix` fixed it.
    Fixed,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Pass => "pass",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
            Status::Skipped => "skipped",
            Status::Fixed => "fixed",
        })
    }
}

/// The result of one check.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CheckResult {
    /// The check's name, as `--skip-check` takes it.
    pub name: String,
    /// How it came out.
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// For a failure or warning: what to run or change.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

/// What to check and where.
#[derive(Debug, Clone)]
pub struct PreflightConfig {
    /// The node profile whose requirements apply (CPU, RAM, volumes, ports, OS).
    pub profile: Option<NodeProfile>,
    /// The state directory: disk space, inodes and fsync latency are measured
    /// on its filesystem (through its nearest existing parent if it does not
    /// exist yet).
    pub state_dir: PathBuf,
    /// TCP ports the cluster listens on, each with the component using it.
    pub ports: Vec<(u16, &'static str)>,
    /// Checks to skip, by name.
    pub skip: Vec<String>,
    /// Load missing modules and set the sysctls instead of failing.
    pub autofix: bool,
    /// Where procfs is mounted (`/proc`); tests use a fake tree. The `os`
    /// and `kernel` checks always read the real `/etc/os-release` and
    /// `uname`, and ports are always bound on the real network.
    pub proc_root: PathBuf,
    /// Where sysfs is mounted (`/sys`); tests use a fake tree.
    pub sys_root: PathBuf,
    /// The cloud machine the node runs on and how its components use the
    /// cloud (None: on premises).
    pub cloud: Option<(crate::cloud::Instance, crate::cloud::Settings)>,
}

impl PreflightConfig {
    /// Checks for `state_dir` on the real machine: no profile, no ports, no
    /// skips, no autofix.
    pub fn new(state_dir: impl Into<PathBuf>) -> PreflightConfig {
        PreflightConfig {
            profile: None,
            state_dir: state_dir.into(),
            ports: Vec::new(),
            skip: Vec::new(),
            autofix: false,
            proc_root: PathBuf::from("/proc"),
            sys_root: PathBuf::from("/sys"),
            cloud: None,
        }
    }
}

/// Why the checks could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    /// `--skip-check` named a check that does not exist.
    #[error("unknown check `{name}` in --skip-check (valid checks: {})", CHECK_NAMES.join(", "))]
    UnknownCheck {
        /// The name as given.
        name: String,
    },
}

/// The names `--skip-check` accepts, in the order the checks run.
pub fn check_names() -> &'static [&'static str] {
    CHECK_NAMES
}

/// Runs every check (those in `cfg.skip` report [`Status::Skipped`]).
pub fn run(cfg: &PreflightConfig) -> Result<Vec<CheckResult>, PreflightError> {
    run_with(cfg, &modprobe)
}

/// Whether any check failed: the install must stop.
pub fn failed(results: &[CheckResult]) -> bool {
    results.iter().any(|r| r.status == Status::Fail)
}

/// The results as an aligned table with the columns CHECK, RESULT and
/// DETAIL / WHAT TO DO; a fix goes on its own line under the detail.
pub fn render_table(results: &[CheckResult]) -> String {
    const HEADERS: [&str; 3] = ["CHECK", "RESULT", "DETAIL / WHAT TO DO"];
    let name_width = results
        .iter()
        .map(|r| r.name.len())
        .chain([HEADERS[0].len()])
        .max()
        .unwrap_or(0);
    let status_width = results
        .iter()
        .map(|r| r.status.to_string().len())
        .chain([HEADERS[1].len()])
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    let mut line = |a: &str, b: &str, c: &str| {
        let row = format!("{a:<name_width$}  {b:<status_width$}  {c}");
        out.push_str(row.trim_end());
        out.push('\n');
    };
    line(HEADERS[0], HEADERS[1], HEADERS[2]);
    for r in results {
        line(&r.name, &r.status.to_string(), &r.detail);
        if let Some(fix) = &r.fix {
            line("", "", &format!("-> {fix}"));
        }
    }
    out
}

/// Loads a kernel module; `Err` holds what went wrong.
type ModuleLoader<'a> = &'a dyn Fn(&str) -> Result<(), String>;

fn modprobe(module: &str) -> Result<(), String> {
    let out = Command::new("modprobe")
        .arg(module)
        .output()
        .map_err(|e| format!("cannot run modprobe: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

fn run_with(
    cfg: &PreflightConfig,
    load_module: ModuleLoader<'_>,
) -> Result<Vec<CheckResult>, PreflightError> {
    if let Some(name) = cfg.skip.iter().find(|s| !CHECK_NAMES.contains(&s.as_str())) {
        return Err(PreflightError::UnknownCheck { name: name.clone() });
    }
    let mut results = Vec::new();
    for &name in CHECK_NAMES {
        if cfg.skip.iter().any(|s| s == name) {
            results.push(CheckResult {
                name: name.to_string(),
                status: Status::Skipped,
                detail: "skipped with --skip-check".to_string(),
                fix: None,
            });
            continue;
        }
        let outcome = match name {
            "os" => check_os(cfg, &read_to_string(Path::new("/etc/os-release"))),
            "kernel" => check_kernel(&kernel_release()),
            "kernel-modules" => check_modules(cfg, load_module),
            "sysctl-ip-forward" => check_sysctl(cfg, "net.ipv4.ip_forward", None, load_module),
            "sysctl-bridge-nf-call-iptables" => check_sysctl(
                cfg,
                "net.bridge.bridge-nf-call-iptables",
                Some("br_netfilter"),
                load_module,
            ),
            "cpu" => check_cpu(cfg),
            "ram" => check_ram(cfg),
            "disk-space" => check_disk(cfg, Resource::Space),
            "inodes" => check_disk(cfg, Resource::Inodes),
            "volumes" => check_volumes(cfg),
            "ports" => check_ports(cfg),
            "conflicting-services" => check_conflicting(cfg),
            "etcd-fsync" => check_fsync(&cfg.state_dir),
            "cloud-permissions" => check_cloud_permissions(cfg),
            other => unreachable!("check `{other}` has no implementation"),
        };
        results.push(CheckResult {
            name: name.to_string(),
            status: outcome.status,
            detail: outcome.detail,
            fix: outcome.fix,
        });
    }
    Ok(results)
}

struct Outcome {
    status: Status,
    detail: String,
    fix: Option<String>,
}

fn pass(detail: impl Into<String>) -> Outcome {
    Outcome {
        status: Status::Pass,
        detail: detail.into(),
        fix: None,
    }
}

fn warn(detail: impl Into<String>, fix: impl Into<String>) -> Outcome {
    Outcome {
        status: Status::Warn,
        detail: detail.into(),
        fix: Some(fix.into()),
    }
}

fn fail(detail: impl Into<String>, fix: impl Into<String>) -> Outcome {
    Outcome {
        status: Status::Fail,
        detail: detail.into(),
        fix: Some(fix.into()),
    }
}

/// On a cloud: whether the credentials the node's Kubernetes components
/// will use (AWS: the instance profile's role) may call every action the
/// cloud provider needs.
fn check_cloud_permissions(cfg: &PreflightConfig) -> Outcome {
    let Some((instance, settings)) = &cfg.cloud else {
        return pass("on premises: no cloud API is used");
    };
    if instance.provider == "azure" {
        return check_azure_access(instance, settings);
    }
    use crate::cloud::{api, aws_permissions};
    let imds = settings
        .imds_endpoint
        .clone()
        .unwrap_or_else(|| crate::cloud::LINK_LOCAL.to_string());
    let credentials = match api::instance_profile(&imds) {
        Ok(c) => c,
        Err(e) => {
            return fail(
                format!("no credentials for the AWS provider: {e}"),
                "attach an instance profile whose role grants the AWS provider's actions (docs/clouds.md lists them) to the instance",
            )
        }
    };
    let client = match api::Client::new(&instance.region, credentials, &settings.endpoints) {
        Ok(c) => c,
        Err(e) => return fail(format!("cannot make an AWS client: {e}"), "report this"),
    };
    let source = client.credentials_source().to_string();
    let provider = judge(
        &source,
        "the AWS provider",
        "the role's IAM policy",
        aws_permissions::check(&client, instance),
    );
    let Some(wanted) = &settings.provision else {
        return provider;
    };
    // --provision calls EC2 with the SDKs' chain (which may be other keys).
    let var = |n: &str| std::env::var(n).ok().filter(|v| !v.trim().is_empty());
    let provisioning = api::Credentials::from_chain(&var, Some(&imds))
        .and_then(|c| api::Client::new(&instance.region, c, &settings.endpoints))
        .and_then(|client| {
            let target = crate::phase::provision::target(&settings.cluster_id, wanted, &imds)
                .map_err(|e| e.to_string())?;
            // Any of the machines' types: permissions do not depend on it.
            let kind = wanted
                .instance_types
                .values()
                .next()
                .unwrap_or(&instance.instance_type);
            let source = client.credentials_source().to_string();
            Ok((
                source,
                aws_permissions::check_provisioning(&client, &target, kind, instance),
            ))
        });
    let provisioning = match provisioning {
        Ok((source, report)) => judge(&source, "--provision", "their IAM policy", report),
        Err(e) => fail(
            format!("--provision: {e}"),
            "give the install AWS credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a credentials file, or the instance profile)",
        ),
    };
    // The worse of the two, saying both.
    let status = [provider.status, provisioning.status]
        .into_iter()
        .max_by_key(|s| match s {
            Status::Fail => 2,
            Status::Warn => 1,
            _ => 0,
        })
        .unwrap_or(Status::Pass);
    let fix = [provider.fix, provisioning.fix]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join("; ");
    Outcome {
        status,
        detail: format!("{}; {}", provider.detail, provisioning.detail),
        fix: (!fix.is_empty()).then_some(fix),
    }
}

/// What a permission report means for the check: `source`'s credentials,
/// needed by `user`, whose policy is `policy`.
fn judge(
    source: &str,
    user: &str,
    policy: &str,
    report: Result<crate::cloud::aws_permissions::Report, String>,
) -> Outcome {
    match report {
        Err(e) => fail(
            e,
            format!("check {policy}, and that the EC2 and ELB APIs (or their VPC endpoints, AWS_ENDPOINT_URL_*) are reachable"),
        ),
        Ok(r) if !r.missing.is_empty() => fail(
            format!(
                "{source} may not call {} action(s) {user} needs: {}",
                r.missing.len(),
                r.missing_text()
            ),
            format!(
                "add {} to {policy}: {}",
                if r.pass_role.is_some() { "these statements" } else { "this statement" },
                r.statement()
            ),
        ),
        Ok(r) if !r.unknown.is_empty() => warn(
            format!(
                "{source} may call {} action(s) {user} needs; no clear answer for {}",
                r.allowed.len(),
                r.unclear()
            ),
            format!("make sure {policy} grants them (docs/clouds.md lists the actions)"),
        ),
        Ok(r) => pass(format!(
            "{source} may call all {} actions {user} needs",
            r.allowed.len()
        )),
    }
}

/// On Azure: whether the components' identity (the service principal, or
/// the VM's managed identity) gets a token and may read the VM's resource
/// group and the VM, as the Azure provider does.
fn check_azure_access(
    instance: &crate::cloud::Instance,
    settings: &crate::cloud::Settings,
) -> Outcome {
    use crate::cloud::azure;
    let auth = settings.azure.clone().unwrap_or_default();
    let who = match &auth.client_id {
        Some(id) => format!("the service principal {id}"),
        None => "the VM's managed identity".to_string(),
    };
    let imds = settings
        .imds_endpoint
        .clone()
        .unwrap_or_else(|| crate::cloud::LINK_LOCAL.to_string());
    let token = match azure::token(&auth, &imds) {
        Ok(t) => t,
        Err(e) => {
            return fail(
                format!("{who} cannot sign in: {e}"),
                match auth.client_id {
                    Some(_) => "check --azure-tenant-id, --azure-client-id and AZURE_CLIENT_SECRET",
                    None => "give the VM a managed identity, or install with a service principal (--azure-client-id, --azure-tenant-id, AZURE_CLIENT_SECRET)",
                },
            )
        }
    };
    match azure::check_read_access(instance, &auth, &token) {
        Ok(()) if settings.provision.is_some() => {
            check_azure_provision_access(instance, &auth, &token, &who)
        }
        Ok(()) => pass(format!(
            "{who} may read the resource group {} and the VM {}",
            instance.resource_group, instance.hostname
        )),
        Err(e) => fail(
            format!("{who} may not read what the Azure provider reads: {e}"),
            format!(
                "assign {who} the Reader role (or a role with Microsoft.Resources/subscriptions/resourceGroups/read and Microsoft.Compute/virtualMachines/read) on the resource group {}",
                instance.resource_group
            ),
        ),
    }
}

/// With `--provision` on Azure: whether `who` may make and delete the
/// machines in the VM's resource group (Resource Manager's list of its
/// permissions there; writes have no dry run).
fn check_azure_provision_access(
    instance: &crate::cloud::Instance,
    auth: &crate::cloud::azure::Auth,
    token: &crate::cloud::Secret,
    who: &str,
) -> Outcome {
    let group = &instance.resource_group;
    match crate::cloud::azure::check_provision_access(instance, auth, token) {
        Ok(missing) if missing.is_empty() => pass(format!(
            "{who} may read the resource group {group} and the VM {}, and make and delete the flavor's machines there",
            instance.hostname
        )),
        Ok(missing) => fail(
            format!(
                "{who} may not make the flavor's machines (--provision): it lacks {}",
                missing.join(", ")
            ),
            format!(
                "assign {who} the Virtual Machine Contributor and Network Contributor roles (and Managed Identity Operator when this VM has user-assigned identities, else User Access Administrator, which gives the machines' own identities their roles) on the resource group {group}, or a role with: {}",
                missing.join(", ")
            ),
        ),
        Err(e) => fail(
            format!("{who} --provision: {e}"),
            format!("assign {who} a role on the resource group {group} that may list its permissions (any built-in role may)"),
        ),
    }
}

fn read_to_string(path: &Path) -> Option<String> {
    fs::read_to_string(path).ok()
}

fn check_os(cfg: &PreflightConfig, os_release: &Option<String>) -> Outcome {
    let Some(text) = os_release else {
        return warn(
            "cannot read /etc/os-release",
            "run on one of: debian, ubuntu, rhel, centos, rocky, almalinux, sles, amzn",
        );
    };
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map(|v| v.trim().trim_matches(|c| c == '"' || c == '\'').to_string())
            .unwrap_or_default()
    };
    let (id, version) = (field("ID"), field("VERSION_ID"));
    let pretty = match field("PRETTY_NAME") {
        p if p.is_empty() => format!("{id} {version}"),
        p => p,
    };
    let wanted = cfg
        .profile
        .as_ref()
        .map(|p| p.requirements.os.as_slice())
        .unwrap_or_default();
    if !wanted.is_empty() {
        let accepted = wanted.iter().any(|os| {
            os.name.eq_ignore_ascii_case(&id)
                && (os.versions.is_empty()
                    || os
                        .versions
                        .iter()
                        .any(|v| version == *v || version.starts_with(&format!("{v}."))))
        });
        let list: Vec<String> = wanted
            .iter()
            .map(|os| match os.versions.as_slice() {
                [] => os.name.clone(),
                versions => format!("{} {}", os.name, versions.join("/")),
            })
            .collect();
        return if accepted {
            pass(pretty)
        } else {
            fail(
                format!("{pretty}: the node profile requires {}", list.join(", ")),
                format!("install on {}", list.join(", ")),
            )
        };
    }
    if SUPPORTED_OS.contains(&id.as_str()) {
        pass(pretty)
    } else {
        warn(
            format!("{pretty} (ID={id}) is not a tested distribution"),
            format!(
                "tested: {}; the install may still work",
                SUPPORTED_OS.join(", ")
            ),
        )
    }
}

fn kernel_release() -> Option<String> {
    let uts = nix::sys::utsname::uname().ok()?;
    Some(uts.release().to_string_lossy().into_owned())
}

fn check_kernel(release: &Option<String>) -> Outcome {
    let Some(release) = release else {
        return warn(
            "cannot tell the kernel version (uname failed)",
            "use Linux 3.10 or newer",
        );
    };
    let mut numbers = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().ok());
    match (numbers.next().flatten(), numbers.next().flatten()) {
        (Some(major), Some(minor)) if (major, minor) >= MIN_KERNEL => {
            pass(format!("Linux {release}"))
        }
        (Some(_), Some(_)) => fail(
            format!("Linux {release} is older than 3.10"),
            "upgrade the kernel to 3.10 or newer",
        ),
        _ => warn(
            format!("cannot read the kernel version `{release}`"),
            "use Linux 3.10 or newer",
        ),
    }
}

/// Whether `module` is in the kernel: loaded as a module, built in, or (for
/// modules that do not show up as such in some environments) its effects
/// are visible.
fn module_loaded(cfg: &PreflightConfig, module: &str) -> bool {
    if cfg.sys_root.join("module").join(module).exists() {
        return true;
    }
    let listed = read_to_string(&cfg.proc_root.join("modules")).is_some_and(|text| {
        text.lines()
            .any(|l| l.split_whitespace().next() == Some(module))
    });
    listed
        || match module {
            // Built into the kernel: no module to list, but its effects show.
            "br_netfilter" => cfg.proc_root.join("sys/net/bridge").is_dir(),
            "ip_tables" => cfg.proc_root.join("net/ip_tables_names").exists(),
            "overlay" => read_to_string(&cfg.proc_root.join("filesystems")).is_some_and(|t| {
                t.lines()
                    .any(|l| l.split_whitespace().last() == Some("overlay"))
            }),
            "nf_conntrack" => cfg
                .proc_root
                .join("sys/net/netfilter/nf_conntrack_max")
                .exists(),
            _ => false,
        }
}

fn check_modules(cfg: &PreflightConfig, load_module: ModuleLoader<'_>) -> Outcome {
    let missing: Vec<&str> = MODULES
        .iter()
        .copied()
        .filter(|m| !module_loaded(cfg, m))
        .collect();
    if missing.is_empty() {
        return pass(MODULES.join(", "));
    }
    let fix = format!("modprobe -a {}, or rerun with --autofix", missing.join(" "));
    if !cfg.autofix {
        return fail(format!("not loaded: {}", missing.join(", ")), fix);
    }
    let errors: Vec<String> = missing
        .iter()
        .filter_map(|m| load_module(m).err().map(|e| format!("{m}: {e}")))
        .collect();
    let still: Vec<&str> = missing
        .iter()
        .copied()
        .filter(|m| !module_loaded(cfg, m))
        .collect();
    if still.is_empty() {
        return Outcome {
            status: Status::Fixed,
            detail: format!("loaded {}", missing.join(", ")),
            fix: None,
        };
    }
    let mut detail = format!("not loaded: {} (autofix failed", still.join(", "));
    if !errors.is_empty() {
        detail.push_str(": ");
        detail.push_str(&errors.join("; "));
    }
    detail.push(')');
    fail(
        detail,
        format!(
            "modprobe -a {} (install the kernel's extra modules package if they are missing)",
            still.join(" ")
        ),
    )
}

fn check_sysctl(
    cfg: &PreflightConfig,
    key: &str,
    module: Option<&str>,
    load_module: ModuleLoader<'_>,
) -> Outcome {
    let path = cfg.proc_root.join("sys").join(key.replace('.', "/"));
    let read = || read_to_string(&path).map(|v| v.trim().to_string());
    let shown = path.display();
    let fix = match module {
        Some(m) => format!("modprobe {m} && echo 1 > {shown}, or rerun with --autofix"),
        None => format!(
            "sysctl -w {key}=1 (and add `{key} = 1` to /etc/sysctl.d/), or rerun with --autofix"
        ),
    };
    let found = match read() {
        Some(v) if v == "1" => return pass(format!("{key} = 1")),
        Some(v) => format!("{key} = {v}"),
        None => match module {
            Some(m) => format!("{key} does not exist ({m} is not loaded)"),
            None => format!("cannot read {shown}"),
        },
    };
    if !cfg.autofix {
        return fail(found, fix);
    }
    let mut errors = Vec::new();
    if let (None, Some(m)) = (read(), module) {
        if let Err(e) = load_module(m) {
            errors.push(format!("modprobe {m}: {e}"));
        }
    }
    if let Err(e) = fs::write(&path, "1\n") {
        errors.push(format!("write {shown}: {e}"));
    }
    match read() {
        Some(v) if v == "1" => Outcome {
            status: Status::Fixed,
            detail: format!("{found}, set to 1"),
            fix: None,
        },
        _ => fail(
            format!("{found} (autofix failed: {})", errors.join("; ")),
            fix,
        ),
    }
}

fn cpu_count(cfg: &PreflightConfig) -> Option<u32> {
    let cpuinfo = read_to_string(&cfg.proc_root.join("cpuinfo"))?;
    let n = cpuinfo
        .lines()
        .filter(|l| l.split(':').next().map(str::trim) == Some("processor"))
        .count();
    u32::try_from(n).ok().filter(|&n| n > 0)
}

fn check_cpu(cfg: &PreflightConfig) -> Outcome {
    let Some(count) = cpu_count(cfg) else {
        return warn(
            "cannot count CPUs from cpuinfo",
            "check that procfs is mounted",
        );
    };
    let required = cfg
        .profile
        .as_ref()
        .and_then(|p| p.requirements.cpu.as_ref())
        .and_then(|r| r.min);
    match required {
        Some(min) if count < min => fail(
            format!("{}; the node profile requires at least {min}", cpus(count)),
            format!("use a machine with at least {min} CPUs"),
        ),
        Some(min) => pass(format!("{} (at least {min} required)", cpus(count))),
        None if count < DEFAULT_MIN_CPUS => warn(
            format!(
                "{}; Kubernetes recommends at least {DEFAULT_MIN_CPUS}",
                cpus(count)
            ),
            format!("use a machine with at least {DEFAULT_MIN_CPUS} CPUs"),
        ),
        None => pass(cpus(count)),
    }
}

fn cpus(count: u32) -> String {
    match count {
        1 => "1 CPU".to_string(),
        n => format!("{n} CPUs"),
    }
}

fn check_ram(cfg: &PreflightConfig) -> Outcome {
    let total = read_to_string(&cfg.proc_root.join("meminfo")).and_then(|text| {
        let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    });
    let Some(total) = total else {
        return warn(
            "cannot read MemTotal from meminfo",
            "check that procfs is mounted",
        );
    };
    let required = cfg
        .profile
        .as_ref()
        .and_then(|p| p.requirements.ram.as_ref())
        .and_then(|r| r.min.as_ref());
    match required {
        Some(min) if total < min.bytes => fail(
            format!("{} of RAM; the node profile requires {min}", size(total)),
            format!("use a machine with at least {min} of RAM"),
        ),
        Some(min) => pass(format!("{} of RAM ({min} required)", size(total))),
        None if total < DEFAULT_MIN_RAM => warn(
            format!(
                "{} of RAM; Kubernetes recommends at least {}",
                size(total),
                size(DEFAULT_MIN_RAM)
            ),
            format!(
                "use a machine with at least {} of RAM",
                size(DEFAULT_MIN_RAM)
            ),
        ),
        None => pass(format!("{} of RAM", size(total))),
    }
}

/// Bytes for people: `1.5 GiB`.
fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// The directory itself, or the nearest parent that exists.
/// The type of the filesystem `path` is on (the longest mount point of
/// `mounts`, a `/proc/self/mounts`, that holds it).
fn filesystem_of(mounts: &str, path: &Path) -> Option<String> {
    let path = fs::canonicalize(existing_ancestor(path)).ok()?;
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_, point, kind) = (f.next()?, f.next()?, f.next()?);
            // Spaces in mount points are written as \040.
            let point = PathBuf::from(point.replace("\\040", " "));
            path.starts_with(&point)
                .then(|| (point.components().count(), kind.to_string()))
        })
        .max_by_key(|(depth, _)| *depth)
        .map(|(_, kind)| kind)
}

/// The profile's `requirements.volumes`: each path is there (or will be
/// made: `createIfMissing`; or may be absent: `skipIfMissing`) and on one of
/// the filesystems it names. Their free space is the `disk-space` check's.
fn check_volumes(cfg: &PreflightConfig) -> Outcome {
    let volumes = cfg
        .profile
        .as_ref()
        .map(|p| p.requirements.volumes.as_slice())
        .unwrap_or_default();
    if volumes.is_empty() {
        return pass("the node profile names no volumes");
    }
    let mounts = read_to_string(&cfg.proc_root.join("self/mounts")).unwrap_or_default();
    let mut found = Vec::new();
    let mut problems = Vec::new();
    let mut fixes = Vec::new();
    for v in volumes {
        let path = Path::new(&v.path);
        let exists = path.exists();
        // The state directory (this one, or the default one) is the install's to make.
        let made = v.create_if_missing == Some(true)
            || path.starts_with(&cfg.state_dir)
            || path.starts_with(crate::state_dir::DEFAULT_STATE_DIR);
        if !exists && !made && v.skip_if_missing != Some(true) {
            problems.push(format!("{} is missing", v.path));
            fixes.push(format!(
                "create {0} (`mkdir -p {0}`) or mount the disk meant for it there",
                v.path
            ));
            continue;
        }
        let kind = filesystem_of(&mounts, path).unwrap_or_else(|| "unknown".into());
        if !v.filesystems.is_empty() && !v.filesystems.contains(&kind) {
            problems.push(format!(
                "{} is on {kind}; the app needs {}",
                v.path,
                v.filesystems.join(" or ")
            ));
            fixes.push(format!(
                "put {} on a {} filesystem",
                v.path,
                v.filesystems.join(" or ")
            ));
            continue;
        }
        found.push(match (exists, made) {
            (true, _) => format!("{} ({kind})", v.path),
            (false, true) => format!("{} (made by the install, on {kind})", v.path),
            (false, false) => format!("{} (missing; not used)", v.path),
        });
    }
    if problems.is_empty() {
        pass(found.join(", "))
    } else {
        fail(problems.join("; "), fixes.join("; "))
    }
}

/// Makes the profile's missing `createIfMissing` volumes (after the checks passed).
pub fn create_volumes(profile: Option<&NodeProfile>) -> io::Result<()> {
    for v in profile
        .map(|p| p.requirements.volumes.as_slice())
        .unwrap_or_default()
    {
        if v.create_if_missing == Some(true) && !Path::new(&v.path).exists() {
            fs::create_dir_all(&v.path)?;
        }
    }
    Ok(())
}

fn existing_ancestor(path: &Path) -> PathBuf {
    let mut current = path;
    loop {
        if current.exists() {
            return current.to_path_buf();
        }
        match current.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => current = parent,
            _ => return PathBuf::from("."),
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Resource {
    Space,
    Inodes,
}

fn check_disk(cfg: &PreflightConfig, resource: Resource) -> Outcome {
    // Paths and what they need; paths on the same filesystem add up.
    let mut wants: Vec<(PathBuf, u64)> = Vec::new();
    let volumes = cfg
        .profile
        .as_ref()
        .map(|p| p.requirements.volumes.as_slice())
        .unwrap_or_default();
    let state_volume = volumes
        .iter()
        .find(|v| Path::new(&v.path) == cfg.state_dir)
        .and_then(|v| v.capacity.as_ref());
    match resource {
        Resource::Space => {
            let need = state_volume.map_or(DEFAULT_MIN_DISK, |q| q.bytes);
            wants.push((cfg.state_dir.clone(), need));
            for v in volumes {
                if let (Some(capacity), true) = (&v.capacity, Path::new(&v.path) != cfg.state_dir) {
                    wants.push((PathBuf::from(&v.path), capacity.bytes));
                }
            }
        }
        Resource::Inodes => wants.push((cfg.state_dir.clone(), DEFAULT_MIN_INODES)),
    }
    // Filesystem (device) -> (free, needed, paths).
    let mut filesystems: BTreeMap<u64, (u64, u64, Vec<String>)> = BTreeMap::new();
    let mut problems = Vec::new();
    for (path, need) in &wants {
        let at = existing_ancestor(path);
        let stat = nix::sys::statvfs::statvfs(&at);
        let device = fs::metadata(&at).map(|m| m.dev());
        let (Ok(stat), Ok(device)) = (stat, device) else {
            problems.push(format!("cannot measure {}", at.display()));
            continue;
        };
        let free = match resource {
            Resource::Space => stat.blocks_available().saturating_mul(stat.fragment_size()),
            // Filesystems without an inode limit (btrfs) report no inodes at all.
            Resource::Inodes if stat.files() == 0 => u64::MAX,
            Resource::Inodes => stat.files_available(),
        };
        let entry = filesystems.entry(device).or_insert((free, 0, Vec::new()));
        entry.1 += need;
        entry.2.push(path.display().to_string());
    }
    let show = |n: u64| match resource {
        Resource::Space => size(n),
        Resource::Inodes if n == u64::MAX => "unlimited".to_string(),
        Resource::Inodes => format!("{n}"),
    };
    let what = match resource {
        Resource::Space => "free",
        Resource::Inodes => "free inodes",
    };
    let mut short = Vec::new();
    let mut fine = Vec::new();
    for (free, need, paths) in filesystems.values() {
        let text = format!(
            "{} {what} for {} (needs {})",
            show(*free),
            paths.join(" + "),
            show(*need)
        );
        if free < need {
            short.push(text);
        } else {
            fine.push(text);
        }
    }
    if !short.is_empty() {
        let fix = match resource {
            Resource::Space => {
                "free up space or grow the filesystem, or choose another --state-dir"
            }
            Resource::Inodes => {
                "delete small files on that filesystem, or choose another --state-dir"
            }
        };
        return fail(short.join("; "), fix);
    }
    if !problems.is_empty() {
        return warn(problems.join("; "), "check that the paths are readable");
    }
    pass(fine.join("; "))
}

#[derive(Clone, Copy, PartialEq)]
enum Protocol {
    Tcp,
    Udp,
}

fn check_ports(cfg: &PreflightConfig) -> Outcome {
    let mut wanted: Vec<(u16, Protocol, String)> = cfg
        .ports
        .iter()
        .map(|(port, component)| (*port, Protocol::Tcp, component.to_string()))
        .collect();
    let network = cfg
        .profile
        .as_ref()
        .and_then(|p| p.requirements.network.as_ref());
    for requirement in network.map(|n| n.ports.as_slice()).unwrap_or_default() {
        for protocol in &requirement.protocols {
            let protocol = if protocol == "udp" {
                Protocol::Udp
            } else {
                Protocol::Tcp
            };
            for &(start, end) in &requirement.ranges {
                for port in start..=end {
                    wanted.push((port, protocol, "node profile".to_string()));
                }
            }
        }
    }
    if wanted.is_empty() {
        return pass("no ports to check");
    }
    let mut busy = Vec::new();
    let mut holders: Vec<u32> = Vec::new();
    let mut untestable = Vec::new();
    for (port, protocol, component) in &wanted {
        let address = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, *port);
        let bound = match protocol {
            Protocol::Tcp => TcpListener::bind(address).map(drop),
            Protocol::Udp => UdpSocket::bind(address).map(drop),
        };
        let proto = match protocol {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        };
        match bound {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                let holder = match port_holder(&cfg.proc_root, *port, *protocol) {
                    Some((pid, name)) => {
                        holders.push(pid);
                        format!(" by {name} (PID {pid})")
                    }
                    None => String::new(),
                };
                busy.push(format!("{port}/{proto} ({component}) is in use{holder}"));
            }
            Err(e) => untestable.push(format!("{port}/{proto} ({component}): {e}")),
        }
    }
    if !busy.is_empty() {
        holders.sort_unstable();
        holders.dedup();
        let fix = if holders.is_empty() {
            "stop what listens there (see `ss -lntup`), then rerun".to_string()
        } else {
            let pids: Vec<String> = holders.iter().map(u32::to_string).collect();
            format!(
                "stop those services (or kill {}), then rerun",
                pids.join(" ")
            )
        };
        return fail(busy.join("; "), fix);
    }
    if !untestable.is_empty() {
        return warn(
            format!("could not test {}", untestable.join("; ")),
            "run the installer as root",
        );
    }
    pass(format!("{} ports free", wanted.len()))
}

/// The process listening on `port`, from the socket tables and the open
/// file descriptors under `proc_root`.
fn port_holder(proc_root: &Path, port: u16, protocol: Protocol) -> Option<(u32, String)> {
    let (tables, listening) = match protocol {
        Protocol::Tcp => (["net/tcp", "net/tcp6"], "0A"),
        Protocol::Udp => (["net/udp", "net/udp6"], "07"),
    };
    let mut inodes = Vec::new();
    for table in tables {
        let Some(text) = read_to_string(&proc_root.join(table)) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) =
                (fields.get(1), fields.get(3), fields.get(9))
            else {
                continue;
            };
            let local_port = local
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            if local_port == Some(port) && *state == listening && *inode != "0" {
                inodes.push(format!("socket:[{inode}]"));
            }
        }
    }
    if inodes.is_empty() {
        return None;
    }
    let proc = Procfs::at(proc_root);
    proc.pids().into_iter().find_map(|pid| {
        proc.fd_targets(pid)
            .iter()
            .any(|t| inodes.iter().any(|i| t.as_os_str() == i.as_str()))
            .then(|| (pid as u32, proc.comm(pid)))
    })
}

fn check_conflicting(cfg: &PreflightConfig) -> Outcome {
    let own = std::process::id() as i32;
    let proc = Procfs::at(&cfg.proc_root);
    let our_net = proc.net_ns(None);
    type Procs = Vec<(i32, String)>;
    let (found, elsewhere): (Procs, Procs) = proc
        .pids()
        .into_iter()
        .filter(|&pid| pid != own && !proc.is_zombie(pid))
        .map(|pid| (pid, proc.comm(pid)))
        .filter(|(_, name)| CONFLICTING.contains(&name.as_str()))
        // A process in another network namespace belongs to another node
        // (a container, or a test node sharing this machine): no conflict.
        .partition(|(pid, _)| our_net.is_none() || proc.net_ns(Some(*pid)) == our_net);
    if found.is_empty() {
        let others = if elsewhere.is_empty() {
            String::new()
        } else {
            format!(
                " ({} in other network namespaces, other nodes', ignored)",
                elsewhere.len()
            )
        };
        return pass(format!(
            "none of {} running{others}",
            CONFLICTING.join(", ")
        ));
    }
    let list: Vec<String> = found
        .iter()
        .map(|(pid, name)| format!("{name} (PID {pid})"))
        .collect();
    let names: Vec<&str> = found.iter().map(|(_, name)| name.as_str()).collect();
    let pids: Vec<String> = found.iter().map(|(pid, _)| pid.to_string()).collect();
    fail(
        format!("already running: {}", list.join(", ")),
        format!(
            "stop them (systemctl stop {}; or kill {}): this installer runs its own",
            names.join(" "),
            pids.join(" ")
        ),
    )
}

/// A zombie has exited and holds nothing; only a parent that does not reap
/// keeps it listed (some container inits never do).
fn check_fsync(state_dir: &Path) -> Outcome {
    let dir = existing_ancestor(state_dir);
    match measure_fsync(&dir) {
        Ok(mut samples) => {
            samples.sort_unstable();
            let p99 = samples[(samples.len() * 99).div_ceil(100) - 1];
            let p50 = samples[samples.len() / 2];
            let detail = format!(
                "p99 {:.1} ms, median {:.1} ms over {FSYNC_ROUNDS} writes in {}",
                p99.as_secs_f64() * 1000.0,
                p50.as_secs_f64() * 1000.0,
                dir.display()
            );
            let fix =
                "put the state directory (etcd's data) on an SSD or a faster disk (--state-dir)";
            if p99 > FSYNC_FAIL {
                fail(
                    format!("{detail}: etcd needs under {} ms", FSYNC_FAIL.as_millis()),
                    fix,
                )
            } else if p99 > FSYNC_WARN {
                warn(
                    format!("{detail}: etcd wants under {} ms", FSYNC_WARN.as_millis()),
                    fix,
                )
            } else {
                pass(detail)
            }
        }
        Err(e) => warn(
            format!("cannot measure in {}: {e}", dir.display()),
            "make sure the state directory's filesystem is writable",
        ),
    }
}

/// etcd's write-ahead log pattern: append a small record, fdatasync, repeat.
fn measure_fsync(dir: &Path) -> io::Result<Vec<Duration>> {
    let mut file = tempfile::Builder::new()
        .prefix(".tele-fsync-")
        .tempfile_in(dir)?;
    let record = [0x5au8; FSYNC_WRITE];
    let mut samples = Vec::with_capacity(FSYNC_ROUNDS);
    for _ in 0..FSYNC_ROUNDS {
        let start = Instant::now();
        file.write_all(&record)?;
        file.as_file().sync_data()?;
        samples.push(start.elapsed());
    }
    Ok(samples)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tele_manifests::{OsRequirement, Quantity, Range, Requirements, Volume};

    /// A fake /proc and /sys of a machine that meets every requirement.
    fn healthy() -> (tempfile::TempDir, PreflightConfig) {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let write = |rel: &str, text: &str| {
            let path = root.join(rel);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, text).unwrap();
        };
        write(
            "proc/meminfo",
            "MemTotal:        8388608 kB\nMemFree:         1000 kB\n",
        );
        write(
            "proc/cpuinfo",
            "processor\t: 0\nmodel name\t: x\n\nprocessor\t: 1\n\nprocessor\t: 2\n\nprocessor\t: 3\n",
        );
        write(
            "proc/modules",
            "overlay 151552 0 - Live 0x0\nip_tables 32768 0 - Live 0x0\n",
        );
        write("proc/sys/net/ipv4/ip_forward", "1\n");
        write("proc/sys/net/bridge/bridge-nf-call-iptables", "1\n");
        write("proc/1/comm", "init\n");
        write("proc/100/comm", "bash\n");
        fs::create_dir_all(root.join("sys/module/br_netfilter")).unwrap();
        fs::create_dir_all(root.join("sys/module/nf_conntrack")).unwrap();
        let mut cfg = PreflightConfig::new(root.join("state/not-yet-created"));
        cfg.proc_root = root.join("proc");
        cfg.sys_root = root.join("sys");
        cfg.profile = Some(profile(2, "4GB", "1MB"));
        (tmp, cfg)
    }

    fn profile(cpus: u32, ram: &str, state_capacity: &str) -> NodeProfile {
        NodeProfile {
            name: "master".to_string(),
            requirements: Requirements {
                cpu: Some(Range {
                    min: Some(cpus),
                    max: None,
                }),
                ram: Some(Range {
                    min: Quantity::parse(ram),
                    max: None,
                }),
                volumes: vec![Volume {
                    path: "STATE".to_string(),
                    capacity: Quantity::parse(state_capacity),
                    ..Volume::default()
                }],
                ..Requirements::default()
            },
            ..NodeProfile::default()
        }
    }

    /// Points the profile's volume at the state dir (known only once the temp dir exists).
    fn with_state_volume(cfg: &mut PreflightConfig) {
        let state = cfg.state_dir.display().to_string();
        for v in &mut cfg.profile.as_mut().unwrap().requirements.volumes {
            v.path = state.clone();
        }
    }

    fn result<'a>(results: &'a [CheckResult], name: &str) -> &'a CheckResult {
        results.iter().find(|r| r.name == name).unwrap()
    }

    fn no_modprobe(module: &str) -> Result<(), String> {
        panic!("modprobe {module} called without --autofix")
    }

    fn free_port() -> u16 {
        TcpListener::bind("0.0.0.0:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    #[test]
    fn volumes_must_be_there_or_made_and_on_the_filesystems_named() {
        let (tmp, mut cfg) = healthy();
        let root = tmp.path();
        let data = root.join("data");
        fs::create_dir_all(&data).unwrap();
        fs::create_dir_all(root.join("proc/self")).unwrap();
        fs::write(
            root.join("proc/self/mounts"),
            format!(
                "/dev/vda / ext4 rw 0 0\n/dev/vdb {} xfs rw 0 0\n",
                data.display()
            ),
        )
        .unwrap();
        let volume = |path: &Path, filesystems: &[&str], create: bool| Volume {
            path: path.display().to_string(),
            filesystems: filesystems.iter().map(|f| f.to_string()).collect(),
            create_if_missing: Some(create),
            ..Volume::default()
        };
        let made = root.join("data/made/here");
        cfg.profile.as_mut().unwrap().requirements.volumes = vec![
            volume(&data, &["xfs"], false),
            volume(&made, &["xfs"], true),
        ];
        let ok = check_volumes(&cfg);
        assert_eq!(ok.status, Status::Pass, "{}", ok.detail);
        assert!(
            ok.detail.contains("(made by the install, on xfs)"),
            "{}",
            ok.detail
        );
        create_volumes(cfg.profile.as_ref()).unwrap();
        assert!(made.is_dir());
        // Missing without createIfMissing, or on another filesystem: refused.
        let elsewhere = root.join("elsewhere");
        fs::create_dir_all(&elsewhere).unwrap();
        cfg.profile.as_mut().unwrap().requirements.volumes = vec![
            volume(&root.join("absent"), &[], false),
            volume(&elsewhere, &["xfs"], false),
        ];
        let bad = check_volumes(&cfg);
        assert_eq!(bad.status, Status::Fail);
        assert!(bad.detail.contains("absent is missing"), "{}", bad.detail);
        assert!(
            bad.detail.contains("is on ext4; the app needs xfs"),
            "{}",
            bad.detail
        );
        assert!(bad.fix.unwrap().contains("mkdir -p"));
        // The state directory is the install's to make.
        cfg.profile.as_mut().unwrap().requirements.volumes =
            vec![volume(&cfg.state_dir.join("sub"), &[], false)];
        let state = check_volumes(&cfg);
        assert_eq!(state.status, Status::Pass, "{}", state.detail);
    }

    #[test]
    fn modules_built_into_the_kernel_count_as_loaded() {
        // No /proc/modules entries, no /sys/module directories: the features
        // show only through /proc/filesystems and the sysctls they add.
        let (tmp, mut cfg) = healthy();
        with_state_volume(&mut cfg);
        let root = tmp.path();
        fs::write(root.join("proc/modules"), "").unwrap();
        for m in ["br_netfilter", "nf_conntrack", "overlay", "ip_tables"] {
            let _ = fs::remove_dir_all(root.join("sys/module").join(m));
        }
        cfg.skip = vec!["ports".into()];
        let missing = run_with(&cfg, &no_modprobe).unwrap();
        let modules = result(&missing, "kernel-modules");
        assert_eq!(modules.status, Status::Fail, "{modules:?}");
        assert!(modules.detail.contains("overlay"), "{modules:?}");
        fs::write(
            root.join("proc/filesystems"),
            "nodev\tsysfs\nnodev\toverlay\n",
        )
        .unwrap();
        fs::create_dir_all(root.join("proc/sys/net/netfilter")).unwrap();
        fs::write(
            root.join("proc/sys/net/netfilter/nf_conntrack_max"),
            "262144\n",
        )
        .unwrap();
        fs::create_dir_all(root.join("proc/net")).unwrap();
        fs::write(root.join("proc/net/ip_tables_names"), "filter\n").unwrap();
        let results = run_with(&cfg, &no_modprobe).unwrap();
        let modules = result(&results, "kernel-modules");
        assert_eq!(modules.status, Status::Pass, "{modules:?}");
    }

    #[test]
    fn a_healthy_machine_passes() {
        let (_tmp, mut cfg) = healthy();
        with_state_volume(&mut cfg);
        cfg.ports = vec![(free_port(), "kube-apiserver")];
        let results = run_with(&cfg, &no_modprobe).unwrap();
        let names: Vec<&str> = results.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, CHECK_NAMES);
        for name in [
            "kernel-modules",
            "sysctl-ip-forward",
            "sysctl-bridge-nf-call-iptables",
            "cpu",
            "ram",
            "disk-space",
            "ports",
            "conflicting-services",
        ] {
            let r = result(&results, name);
            assert_eq!(r.status, Status::Pass, "{r:?}");
            assert_eq!(r.fix, None, "{r:?}");
        }
        assert_eq!(
            result(&results, "cpu").detail,
            "4 CPUs (at least 2 required)"
        );
        assert_eq!(
            result(&results, "ram").detail,
            "8.0 GiB of RAM (4GB required)"
        );
        let fsync = result(&results, "etcd-fsync");
        assert!(fsync.detail.contains("p99"), "{fsync:?}");
        // Measuring left nothing behind and created no state dir.
        assert!(!cfg.state_dir.exists());
    }

    #[test]
    fn a_machine_short_of_everything_fails_with_fixes() {
        let (tmp, mut cfg) = healthy();
        let root = tmp.path();
        fs::write(root.join("proc/modules"), "").unwrap();
        fs::remove_dir(root.join("sys/module/br_netfilter")).unwrap();
        fs::remove_dir_all(root.join("proc/sys/net/bridge")).unwrap();
        fs::write(root.join("proc/sys/net/ipv4/ip_forward"), "0\n").unwrap();
        fs::write(root.join("proc/cpuinfo"), "processor\t: 0\n").unwrap();
        fs::create_dir_all(root.join("proc/4242")).unwrap();
        fs::write(root.join("proc/4242/comm"), "kubelet\n").unwrap();
        fs::create_dir_all(root.join("proc/4343")).unwrap();
        fs::write(root.join("proc/4343/comm"), "etcd\n").unwrap();
        cfg.profile = Some(profile(4, "64GB", "1PB"));
        with_state_volume(&mut cfg);
        let results = run_with(&cfg, &no_modprobe).unwrap();
        assert!(failed(&results));

        let modules = result(&results, "kernel-modules");
        assert_eq!(modules.status, Status::Fail);
        assert_eq!(
            modules.detail,
            "not loaded: br_netfilter, overlay, ip_tables"
        );
        assert_eq!(
            modules.fix.as_deref(),
            Some("modprobe -a br_netfilter overlay ip_tables, or rerun with --autofix")
        );
        let forward = result(&results, "sysctl-ip-forward");
        assert_eq!(forward.status, Status::Fail);
        assert_eq!(forward.detail, "net.ipv4.ip_forward = 0");
        assert!(forward
            .fix
            .as_deref()
            .unwrap()
            .starts_with("sysctl -w net.ipv4.ip_forward=1"));
        let bridge = result(&results, "sysctl-bridge-nf-call-iptables");
        assert_eq!(bridge.status, Status::Fail);
        assert!(
            bridge.detail.contains("br_netfilter is not loaded"),
            "{bridge:?}"
        );
        let fix = bridge.fix.as_deref().unwrap();
        assert!(
            fix.starts_with("modprobe br_netfilter && echo 1 > "),
            "{fix}"
        );
        assert!(
            fix.ends_with("/proc/sys/net/bridge/bridge-nf-call-iptables, or rerun with --autofix")
        );

        let cpu = result(&results, "cpu");
        assert_eq!(cpu.status, Status::Fail);
        assert_eq!(cpu.detail, "1 CPU; the node profile requires at least 4");
        let ram = result(&results, "ram");
        assert_eq!(ram.status, Status::Fail);
        assert_eq!(ram.detail, "8.0 GiB of RAM; the node profile requires 64GB");
        let disk = result(&results, "disk-space");
        assert_eq!(disk.status, Status::Fail);
        assert!(disk.detail.contains("needs 909.5 TiB"), "{disk:?}");

        let services = result(&results, "conflicting-services");
        assert_eq!(services.status, Status::Fail);
        assert_eq!(
            services.detail,
            "already running: kubelet (PID 4242), etcd (PID 4343)"
        );
        assert!(services.fix.as_deref().unwrap().contains("kill 4242 4343"));
    }

    #[test]
    fn services_of_other_nodes_in_other_network_namespaces_do_not_conflict() {
        let (tmp, mut cfg) = healthy();
        with_state_volume(&mut cfg);
        cfg.skip = vec!["ports".into()];
        let root = tmp.path();
        let proc_entry = |pid: &str, comm: &str, net: &str| {
            fs::create_dir_all(root.join("proc").join(pid).join("ns")).unwrap();
            fs::write(
                root.join("proc").join(pid).join("comm"),
                format!("{comm}\n"),
            )
            .unwrap();
            std::os::unix::fs::symlink(net, root.join("proc").join(pid).join("ns/net")).unwrap();
        };
        fs::create_dir_all(root.join("proc/self/ns")).unwrap();
        std::os::unix::fs::symlink("net:[1]", root.join("proc/self/ns/net")).unwrap();
        proc_entry("500", "etcd", "net:[2]");
        proc_entry("501", "kubelet", "net:[2]");
        let results = run_with(&cfg, &no_modprobe).unwrap();
        let services = result(&results, "conflicting-services");
        assert_eq!(services.status, Status::Pass, "{services:?}");
        assert!(
            services.detail.contains("2 in other network namespaces"),
            "{services:?}"
        );
        // The same process in this machine's own namespace is a conflict.
        proc_entry("502", "containerd", "net:[1]");
        let results = run_with(&cfg, &no_modprobe).unwrap();
        let services = result(&results, "conflicting-services");
        assert_eq!(services.status, Status::Fail, "{services:?}");
        assert_eq!(services.detail, "already running: containerd (PID 502)");
    }

    #[test]
    fn autofix_loads_modules_and_sets_sysctls() {
        let (tmp, mut cfg) = healthy();
        let root = tmp.path().to_path_buf();
        fs::write(root.join("proc/modules"), "").unwrap();
        fs::remove_dir(root.join("sys/module/br_netfilter")).unwrap();
        fs::remove_dir_all(root.join("proc/sys/net/bridge")).unwrap();
        fs::write(root.join("proc/sys/net/ipv4/ip_forward"), "0\n").unwrap();
        cfg.autofix = true;
        let loaded = std::cell::RefCell::new(Vec::new());
        let fake_modprobe = |module: &str| {
            loaded.borrow_mut().push(module.to_string());
            fs::create_dir_all(root.join("sys/module").join(module)).unwrap();
            if module == "br_netfilter" {
                let bridge = root.join("proc/sys/net/bridge");
                fs::create_dir_all(&bridge).unwrap();
                fs::write(bridge.join("bridge-nf-call-iptables"), "0\n").unwrap();
            }
            Ok(())
        };
        let results = run_with(&cfg, &fake_modprobe).unwrap();
        assert_eq!(*loaded.borrow(), ["br_netfilter", "overlay", "ip_tables"]);
        let modules = result(&results, "kernel-modules");
        assert_eq!(modules.status, Status::Fixed, "{modules:?}");
        assert_eq!(modules.detail, "loaded br_netfilter, overlay, ip_tables");
        for name in ["sysctl-ip-forward", "sysctl-bridge-nf-call-iptables"] {
            let r = result(&results, name);
            assert_eq!(r.status, Status::Fixed, "{r:?}");
        }
        let forward = fs::read_to_string(root.join("proc/sys/net/ipv4/ip_forward")).unwrap();
        assert_eq!(forward, "1\n");

        // When modprobe fails, the check fails and says why.
        fs::remove_dir(root.join("sys/module/overlay")).unwrap();
        let broken = |_: &str| Err("FATAL: Module overlay not found".to_string());
        let results = run_with(&cfg, &broken).unwrap();
        let modules = result(&results, "kernel-modules");
        assert_eq!(modules.status, Status::Fail);
        assert!(
            modules
                .detail
                .contains("overlay: FATAL: Module overlay not found"),
            "{modules:?}"
        );
    }

    #[test]
    fn a_bound_port_is_reported_busy() {
        let (_tmp, mut cfg) = healthy();
        let listener = TcpListener::bind("0.0.0.0:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        cfg.ports = vec![(port, "kube-apiserver"), (free_port(), "etcd")];
        let results = run_with(&cfg, &no_modprobe).unwrap();
        let ports = result(&results, "ports");
        assert_eq!(ports.status, Status::Fail);
        // The fake /proc has no socket table, so no process is named.
        assert_eq!(
            ports.detail,
            format!("{port}/tcp (kube-apiserver) is in use")
        );
        assert_eq!(
            ports.fix.as_deref(),
            Some("stop what listens there (see `ss -lntup`), then rerun")
        );
    }

    #[test]
    fn skipped_checks_are_reported_and_unknown_names_refused() {
        let (_tmp, mut cfg) = healthy();
        cfg.skip = vec!["etcd-fsync".to_string(), "ram".to_string()];
        let results = run_with(&cfg, &no_modprobe).unwrap();
        for name in ["etcd-fsync", "ram"] {
            let r = result(&results, name);
            assert_eq!(r.status, Status::Skipped);
            assert_eq!(r.detail, "skipped with --skip-check");
        }
        assert_eq!(results.len(), CHECK_NAMES.len());

        cfg.skip = vec!["etcd-fsyncc".to_string()];
        let err = run_with(&cfg, &no_modprobe).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown check `etcd-fsyncc` in --skip-check (valid checks: os, kernel, \
             kernel-modules, sysctl-ip-forward, sysctl-bridge-nf-call-iptables, cpu, ram, \
             disk-space, inodes, volumes, ports, conflicting-services, etcd-fsync, \
             cloud-permissions)"
        );
    }

    #[test]
    fn os_release_is_matched_against_supported_and_required_systems() {
        let (_tmp, mut cfg) = healthy();
        cfg.profile = None;
        let os = |cfg: &PreflightConfig, text: &str| check_os(cfg, &Some(text.to_string()));
        let rocky = "NAME=\"Rocky Linux\"\nID=\"rocky\"\nVERSION_ID=\"9.3\"\nPRETTY_NAME=\"Rocky Linux 9.3 (Blue Onyx)\"\n";
        let alpine = "ID=alpine\nVERSION_ID=3.19.0\n";
        assert_eq!(os(&cfg, rocky).status, Status::Pass);
        assert_eq!(os(&cfg, rocky).detail, "Rocky Linux 9.3 (Blue Onyx)");
        let other = os(&cfg, alpine);
        assert_eq!(other.status, Status::Warn);
        assert_eq!(
            other.detail,
            "alpine 3.19.0 (ID=alpine) is not a tested distribution"
        );
        assert_eq!(check_os(&cfg, &None).status, Status::Warn);

        let mut p = profile(1, "1GB", "1MB");
        p.requirements.os = vec![OsRequirement {
            name: "rocky".to_string(),
            versions: vec!["8".to_string()],
        }];
        cfg.profile = Some(p);
        let wrong_version = os(&cfg, rocky);
        assert_eq!(wrong_version.status, Status::Fail);
        assert_eq!(
            wrong_version.detail,
            "Rocky Linux 9.3 (Blue Onyx): the node profile requires rocky 8"
        );
        let eight = rocky.replace("9.3", "8.9");
        assert_eq!(os(&cfg, &eight).status, Status::Pass);
    }

    #[test]
    fn kernel_versions_below_3_10_fail() {
        let kernel = |r: &str| check_kernel(&Some(r.to_string())).status;
        assert_eq!(kernel("3.10.0-1160.el7.x86_64"), Status::Pass);
        assert_eq!(kernel("6.1.0-18-amd64"), Status::Pass);
        assert_eq!(kernel("4.4.0"), Status::Pass);
        assert_eq!(kernel("2.6.32-754.el6.x86_64"), Status::Fail);
        assert_eq!(kernel("3.9.11"), Status::Fail);
        assert_eq!(kernel("weird"), Status::Warn);
        assert_eq!(check_kernel(&None).status, Status::Warn);
    }

    #[test]
    fn the_table_is_aligned() {
        let row = |name: &str, status, detail: &str, fix: Option<&str>| CheckResult {
            name: name.to_string(),
            status,
            detail: detail.to_string(),
            fix: fix.map(str::to_string),
        };
        let results = [
            row("os", Status::Pass, "Debian GNU/Linux 12 (bookworm)", None),
            row(
                "sysctl-bridge-nf-call-iptables",
                Status::Fail,
                "net.bridge.bridge-nf-call-iptables does not exist (br_netfilter is not loaded)",
                Some("modprobe br_netfilter && echo 1 > /proc/sys/net/bridge/bridge-nf-call-iptables, or rerun with --autofix"),
            ),
            row("etcd-fsync", Status::Skipped, "skipped with --skip-check", None),
            row("kernel-modules", Status::Fixed, "loaded br_netfilter", None),
            row("cpu", Status::Warn, "1 CPU; Kubernetes recommends at least 2", Some("use a machine with at least 2 CPUs")),
        ];
        let expected = "\
CHECK                           RESULT   DETAIL / WHAT TO DO
os                              pass     Debian GNU/Linux 12 (bookworm)
sysctl-bridge-nf-call-iptables  FAIL     net.bridge.bridge-nf-call-iptables does not exist (br_netfilter is not loaded)
                                         -> modprobe br_netfilter && echo 1 > /proc/sys/net/bridge/bridge-nf-call-iptables, or rerun with --autofix
etcd-fsync                      skipped  skipped with --skip-check
kernel-modules                  fixed    loaded br_netfilter
cpu                             warn     1 CPU; Kubernetes recommends at least 2
                                         -> use a machine with at least 2 CPUs
";
        assert_eq!(render_table(&results), expected);
        assert!(failed(&results));
        assert!(!failed(&results[2..]));
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(size(512), "512 B");
        assert_eq!(size(10 << 30), "10.0 GiB");
        assert_eq!(size(1536 << 20), "1.5 GiB");
    }

    /// The real machine: every check gives a result, and a port this test
    /// holds is traced back to this process.
    #[test]
    fn runs_on_the_real_machine() {
        let tmp = tempfile::tempdir().unwrap();
        let listener = TcpListener::bind("0.0.0.0:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut cfg = PreflightConfig::new(tmp.path().join("state"));
        cfg.ports = vec![(port, "kube-apiserver")];
        let results = run(&cfg).unwrap();
        let names: Vec<&str> = results.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, CHECK_NAMES);
        for r in &results {
            assert!(!r.detail.is_empty(), "{r:?}");
            assert_ne!(r.status, Status::Skipped, "{r:?}");
            if matches!(r.status, Status::Fail | Status::Warn) {
                assert!(r.fix.is_some(), "{r:?}");
            }
        }
        let ports = result(&results, "ports");
        assert_eq!(ports.status, Status::Fail);
        let me = std::process::id();
        assert!(
            ports.detail.contains(&format!("(PID {me})")),
            "{}",
            ports.detail
        );
        assert_eq!(
            ports.fix,
            Some(format!("stop those services (or kill {me}), then rerun"))
        );
        let table = render_table(&results);
        assert_eq!(
            table.lines().next().unwrap().split_whitespace().next(),
            Some("CHECK")
        );
    }
}
