//! `tele uninstall`: stops and removes everything an install created, in the
//! order that leaves nothing behind: the services (the agent or systemd
//! units), the pods' processes (through their shims), mounts under the state
//! directory and the pods' network namespaces, the CNI bridge, the KUBE-* and
//! CNI-* iptables chains, the pods' cgroups, and finally the state directory.
//!
//! Only this install's: another node on the same machine (its own state
//! directory, network namespace and `--cgroup-root`) keeps its pods' network
//! namespaces, cgroups and CNI results. The bridge and the iptables chains
//! are those of the network namespace the uninstall runs in, which is the
//! node's own.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::node::NodeConfig;
use crate::procfs::{children_of, mount_points, processes_with_arg};
use crate::state_dir::StateDir;

/// What an uninstall removed, for the report.
#[derive(Clone, Debug, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UninstallReport {
    /// Pod processes killed.
    pub processes_killed: usize,
    /// Mount points unmounted.
    pub unmounted: usize,
    /// Network namespaces removed.
    pub netns_removed: usize,
    /// iptables chains removed.
    pub iptables_chains_removed: usize,
    /// cgroups removed.
    pub cgroups_removed: usize,
    /// Volumes removed from a volumes directory outside the state directory.
    pub volumes_removed: usize,
    /// An earlier, interrupted uninstall was finished.
    pub finished_earlier: bool,
    /// Problems that did not stop the uninstall.
    pub warnings: Vec<String>,
}

/// What [`uninstall`] would act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The state directory does not exist: there is nothing to remove.
    Nothing,
    /// An install's state directory, which this process may remove.
    Install,
}

/// Checks, changing nothing, what uninstalling `state_dir` would do: an
/// error when it cannot (not root, or not an install's state directory).
pub fn check(state_dir: &Path) -> anyhow::Result<Target> {
    if !state_dir.exists() && !removing_path(state_dir).exists() {
        return Ok(Target::Nothing);
    }
    anyhow::ensure!(
        nix::unistd::geteuid().is_root(),
        "uninstalling needs root: it stops system services and removes mounts and iptables rules\nhint: run it with sudo"
    );
    // Never remove a directory that is not an install's state directory.
    if state_dir.exists() && !StateDir::new(state_dir).holds_install() {
        anyhow::bail!(
            "{} holds no tele install (no install.json or plan.json); nothing was changed\nhint: give the install's --state-dir",
            state_dir.display()
        );
    }
    Ok(Target::Install)
}

