//! Test hosts whose PID 1 is systemd, like a customer's server: Debian 12
//! containers booted with `systemd-nspawn -b` from the root filesystem that
//! `scripts/systemd-host-rootfs` makes, each on a copy of it, with its own
//! address on the bridge `br-tele-test` (10.213.0.1/24, made on demand).
//!
//! The machine running the tests need not run systemd: the containers are not
//! registered with machined (`--register=no --keep-unit`), commands run inside
//! with `nsenter` into the namespaces of the container's systemd, and each
//! container is started from its own cgroup `nspawn/NAME` below the test's
//! cgroups in every hierarchy, so that what runs inside (a kubelet's
//! `/kubepods`, say) cannot collide with the machine's or another host's.
//! Needs root. Host names and addresses must be unique on the machine while
//! the hosts run; a name is at most 12 characters (`vb-NAME` is the machine's
//! side of the host's network link, and link names have at most 15).

use std::fs;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The bridge every host's network link is attached to.
pub const BRIDGE: &str = "br-tele-test";
/// The machine's address on [`BRIDGE`], the hosts' gateway.
pub const GATEWAY: &str = "10.213.0.1";
/// Serialises the changes to the bridge and to the shared `nspawn` cgroups.
const LOCK: &str = "/run/lock/tele-systemd-host.lock";
/// PATH for commands run inside a host.
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// How long systemd-nspawn gets to power a host off before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(40);
/// How long `boot` and `reboot` wait for a host to be up.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(120);

/// The root filesystem the hosts boot: `$TELE_SYSTEMD_HOST_ROOTFS`, or the
/// cache `scripts/systemd-host-rootfs` writes to. Panics when it is missing.
pub fn rootfs() -> PathBuf {
    let path = match std::env::var_os("TELE_SYSTEMD_HOST_ROOTFS") {
        Some(p) => PathBuf::from(p),
        None => {
            let cache = match std::env::var_os("TELE_SYSTEMD_HOST_CACHE") {
                Some(c) => PathBuf::from(c),
                None => {
                    let home = std::env::var_os("HOME").expect("HOME is set");
                    Path::new(&home).join(".cache/tele/systemd-host")
                }
            };
            cache.join("rootfs-v1")
        }
    };
    assert!(
        path.join("etc/testhost-rootfs").is_file(),
        "no root filesystem for the systemd hosts at {}: run scripts/systemd-host-rootfs \
         (as root; it prints the path to put in TELE_SYSTEMD_HOST_ROOTFS)",
        path.display()
    );
    path
}

/// How a host is set up.
#[derive(Clone, Debug)]
pub struct HostOptions {
    /// Its address on [`BRIDGE`] with the prefix length, e.g. `10.213.0.11/24`.
    pub address: String,
    /// Machine paths bound read-only into the host: (machine path, host path).
    pub ro_binds: Vec<(PathBuf, String)>,
    /// Machine paths bound read-write into the host: (machine path, host path).
    pub rw_binds: Vec<(PathBuf, String)>,
}

impl HostOptions {
    /// A host at `address` (`10.213.0.X/24`) with nothing bound into it.
    pub fn new(address: &str) -> HostOptions {
        HostOptions {
            address: address.to_string(),
            ro_binds: Vec::new(),
            rw_binds: Vec::new(),
        }
    }

    /// Binds `machine_path` read-only at `host_path` in the host.
    pub fn bind_ro(mut self, machine_path: impl AsRef<Path>, host_path: &str) -> HostOptions {
        self.ro_binds
            .push((machine_path.as_ref().to_path_buf(), host_path.to_string()));
        self
    }

    /// Binds `machine_path` read-write at `host_path` in the host.
    pub fn bind_rw(mut self, machine_path: impl AsRef<Path>, host_path: &str) -> HostOptions {
        self.rw_binds
            .push((machine_path.as_ref().to_path_buf(), host_path.to_string()));
        self
    }
}

/// `n` hosts `{prefix}1` ... `{prefix}n` at `10.213.0.{first}/24` and up,
/// with `bundle` bound read-only at `/opt/hello`, booted together; returns
/// once all run.
pub fn boot_hosts(prefix: &str, first: u8, n: u8, bundle: &Path) -> Vec<SystemdHost> {
    let mut hosts: Vec<SystemdHost> = (0..n)
        .map(|i| {
            SystemdHost::boot(
                &format!("{prefix}{}", i + 1),
                HostOptions::new(&format!("10.213.0.{}/24", first + i))
                    .bind_ro(bundle, "/opt/hello"),
            )
        })
        .collect();
    for h in &mut hosts {
        h.wait_running(Duration::from_secs(120));
    }
    hosts
}

