//! Two installs on one machine, as root: node B in a network namespace of
//! its own (its own state directory and `--cgroup-root`), node A on the
//! machine's own network. A second `./install` or uninstall started while
//! B's install runs is refused, naming the process that holds the state
//! directory. Then A is uninstalled while both run, and B goes on as if
//! nothing happened: the same pods, not restarted, their network
//! namespaces, cgroups and CNI results still there, its app answering.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use support::example::example_bundle;
use support::*;

const NETNS: &str = "tele-shared-b";
const HOST_SIDE: &str = "10.231.7.1";
const B_ADDR: &str = "10.231.7.2";

/// Removes B's install (from its namespace) and the namespace, whatever the
/// test's outcome.
struct Cleanup {
    b: PathBuf,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if self.b.exists() {
            let _ = in_b(&mut tele())
                .args(["uninstall", "--yes", "--state-dir"])
                .arg(&self.b)
                .output();
        }
        let _ = Command::new("ip").args(["netns", "delete", NETNS]).output();
        let _ = Command::new("ip")
            .args(["link", "delete", "tsb-host"])
            .output();
    }
}

/// `cmd` run inside node B's network namespace (network only: `ip netns
/// exec` would remount /sys and hide the cgroup hierarchies from the kubelet).
fn in_b(cmd: &mut Command) -> Command {
    let mut c = Command::new("nsenter");
    c.arg(format!("--net=/var/run/netns/{NETNS}"))
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    c
}

fn sh(script: &str) {
    ok(Command::new("sh").args(["-ec", script]));
}

fn make_namespace() {
    let _ = Command::new("ip").args(["netns", "delete", NETNS]).output();
    let _ = Command::new("ip")
        .args(["link", "delete", "tsb-host"])
        .output();
    sh(&format!(
        "ip netns add {NETNS}
         ip link add tsb-host type veth peer name tsb-node
         ip link set tsb-node netns {NETNS}
         ip addr add {HOST_SIDE}/24 dev tsb-host
         ip link set tsb-host up
         ip netns exec {NETNS} ip addr add {B_ADDR}/24 dev tsb-node
         ip netns exec {NETNS} ip link set tsb-node up
         ip netns exec {NETNS} ip link set lo up
         ip netns exec {NETNS} ip route add default via {HOST_SIDE}
         ip netns exec {NETNS} sysctl -qw net.ipv4.ip_forward=1"
    ));
}

fn install_cmd(bundle: &Path, state: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(bundle.join("install"));
    c.arg("--state-dir")
        .arg(state)
        .args(["--autofix", "--timeout", "300", "--output-format", "json"])
        .args(extra)
        .env_remove("TELE_TEST_PAUSE_AT")
        .env("NO_COLOR", "1");
    c
}

/// B's kubectl, from B's namespace (its API endpoint is on B's loopback).
fn kubectl(state: &Path, args: &[&str]) -> String {
    stdout(&ok(&mut in_b(
        Command::new(state.join("runtime/bin/kubectl"))
            .arg("--kubeconfig")
            .arg(state.join("pki/kubeconfig/admin.conf"))
            .args(args),
    )))
}

/// B's pods: `namespace/name uid restarts` for each, sorted.
fn pods_of(state: &Path) -> Vec<String> {
    let text = kubectl(
        state,
        &[
            "get",
            "pods",
            "-A",
            "-o",
            "jsonpath={range .items[*]}{.metadata.namespace}/{.metadata.name} {.metadata.uid} {.status.containerStatuses[*].restartCount}{\"\\n\"}{end}",
        ],
    );
    let mut pods: Vec<String> = text.lines().map(String::from).collect();
    pods.sort();
    pods
}

/// B's app answers through its Service, asked from B's network namespace.
fn b_app_answers(state: &Path) -> bool {
    let ip = kubectl(
        state,
        &[
            "get",
            "service",
            "hello-web",
            "-o",
            "jsonpath={.spec.clusterIP}",
        ],
    );
    let o = run(&mut in_b(Command::new("curl").args([
        "-sf",
        "-m",
        "5",
        &format!("http://{ip}/"),
    ])));
    o.status.success() && stdout(&o).contains("hello from a tele bundle")
}

fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !f() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_secs(2));
    }
}

fn netns_mounts() -> Vec<String> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.contains("/netns/cni-"))
        .map(String::from)
        .collect()
}