/// Removes the install whose state is in `state_dir`; an empty report when
/// there is none ([`Target::Nothing`]).
pub fn uninstall(state_dir: &Path) -> anyhow::Result<UninstallReport> {
    let layout = StateDir::new(state_dir);
    let cfg: Option<NodeConfig> = NodeConfig::load(&layout).ok();
    let mut report = UninstallReport::default();
    if check(state_dir)? == Target::Nothing {
        return Ok(report);
    }
    // An uninstall killed while deleting the directory left it renamed.
    let removing = removing_path(state_dir);
    if removing.exists() {
        fs::remove_dir_all(&removing)
            .map_err(|e| anyhow::anyhow!("cannot remove {}: {e}", removing.display()))?;
        report.finished_earlier = true;
    }
    if !state_dir.exists() {
        return Ok(report);
    }
    let _lock = crate::install::lock(&layout)?;
    // Services first (systemd units or the agent), in reverse start order.
    crate::service::for_host(&layout).stop_all()?;
    crate::install::test_pause_point(&layout, "uninstall:services")?;
    remove_links(&layout);
    crate::pod_network::remove_routes(&layout);

    // Pods outlive containerd: their shims keep them. Kill each shim's
    // children (the containers' init processes, which takes their PID
    // namespaces down), then the shims.
    let sock = layout.containerd_sock().display().to_string();
    let shims = processes_with_arg(&sock);
    // This install's pods' network namespaces: those its shims' pods are in,
    // and those its CNI allocations name (after an interrupted uninstall the
    // pods are gone, their namespaces not yet).
    let own = OwnPods::find(&layout, &shims);
    for pid in shims {
        for child in children_of(pid) {
            let _ = kill(Pid::from_raw(child), Signal::SIGKILL);
            report.processes_killed += 1;
        }
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        report.processes_killed += 1;
    }
    std::thread::sleep(Duration::from_millis(300));

    // Mounts under the state directory (rootfs overlays, shm, volumes), deepest first.
    let mut netns = Vec::new();
    let mut mounts: Vec<PathBuf> = mount_points()
        .into_iter()
        .filter(|m| m.starts_with(state_dir))
        .collect();
    for m in mount_points() {
        let s = m.display().to_string();
        if (s.starts_with("/run/netns/cni-") || s.starts_with("/var/run/netns/cni-"))
            && !netns.contains(&m)
            && own.holds_netns(&m)
        {
            netns.push(m);
        }
    }
    mounts.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    for m in &mounts {
        match nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH) {
            Ok(()) => report.unmounted += 1,
            Err(e) => report
                .warnings
                .push(format!("cannot unmount {}: {e}", m.display())),
        }
    }
    for n in &netns {
        let _ = nix::mount::umount2(n, nix::mount::MntFlags::MNT_DETACH);
        if fs::remove_file(n).is_ok() {
            report.netns_removed += 1;
        }
    }

    // The CNI bridge (its veths went with the namespaces) and iptables chains.
    let _ = Command::new("ip")
        .args(["link", "delete", "tele0"])
        .output();
    report.iptables_chains_removed = remove_iptables_chains(&mut report.warnings);

    // What the kubelet and the CNI library keep outside the state directory.
    remove_fixed_path_leftovers(&own.containers);

    // Pod cgroups, deepest first.
    report.cgroups_removed = remove_cgroups(cfg.as_ref().and_then(|c| c.cgroup_root.as_deref()));

    // Volumes kept outside the state directory: the claims' directories, and nothing else.
    if let Some(dir) = cfg
        .as_ref()
        .map(NodeConfig::volumes_dir)
        .filter(|d| !d.starts_with(state_dir))
    {
        for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("pvc-") && entry.file_type().is_ok_and(|t| t.is_dir()) {
                match fs::remove_dir_all(entry.path()) {
                    Ok(()) => report.volumes_removed += 1,
                    Err(e) => report
                        .warnings
                        .push(format!("cannot remove {}: {e}", entry.path().display())),
                }
            }
        }
    }

    crate::install::test_pause_point(&layout, "uninstall:network")?;
    // Renamed first, so that a kill while deleting leaves a name the next run finishes.
    fs::rename(state_dir, &removing)?;
    if let Some(parent) = removing.parent() {
        crate::durable::sync_dir(parent);
    }
    let state_dir = removing.as_path();
    fs::remove_dir_all(state_dir).or_else(|e| {
        // Something may still be mounted deep inside: one more lazy pass.
        for m in mount_points()
            .into_iter()
            .filter(|m| m.starts_with(state_dir))
        {
            let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
        }
        fs::remove_dir_all(state_dir)
            .map_err(|e2| anyhow::anyhow!("cannot remove {}: {e} / {e2}", state_dir.display()))
    })?;
    Ok(report)
}

/// Where libcni keeps the result of each network attachment, whatever the
/// state directory: `<network>-<container>-<interface>`.
const CNI_RESULTS: &str = "/var/lib/cni/results";

/// The pods of this install, told apart from those of another install on the
/// same machine (another state directory, network namespace and cgroup root).
#[derive(Debug, Default)]
struct OwnPods {
    /// Container ids of this install's pod sandboxes (from its own IP allocations).
    containers: Vec<String>,
    /// Their network namespaces, by path (from libcni's results).
    netns_paths: Vec<PathBuf>,
    /// Their network namespaces, by inode (from the processes of this
    /// install's shims).
    netns_inodes: Vec<u64>,
}