/// A booted Debian 12 container with systemd as PID 1. Powered off, its
/// network link, cgroups and files removed, on drop (also when a test panics).
pub struct SystemdHost {
    name: String,
    ip: Ipv4Addr,
    opts: HostOptions,
    dir: tempfile::TempDir,
    nspawn: Option<Child>,
    cgroups: Vec<PathBuf>,
    started: Instant,
    booted_in: Option<Duration>,
}

impl SystemdHost {
    /// Copies the root filesystem, sets the host's name, machine id and
    /// address, and starts `systemd-nspawn -b` on it. Returns at once, so that
    /// several hosts boot together: call [`SystemdHost::wait_running`] before
    /// using it.
    pub fn boot(name: &str, opts: HostOptions) -> SystemdHost {
        assert!(
            nix::unistd::geteuid().is_root(),
            "systemd hosts need root (systemd-nspawn, cgroups, the bridge)"
        );
        assert!(
            !name.is_empty()
                && name.len() <= 12
                && name.starts_with(|c: char| c.is_ascii_lowercase())
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
            "host name {name:?}: 1-12 characters of a-z, 0-9 and '-', starting with a letter"
        );
        let (ip, prefix) = opts
            .address
            .split_once('/')
            .unwrap_or_else(|| panic!("address {:?} has no /prefix", opts.address));
        let ip: Ipv4Addr = ip
            .parse()
            .unwrap_or_else(|e| panic!("address {:?}: {e}", opts.address));
        assert!(
            prefix.parse::<u8>().is_ok_and(|p| p <= 32),
            "address {:?}: bad prefix length",
            opts.address
        );
        for (machine, host) in opts.ro_binds.iter().chain(&opts.rw_binds) {
            assert!(
                machine.exists(),
                "bind source {} does not exist",
                machine.display()
            );
            assert!(
                host.starts_with('/')
                    && !host.contains(':')
                    && !machine.to_string_lossy().contains(':'),
                "bind {} -> {host}: absolute paths without ':' please",
                machine.display()
            );
        }
        let link = format!("/sys/class/net/vb-{name}");
        assert!(
            wait_gone(Path::new(&link), Duration::from_secs(10)),
            "a host named {name} is running already on this machine ({link} exists)"
        );

        let rootfs = rootfs();
        setup_bridge();
        let dir = tempfile::Builder::new()
            .prefix(&format!("systemd-host-{name}-"))
            .tempdir()
            .unwrap();
        let root = dir.path().join("root");
        crate::support::ok(
            Command::new("cp")
                .args(["-a", "--reflink=auto"])
                .arg(&rootfs)
                .arg(&root),
        );
        write_identity(&root, name, ip, &opts.address);

        let mut host = SystemdHost {
            name: name.to_string(),
            ip,
            opts,
            dir,
            nspawn: None,
            cgroups: Vec::new(),
            started: Instant::now(),
            booted_in: None,
        };
        host.start();
        host
    }