fn refused_by_lock(o: &Output, state: &Path, pid: u32) {
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(o), stderr(o));
    let want = format!(
        "another install, uninstall or certificate renewal is running on {}: process {pid}",
        state.display()
    );
    assert!(stderr(o).contains(&want), "{}", stderr(o));
}

#[test]
fn a_second_node_on_the_machine_keeps_running_through_the_first_ones_uninstall() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = example_bundle(dir.path());
    let a = dir.path().join("state-a");
    let b = dir.path().join("state-b");
    let _cleanup = Cleanup { b: b.clone() };
    let _a = Installed { state: a.clone() };
    make_namespace();

    // 1. B's install holds its state directory: a second install, a resume
    //    and an uninstall are refused, naming it.
    let log = dir.path().join("b-paused.log");
    let mut first = in_b(&mut install_cmd(
        &bundle,
        &b,
        &["--cgroup-root", "/tele-b", "--advertise-addr", B_ADDR],
    ))
    .env("TELE_TEST_PAUSE_AT", "/checks:before")
    .stdout(std::process::Stdio::null())
    .stderr(fs::File::create(&log).unwrap())
    .spawn()
    .unwrap();
    eventually("B's install never reached its first phase", || {
        fs::read_to_string(b.join(".paused")).is_ok_and(|p| p == "/checks:before")
    });
    // nsenter execs the installer: the child's PID is the installer's.
    let pid = first.id();
    refused_by_lock(&run(&mut install_cmd(&bundle, &b, &[])), &b, pid);
    refused_by_lock(&run(&mut install_cmd(&bundle, &b, &["--resume"])), &b, pid);
    refused_by_lock(
        &run(tele().args(["uninstall", "--yes", "--state-dir"]).arg(&b)),
        &b,
        pid,
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(!first.wait().unwrap().success());
    fs::remove_file(b.join(".paused")).unwrap();

    // 2. B, resumed, comes up in its namespace; A on the machine's network.
    let o = run(&mut in_b(&mut install_cmd(&bundle, &b, &["--resume"])));
    assert!(o.status.success(), "B: {}{}", stdout(&o), stderr(&o));
    eventually("B's app does not answer", || b_app_answers(&b));
    let b_netns = netns_mounts();
    let o = run(&mut install_cmd(&bundle, &a, &[]));
    assert!(o.status.success(), "A: {}{}", stdout(&o), stderr(&o));
    let a_netns: Vec<String> = netns_mounts()
        .into_iter()
        .filter(|m| !b_netns.contains(m))
        .collect();
    let pods_before = pods_of(&b);
    assert!(
        pods_before.len() >= 2 && !b_netns.is_empty() && !a_netns.is_empty(),
        "both nodes run pods: {pods_before:?}, {b_netns:?}, {a_netns:?}"
    );
    let b_cgroup = Path::new("/sys/fs/cgroup/memory/tele-b/kubepods");
    assert!(b_cgroup.is_dir());

    // 3. A's uninstall takes only A's.
    let o = ok(tele().args(["uninstall", "--yes", "--state-dir"]).arg(&a));
    assert!(!a.exists(), "{}", stderr(&o));
    assert!(b_cgroup.is_dir(), "B's pods' cgroups were removed");
    let left = netns_mounts();
    assert!(
        a_netns.iter().all(|m| !left.contains(m)),
        "A's pods' namespaces stayed: {left:?}"
    );
    std::thread::sleep(Duration::from_secs(10));
    assert!(b_app_answers(&b), "B's app stopped answering");
    assert_eq!(
        pods_of(&b),
        pods_before,
        "B's pods were not restarted or replaced"
    );
    let running = kubectl(
        &b,
        &[
            "get",
            "pods",
            "-A",
            "--field-selector=status.phase=Running",
            "-o",
            "name",
        ],
    )
    .lines()
    .count();
    assert!(
        b_netns.iter().filter(|m| left.contains(m)).count() >= running,
        "B's running pods kept their namespaces: {left:?}"
    );
    let ready = kubectl(
        &b,
        &[
            "get",
            "nodes",
            "-o",
            "jsonpath={.items[0].status.conditions[?(@.type==\"Ready\")].status}",
        ],
    );
    assert_eq!(ready, "True");

    // 4. B's own uninstall, from its namespace, leaves nothing of it.
    ok(&mut in_b(
        tele().args(["uninstall", "--yes", "--state-dir"]).arg(&b),
    ));
    assert!(!b.exists());
    assert!(!Path::new("/sys/fs/cgroup/memory/tele-b").exists());
    assert_eq!(netns_mounts(), Vec::<String>::new());
}