impl OwnPods {
    fn find(state: &StateDir, shims: &[i32]) -> OwnPods {
        let mut own = OwnPods::default();
        // host-local keeps one file per address, named by it, holding the
        // container id: the allocations under this state directory are this
        // install's pods.
        for entry in walkdir::WalkDir::new(state.cni_ipam())
            .max_depth(2)
            .into_iter()
            .flatten()
        {
            let named_by_ip = entry
                .file_name()
                .to_str()
                .is_some_and(|n| n.parse::<std::net::IpAddr>().is_ok());
            if !(named_by_ip && entry.file_type().is_file()) {
                continue;
            }
            let Some(id) = fs::read_to_string(entry.path()).ok().and_then(|t| {
                t.lines()
                    .next()
                    .map(|l| l.trim().to_string())
                    .filter(|id| !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric()))
            }) else {
                continue;
            };
            own.netns_paths.extend(cni_sandboxes(
                &Path::new(CNI_RESULTS).join(format!("tele-{id}-eth0")),
            ));
            own.containers.push(id);
        }
        for shim in shims {
            for child in children_of(*shim) {
                if let Ok(m) = fs::metadata(format!("/proc/{child}/ns/net")) {
                    own.netns_inodes
                        .push(std::os::unix::fs::MetadataExt::ino(&m));
                }
            }
        }
        own
    }

    /// True when the network namespace mounted at `path` is one of this install's pods'.
    fn holds_netns(&self, path: &Path) -> bool {
        let alias = |p: &Path| {
            p.strip_prefix("/var")
                .map(|r| Path::new("/").join(r))
                .unwrap_or_else(|_| p.to_path_buf())
        };
        self.netns_paths.iter().any(|n| alias(n) == alias(path))
            || fs::metadata(path).is_ok_and(|m| {
                self.netns_inodes
                    .contains(&std::os::unix::fs::MetadataExt::ino(&m))
            })
    }
}

/// The network namespaces (`sandbox` of the interfaces) that a libcni result
/// file names; read with a bound, nothing when it is not one.
fn cni_sandboxes(file: &Path) -> Vec<PathBuf> {
    use std::io::Read as _;
    let mut text = Vec::new();
    let read = fs::File::open(file).and_then(|f| f.take(1 << 20).read_to_end(&mut text));
    let Ok(v) = read
        .map_err(|_| ())
        .and_then(|_| serde_json::from_slice::<serde_json::Value>(&text).map_err(|_| ()))
    else {
        return Vec::new();
    };
    v["result"]["interfaces"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["sandbox"].as_str())
        .filter(|s| s.starts_with("/var/run/netns/") || s.starts_with("/run/netns/"))
        .map(PathBuf::from)
        .collect()
}

/// Files that Kubernetes 1.20 and libcni write at fixed paths, whatever the
/// state directory: the CNI result cache of this install's pods (`containers`,
/// their network `tele` and their loopbacks), and the kubelet's
/// device-plugin socket, unless another kubelet on the machine uses it.
fn remove_fixed_path_leftovers(containers: &[String]) {
    let results = Path::new(CNI_RESULTS);
    for id in containers {
        let _ = fs::remove_file(results.join(format!("tele-{id}-eth0")));
        let _ = fs::remove_file(results.join(format!("cni-loopback-{id}-lo")));
    }
    let plugins = Path::new("/var/lib/kubelet/device-plugins");
    let other_kubelet = crate::procfs::pids()
        .into_iter()
        .any(|p| crate::procfs::Procfs::host().comm(p) == "kubelet" && crate::procfs::is_alive(p));
    if !other_kubelet {
        for f in ["kubelet.sock", "DEPRECATION"] {
            let _ = fs::remove_file(plugins.join(f));
        }
    }
    // Directories left empty go too (remove_dir refuses a non-empty one).
    for d in [
        plugins,
        Path::new("/var/lib/kubelet"),
        results,
        Path::new("/var/lib/cni"),
    ] {
        let _ = fs::remove_dir(d);
    }
}

/// Where the state directory is moved while it is deleted.
pub fn removing_path(state_dir: &Path) -> PathBuf {
    let mut name = state_dir.as_os_str().to_owned();
    name.push(".tele-removing");
    PathBuf::from(name)
}

/// Removes the `tele`/`kubectl` links the install made, if they still point here.
fn remove_links(state: &StateDir) {
    let made: Vec<PathBuf> = fs::read(crate::phase::runtime::links_file(state))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    for link in made {
        if fs::read_link(&link).is_ok_and(|t| t == state.tele()) {
            let _ = fs::remove_file(&link);
        }
    }
}