    /// The host's name (also its hostname and machine name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The host's address on [`BRIDGE`].
    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    /// The host's root filesystem on the machine (to read what it wrote).
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// The file systemd-nspawn's output (the host's console) goes to.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("nspawn.log")
    }

    /// The cgroups made for the host, one per hierarchy (removed on drop).
    pub fn cgroups(&self) -> &[PathBuf] {
        &self.cgroups
    }

    /// Serves the cloud metadata stand-in (tests/support/imds.py, with
    /// `args`) at the clouds' link-local address 169.254.169.254:80 in the
    /// host's network namespace, as a cloud machine sees its metadata
    /// service; stopped when the handle is dropped.
    pub fn serve_metadata(&self, args: &[&str]) -> super::KillOnDrop {
        self.ok_sh("ip addr add 169.254.169.254/32 dev lo");
        let mut in_host = Command::new("nsenter");
        in_host.args(["-t", &self.pid1().unwrap().to_string(), "-n", "python3"]);
        let mut all = vec!["--listen", "169.254.169.254:80"];
        all.extend_from_slice(args);
        super::imds_in(in_host, &all).0
    }

    /// The machine's PID of the host's systemd (PID 1 inside), if it runs:
    /// the child of systemd-nspawn once it has become systemd.
    pub fn pid1(&self) -> Option<u32> {
        let nspawn = self.nspawn.as_ref()?.id();
        children(nspawn).into_iter().find(|pid| {
            fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "systemd")
        })
    }

    /// Waits until the host's systemd has finished starting up and says
    /// `running`, or `degraded` (the failed units are printed then). Panics,
    /// with the host's console, when it does not within `timeout`.
    #[allow(clippy::print_stderr)]
    pub fn wait_running(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        loop {
            if let Some(status) = self.nspawn_exited() {
                self.fail(&format!("systemd-nspawn exited ({status}) while booting"));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                self.fail(&format!(
                    "not running after {timeout:?} (last said: {})",
                    last.trim()
                ));
            }
            if let Some(pid) = self.pid1() {
                let out = Command::new("timeout")
                    .arg(format!("{}", left.as_secs().max(1)))
                    .args(nsenter_args(pid))
                    .args(["systemctl", "is-system-running", "--wait"])
                    .env_clear()
                    .env("PATH", PATH)
                    .stdin(Stdio::null())
                    .output()
                    .expect("timeout and nsenter run");
                let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
                match state.as_str() {
                    "running" => {
                        self.booted_in = Some(self.started.elapsed());
                        break;
                    }
                    "degraded" => {
                        let failed = self.sh("systemctl --failed --no-legend --plain");
                        eprintln!(
                            "systemd host {}: degraded; failed units:\n{}",
                            self.name,
                            String::from_utf8_lossy(&failed.stdout)
                        );
                        self.booted_in = Some(self.started.elapsed());
                        break;
                    }
                    "maintenance" | "stopping" => self.fail(&format!("systemd says {state}")),
                    // Not up yet ("offline": no connection to systemd yet).
                    _ => {
                        last = format!("{state} {}", String::from_utf8_lossy(&out.stderr));
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// How long the last (re)boot took, from the start of systemd-nspawn
    /// until [`SystemdHost::wait_running`] saw it running (None before).
    pub fn boot_time(&self) -> Option<Duration> {
        self.booted_in
    }

    /// A command that runs `args` inside the host: in all its namespaces,
    /// with a clean environment (PATH, HOME=/root, LANG=C.UTF-8), cwd `/`.
    /// The process stays in the test's cgroups (systemd does not manage it).
    pub fn command(&self, args: &[&str]) -> Command {
        let pid = self
            .pid1()
            .unwrap_or_else(|| self.fail("host is not running"));
        let mut c = Command::new("nsenter");
        c.args(&nsenter_args(pid)[1..])
            .args(args)
            .env_clear()
            .env("PATH", PATH)
            .env("HOME", "/root")
            .env("LANG", "C.UTF-8")
            .stdin(Stdio::null());
        c
    }

    /// Runs `args` inside the host.
    pub fn exec(&self, args: &[&str]) -> Output {
        let mut c = self.command(args);
        c.output()
            .unwrap_or_else(|e| panic!("cannot run nsenter for {args:?}: {e}"))
    }

    /// Runs a shell script inside the host.
    pub fn sh(&self, script: &str) -> Output {
        self.exec(&["sh", "-c", script])
    }

    /// Runs `script` every 2 s until it succeeds and prints something that
    /// contains `want` (its stdout then), for at most `limit`.
    pub fn eventually(&self, script: &str, want: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let o = self.sh(script);
            let out = String::from_utf8_lossy(&o.stdout).into_owned();
            if o.status.success() && out.contains(want) {
                return out;
            }
            assert!(
                Instant::now() < deadline,
                "on host {}: `{script}` did not give {want:?} within {limit:?}:\n{out}\n{}",
                self.name,
                String::from_utf8_lossy(&o.stderr)
            );
            std::thread::sleep(Duration::from_secs(2));
        }
    }

    /// A shell command that prints the host pid of the main process of the
    /// first container of pod `ns/pod` (found through this host's API), to
    /// run on the pod's node.
    pub fn pod_pid_command(&self, ns: &str, pod: &str) -> String {
        let id = self.ok_sh(&format!(
            "kubectl -n {ns} get pod {pod} -o jsonpath={{.status.containerStatuses[0].containerID}}"
        ));
        let id = id.trim().trim_start_matches("containerd://");
        format!(
            "/var/lib/tele/runtime/bin/ctr -a /var/lib/tele/containerd/containerd.sock -n k8s.io task ls | awk '$1 == \"{id}\" {{print $2}}'"
        )
    }

    /// Runs a shell script inside the host that must succeed; its stdout.
    pub fn ok_sh(&self, script: &str) -> String {
        let out = self.sh(script);
        assert!(
            out.status.success(),
            "on host {}: `{script}` failed ({})\nstdout:\n{}\nstderr:\n{}",
            self.name,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `systemctl reboot` inside. systemd-nspawn then exits with status 133
    /// (its "reboot me" code); it is started again on the same root (same
    /// machine id, same files) and this waits until the host is running.
    pub fn reboot(&mut self) {
        // The host may go down before systemctl returns: its status says nothing.
        let _ = self.exec(&["systemctl", "reboot"]);
        let status = self
            .wait_nspawn(Duration::from_secs(60))
            .unwrap_or_else(|| self.fail("systemd-nspawn did not exit within 60 s of a reboot"));
        if status.code() != Some(133) {
            self.fail(&format!(
                "systemd-nspawn exited with {status} on reboot, not 133"
            ));
        }
        if let Err(e) = self.cleanup() {
            self.fail(&e);
        }
        self.start();
        self.wait_running(BOOT_TIMEOUT);
    }

    /// Cuts the host off the bridge (`false`: its link goes down on the
    /// machine's side, so that its packets go nowhere) or connects it again.
    pub fn set_connected(&self, connected: bool) {
        crate::support::ok(Command::new("ip").args([
            "link",
            "set",
            &format!("vb-{}", self.name),
            if connected { "up" } else { "down" },
        ]));
    }

    /// Powers the host off (SIGTERM to systemd-nspawn; SIGKILL after 40 s) and
    /// removes what it left on the machine: its network link, the nspawn
    /// propagation directory, its cgroups. Drop does the same.
    pub fn poweroff(&mut self) {
        if let Err(e) = self.stop() {
            panic!("systemd host {}: {e}", self.name);
        }
    }

    /// Starts systemd-nspawn on the host's root, from the host's own cgroups.
    fn start(&mut self) {
        self.cgroups = make_cgroups(&self.name);
        let mut log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        writeln!(log, "==> systemd-nspawn starts").unwrap();
        // A shell moves itself into the cgroups, then becomes systemd-nspawn,
        // which takes its cgroups as the container's.
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg(
                r#"while [ "$1" != -- ]; do echo $$ >"$1" || exit 1; shift; done; shift; exec "$@""#,
            )
            .arg("sh");
        for cg in &self.cgroups {
            c.arg(cg.join("cgroup.procs"));
        }
        c.arg("--")
            .arg("systemd-nspawn")
            .arg("--boot")
            .arg("--directory")
            .arg(self.root())
            .arg(format!("--machine={}", self.name))
            .arg(format!("--network-bridge={BRIDGE}"))
            .args([
                "--register=no",
                "--keep-unit",
                "--console=read-only",
                "--capability=CAP_SYSLOG",
                "--system-call-filter=@keyring",
                "--bind=/dev/kmsg",
                "--resolv-conf=off",
                "--timezone=off",
                "--link-journal=no",
            ]);
        for (machine, host) in &self.opts.ro_binds {
            c.arg(format!("--bind-ro={}:{host}", machine.display()));
        }
        for (machine, host) in &self.opts.rw_binds {
            c.arg(format!("--bind={}:{host}", machine.display()));
        }
        c.env_remove("SYSTEMD_NSPAWN_UNIFIED_HIERARCHY")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        self.started = Instant::now();
        self.booted_in = None;
        self.nspawn = Some(
            c.spawn()
                .expect("systemd-nspawn runs (apt-get install systemd-container)"),
        );
    }

    /// The exit status of systemd-nspawn if it has exited.
    fn nspawn_exited(&mut self) -> Option<ExitStatus> {
        self.nspawn.as_mut()?.try_wait().ok().flatten()
    }

    /// Waits up to `timeout` for systemd-nspawn to exit; forgets the process.
    fn wait_nspawn(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let child = self.nspawn.as_mut()?;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.nspawn = None;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops systemd-nspawn if it runs, then cleans up.
    fn stop(&mut self) -> Result<(), String> {
        let mut problem = None;
        if let Some(child) = &mut self.nspawn {
            // Only a child not reaped yet: its PID is still systemd-nspawn's.
            if let Ok(None) = child.try_wait() {
                let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
            }
            if self.wait_nspawn(STOP_TIMEOUT).is_none() {
                problem = Some(format!("did not power off within {STOP_TIMEOUT:?}; killed"));
                if let Some(child) = &mut self.nspawn {
                    let _ = child.kill();
                }
                if self.wait_nspawn(Duration::from_secs(10)).is_none() {
                    return Err("systemd-nspawn survives SIGKILL".into());
                }
            }
        }
        self.cleanup()?;
        match problem {
            Some(p) => Err(p),
            None => Ok(()),
        }
    }

    /// After systemd-nspawn exited: waits for the network link to go, removes
    /// the propagation directory (systemd-nspawn refuses to when /run is not
    /// a tmpfs) and the host's cgroups.
    fn cleanup(&mut self) -> Result<(), String> {
        let link = PathBuf::from(format!("/sys/class/net/vb-{}", self.name));
        let link_gone = wait_gone(&link, Duration::from_secs(20));
        let propagate = Path::new("/run/systemd/nspawn/propagate").join(&self.name);
        let _ = fs::remove_dir_all(&propagate);
        let cgroups = remove_cgroups(&self.cgroups);
        if !link_gone {
            return Err(format!("{} is still there", link.display()));
        }
        cgroups?;
        self.cgroups.clear();
        Ok(())
    }

    /// Panics with `msg` and the end of the host's console log.
    fn fail(&self, msg: &str) -> ! {
        let log = fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(150)..].join("\n");
        panic!(
            "systemd host {}: {msg}\n--- {} (last 150 lines) ---\n{tail}",
            self.name,
            self.log_path().display()
        );
    }
}

impl Drop for SystemdHost {
    #[allow(clippy::print_stderr)]
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("systemd host {}: {e}", self.name);
        }
    }
}

/// `nsenter` with the arguments entering every namespace of `pid`
/// (the first element is the program).
fn nsenter_args(pid: u32) -> Vec<String> {
    [
        "nsenter",
        "-t",
        &pid.to_string(),
        "-m",
        "-u",
        "-i",
        "-n",
        "-p",
        "-C",
        "--",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Waits up to `timeout` for `path` not to exist; whether it is gone.
fn wait_gone(path: &Path, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while path.exists() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

/// The processes whose parent is `pid`.
fn children(pid: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|stat| {
                // "PID (COMM) STATE PPID ...": COMM may hold spaces and ')'.
                stat.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
                    == Some(pid)
            })
        })
        .collect()
}

/// Holds the machine-wide lock for the bridge and the shared cgroups.
fn lock() -> Flock<fs::File> {
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(LOCK)
        .unwrap_or_else(|e| panic!("cannot open {LOCK}: {e}"));
    Flock::lock(file, FlockArg::LockExclusive)
        .unwrap_or_else(|(_, e)| panic!("cannot lock {LOCK}: {e}"))
}

/// Makes [`BRIDGE`] with the machine's address [`GATEWAY`] unless it exists.
/// Traffic across it skips the machine's iptables (`nf_call_iptables 0`): a
/// FORWARD policy of DROP on the machine must not cut the hosts off from each other.
fn setup_bridge() {
    let _lock = lock();
    if !Path::new("/sys/class/net").join(BRIDGE).exists() {
        crate::support::ok(Command::new("ip").args(["link", "add", BRIDGE, "type", "bridge"]));
    }
    crate::support::ok(Command::new("ip").args([
        "link",
        "set",
        BRIDGE,
        "type",
        "bridge",
        "nf_call_iptables",
        "0",
        "nf_call_ip6tables",
        "0",
        "nf_call_arptables",
        "0",
    ]));
    crate::support::ok(Command::new("ip").args([
        "addr",
        "replace",
        &format!("{GATEWAY}/24"),
        "dev",
        BRIDGE,
    ]));
    crate::support::ok(Command::new("ip").args(["link", "set", BRIDGE, "up"]));
}

/// Writes what makes a copy of the root filesystem one host.
fn write_identity(root: &Path, name: &str, ip: Ipv4Addr, address: &str) {
    let etc = root.join("etc");
    fs::write(etc.join("hostname"), format!("{name}\n")).unwrap();
    // Empty: systemd makes the host's own id when it first boots (else every
    // copy would share one), and keeps it across reboots.
    fs::write(etc.join("machine-id"), "").unwrap();
    let dbus_id = root.join("var/lib/dbus/machine-id");
    fs::create_dir_all(dbus_id.parent().unwrap()).unwrap();
    let _ = fs::remove_file(&dbus_id);
    std::os::unix::fs::symlink("/etc/machine-id", &dbus_id).unwrap();
    fs::write(
        etc.join("hosts"),
        format!("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{ip}\t{name}\n"),
    )
    .unwrap();
    // No DNS server on the test network: fail at once rather than time out.
    let resolv = etc.join("resolv.conf");
    let _ = fs::remove_file(&resolv);
    fs::write(
        resolv,
        "# systemd test host: no DNS server on the test network\nnameserver 127.0.0.1\noptions timeout:1 attempts:1\n",
    )
    .unwrap();
    let network = etc.join("systemd/network");
    fs::create_dir_all(&network).unwrap();
    fs::write(
        network.join("10-host0.network"),
        format!("[Match]\nName=host0\n\n[Network]\nAddress={address}\nGateway={GATEWAY}\n"),
    )
    .unwrap();
}

/// Every cgroup hierarchy's directory for this process: the mount point of
/// the hierarchy joined with this process's path in it.
fn own_cgroups() -> Vec<PathBuf> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
    // (root, mount point, fstype, super options)
    let mounts: Vec<(&str, &str, &str, Vec<&str>)> = mountinfo
        .lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let left: Vec<&str> = left.split(' ').collect();
            let right: Vec<&str> = right.split(' ').collect();
            let fstype = *right.first()?;
            if fstype != "cgroup" && fstype != "cgroup2" {
                return None;
            }
            Some((
                *left.get(3)?,
                *left.get(4)?,
                fstype,
                right.get(2)?.split(',').collect(),
            ))
        })
        .collect();
    let mut dirs = Vec::new();
    for line in fs::read_to_string("/proc/self/cgroup").unwrap().lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next(), parts.next().unwrap(), parts.next().unwrap());
        let mount = mounts.iter().find(|(root, _, fstype, opts)| {
            path.starts_with(root)
                && if controllers.is_empty() {
                    *fstype == "cgroup2"
                } else {
                    *fstype == "cgroup" && controllers.split(',').all(|c| opts.contains(&c))
                }
        });
        if let Some((root, mountpoint, _, _)) = mount {
            let rel = path[root.len()..].trim_start_matches('/');
            dirs.push(Path::new(mountpoint).join(rel));
        }
    }
    dirs
}

/// Makes `nspawn/NAME` below this process's cgroup in every hierarchy (a
/// left-over one is removed first); cpuset's cpus and mems are copied down.
fn make_cgroups(name: &str) -> Vec<PathBuf> {
    let _lock = lock();
    let mut made = Vec::new();
    for base in own_cgroups() {
        let dir = base.join("nspawn").join(name);
        if dir.exists() {
            let _ = remove_cgroup_tree(&dir);
        }
        fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot make cgroup {}: {e}", dir.display()));
        if base.join("cpuset.cpus").exists() {
            for d in [base.join("nspawn"), dir.clone()] {
                for f in ["cpuset.cpus", "cpuset.mems"] {
                    let own = fs::read_to_string(d.join(f)).unwrap_or_default();
                    if own.trim().is_empty() {
                        let parent = fs::read_to_string(d.parent().unwrap().join(f)).unwrap();
                        fs::write(d.join(f), parent.trim()).unwrap_or_else(|e| {
                            panic!("cannot write {}: {e}", d.join(f).display())
                        });
                    }
                }
            }
        }
        made.push(dir);
    }
    made
}

/// Removes cgroup directories (and what the host made below them), retrying
/// while their last processes exit; then `nspawn` when no host uses it.
fn remove_cgroups(dirs: &[PathBuf]) -> Result<(), String> {
    let _lock = lock();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut left: Vec<&PathBuf> = dirs.iter().collect();
    loop {
        left.retain(|d| d.exists() && remove_cgroup_tree(d).is_err());
        if left.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            return Err(format!("cgroups left behind: {left:?}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    for d in dirs {
        if let Some(parent) = d.parent() {
            let _ = fs::remove_dir(parent);
        }
    }
    Ok(())
}

/// Removes a cgroup and its children, deepest first.
fn remove_cgroup_tree(dir: &Path) -> std::io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            remove_cgroup_tree(&entry.path())?;
        }
    }
    fs::remove_dir(dir)
}