fn remove_iptables_chains(warnings: &mut Vec<String>) -> usize {
    let ours = |c: &str| c.starts_with("KUBE-") || c.starts_with("CNI-");
    let mut removed = 0;
    for table in ["filter", "nat", "mangle"] {
        let Ok(out) = Command::new("iptables")
            .args(["-w", "-t", table, "-S"])
            .output()
        else {
            warnings.push("iptables is not available; no rules removed".into());
            return 0;
        };
        let rules = String::from_utf8_lossy(&out.stdout).into_owned();
        // Rules in built-in chains that jump to our chains.
        for rule in rules.lines().filter(|l| l.starts_with("-A ")) {
            let parts = iptables_words(rule);
            let chain = parts.get(1).map(String::as_str).unwrap_or_default();
            let target = parts
                .iter()
                .position(|p| p == "-j")
                .and_then(|i| parts.get(i + 1))
                .map(String::as_str)
                .unwrap_or_default();
            if !ours(chain) && ours(target) {
                let out = Command::new("iptables")
                    .args(["-w", "-t", table, "-D"])
                    .args(&parts[1..])
                    .output();
                if !out.is_ok_and(|o| o.status.success()) {
                    warnings.push(format!(
                        "cannot delete iptables rule `{rule}` in table {table}"
                    ));
                }
            }
        }
        let chains: Vec<String> = rules
            .lines()
            .filter_map(|l| l.strip_prefix("-N "))
            .filter(|c| ours(c))
            .map(String::from)
            .collect();
        for c in &chains {
            let _ = Command::new("iptables")
                .args(["-w", "-t", table, "-F", c])
                .output();
        }
        for c in &chains {
            if Command::new("iptables")
                .args(["-w", "-t", table, "-X", c])
                .output()
                .is_ok_and(|o| o.status.success())
            {
                removed += 1;
            }
        }
    }
    removed
}

/// Splits a line of `iptables -S` into words as the shell would (it quotes
/// comments that hold spaces).
fn iptables_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_quotes = false;
    let mut started = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                    started = true;
                }
            }
            '"' => {
                in_quotes = !in_quotes;
                started = true;
            }
            c if c.is_whitespace() && !in_quotes => {
                if started {
                    words.push(std::mem::take(&mut cur));
                    started = false;
                }
            }
            c => {
                cur.push(c);
                started = true;
            }
        }
    }
    if started {
        words.push(cur);
    }
    words
}

fn remove_cgroups(cgroup_root: Option<&str>) -> usize {
    let mut removed = 0;
    let base = Path::new("/sys/fs/cgroup");
    let mut roots: Vec<PathBuf> = Vec::new();
    // The kubelet's pods live under its cgroup root (`kubepods` under it):
    // a root of this install's own is removed whole; the machine's default
    // one (no --cgroup-root) only below `kubepods`. Under cgroup v1 in every
    // controller's hierarchy, under v2 in the one tree.
    let own = match cgroup_root {
        Some(r) => PathBuf::from(r.trim_start_matches('/')),
        None => PathBuf::from("kubepods"),
    };
    if base.join("cgroup.controllers").exists() {
        roots.push(base.join(&own));
    } else {
        for entry in fs::read_dir(base).into_iter().flatten().flatten() {
            roots.push(entry.path().join(&own));
        }
    }
    for root in roots {
        if !root.is_dir() {
            continue;
        }
        let mut dirs: Vec<PathBuf> = walkdir::WalkDir::new(&root)
            .into_iter()
            .flatten()
            .filter(|e| e.file_type().is_dir())
            .map(|e| e.into_path())
            .collect();
        dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        for d in dirs {
            if fs::remove_dir(&d).is_ok() {
                removed += 1;
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    #[test]
    fn iptables_rules_split_like_the_shell() {
        let w = super::iptables_words(
            r#"-A POSTROUTING -s 10.244.0.2/32 -m comment --comment "name: \"tele\" id: \"c5\"" -j CNI-a7"#,
        );
        assert_eq!(
            w,
            [
                "-A",
                "POSTROUTING",
                "-s",
                "10.244.0.2/32",
                "-m",
                "comment",
                "--comment",
                "name: \"tele\" id: \"c5\"",
                "-j",
                "CNI-a7"
            ]
        );
        let w = super::iptables_words(
            r#"-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES"#,
        );
        assert_eq!(w[5], "kubernetes service portals");
    }
}
