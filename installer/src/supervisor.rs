//! Node services and how they are kept running.
//!
//! Every service is a [`ServiceSpec`]: a binary, its arguments and
//! environment. Where PID 1 is systemd, each becomes a unit
//! (`tele-<name>.service`, `Restart=always`). Where it is not (containers,
//! test sandboxes), the tele agent ([`run_agent`], `tele agent`) runs them:
//! it starts them in order, appends their output to `logs/<name>.log`,
//! restarts any that dies with a back-off (1 s doubling to 30 s, reset after a
//! minute of uptime), and on SIGTERM stops them in reverse order. The
//! services list lives in `agent/services.json` in the state directory.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// One service on the node.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ServiceSpec {
    /// Short name: `etcd`, `kube-apiserver`, ...
    pub name: String,
    /// Absolute path of the binary.
    pub binary: PathBuf,
    /// Arguments.
    pub args: Vec<String>,
    /// Extra environment.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

/// The file listing the agent's services.
pub fn services_file(state_dir: &Path) -> PathBuf {
    state_dir.join("agent").join("services.json")
}

/// The log file of a service.
pub fn log_file(state_dir: &Path, name: &str) -> PathBuf {
    state_dir.join("logs").join(format!("{name}.log"))
}

fn pid_file(state_dir: &Path, name: &str) -> PathBuf {
    state_dir.join("run").join(format!("{name}.pid"))
}

/// True when PID 1 is systemd (units are then used instead of the agent).
pub fn systemd_is_init() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// The pid recorded for `name` if that process is alive and still runs `binary`.
pub fn running_pid(state_dir: &Path, name: &str, binary: &Path) -> Option<i32> {
    let pid: i32 = fs::read_to_string(pid_file(state_dir, name))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let exe = fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    let same = exe == binary || exe.file_name() == binary.file_name();
    (same && kill(Pid::from_raw(pid), None).is_ok()).then_some(pid)
}

/// Stops a process: SIGTERM, then SIGKILL after `grace`.
pub fn stop_pid(pid: i32, grace: Duration) {
    let p = Pid::from_raw(pid);
    if kill(p, Signal::SIGTERM).is_err() {
        return;
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if kill(p, None).is_err() || is_zombie(pid) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = kill(p, Signal::SIGKILL);
}

fn is_zombie(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .is_some_and(|rest| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

struct Running {
    spec: ServiceSpec,
    child: Option<Child>,
    started: Instant,
    backoff: Duration,
    next_start: Instant,
}

fn spawn(state_dir: &Path, spec: &ServiceSpec) -> std::io::Result<Child> {
    let log_path = log_file(state_dir, &spec.name);
    fs::create_dir_all(log_path.parent().expect("logs dir"))?;
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)?;
    let mut cmd = Command::new(&spec.binary);
    cmd.args(&spec.args)
        .envs(&spec.env)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // Its own process group: a signal to the agent's group does not reach it.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let child = cmd.spawn()?;
    let pid_path = pid_file(state_dir, &spec.name);
    crate::plan::write_durably(&pid_path, child.id().to_string().as_bytes(), 0o644)?;
    Ok(child)
}

/// Runs the agent until SIGTERM or SIGINT: supervises every service in
/// `agent/services.json`, then stops them in reverse order. Its stderr is its
/// log (`logs/agent.log`).
#[allow(clippy::print_stderr)]
pub fn run_agent(state_dir: &Path) -> anyhow::Result<()> {
    let term = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, Arc::clone(&term))?;
    }
    let specs: Vec<ServiceSpec> = serde_json::from_slice(&fs::read(services_file(state_dir))?)?;
    let mut running: Vec<Running> = Vec::new();
    for spec in specs {
        // A service left running by an agent that was killed is replaced.
        if let Some(pid) = running_pid(state_dir, &spec.name, &spec.binary) {
            eprintln!(
                "agent: stopping {} (pid {pid}) left by a previous agent",
                spec.name
            );
            stop_pid(pid, Duration::from_secs(10));
        }
        let child = spawn(state_dir, &spec);
        if let Err(e) = &child {
            eprintln!("agent: cannot start {}: {e}", spec.name);
        }
        running.push(Running {
            child: child.ok(),
            spec,
            started: Instant::now(),
            backoff: Duration::from_secs(1),
            next_start: Instant::now() + Duration::from_secs(1),
        });
    }
    eprintln!("agent: supervising {} services", running.len());
    // The node health checker runs beside the services, for installs (a bare
    // services list, as in tests, has no install.json and no checker).
    let checker_stop = Arc::new(AtomicBool::new(false));
    let checker = match crate::health::HealthConfig::for_install(state_dir) {
        Ok(cfg) => {
            let stop = Arc::clone(&checker_stop);
            Some(std::thread::spawn(move || {
                crate::health::run_loop(cfg, stop)
            }))
        }
        Err(_) => None,
    };
    while !term.load(Ordering::Relaxed) {
        for r in &mut running {
            let exited = match &mut r.child {
                Some(c) => c.try_wait().ok().flatten().map(|s| s.to_string()),
                None => None,
            };
            if let Some(status) = exited {
                eprintln!(
                    "agent: {} exited ({status}); restarting in {:?}",
                    r.spec.name, r.backoff
                );
                r.child = None;
                r.next_start = Instant::now() + r.backoff;
                if r.started.elapsed() > Duration::from_secs(60) {
                    r.backoff = Duration::from_secs(1);
                } else {
                    r.backoff = (r.backoff * 2).min(Duration::from_secs(30));
                }
            }
            if r.child.is_none() && Instant::now() >= r.next_start {
                match spawn(state_dir, &r.spec) {
                    Ok(c) => {
                        r.child = Some(c);
                        r.started = Instant::now();
                    }
                    Err(e) => {
                        eprintln!("agent: cannot start {}: {e}", r.spec.name);
                        r.next_start = Instant::now() + r.backoff;
                        r.backoff = (r.backoff * 2).min(Duration::from_secs(30));
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    checker_stop.store(true, Ordering::Relaxed);
    if let Some(c) = checker {
        let _ = c.join();
    }
    eprintln!("agent: stopping services");
    for r in running.iter_mut().rev() {
        if let Some(c) = &mut r.child {
            stop_pid(c.id() as i32, Duration::from_secs(15));
            let _ = c.wait();
        }
        let _ = fs::remove_file(pid_file(state_dir, &r.spec.name));
    }
    Ok(())
}

/// Where the agent's own pid is kept.
pub fn agent_pid_file(state_dir: &Path) -> PathBuf {
    pid_file(state_dir, "agent")
}

/// The running agent's pid, if any.
pub fn agent_pid(state_dir: &Path, tele: &Path) -> Option<i32> {
    running_pid(state_dir, "agent", tele)
}

/// Writes the services and (re)starts the agent so that it runs exactly them.
/// Under systemd, writes and starts one unit per service instead.
pub fn apply_services(state_dir: &Path, tele: &Path, specs: &[ServiceSpec]) -> anyhow::Result<()> {
    let mut bytes = serde_json::to_vec_pretty(specs)?;
    bytes.push(b'\n');
    let path = services_file(state_dir);
    let unchanged = fs::read(&path).is_ok_and(|old| old == bytes);
    crate::plan::write_durably(&path, &bytes, 0o600)?;
    if systemd_is_init() {
        return apply_units(state_dir, specs);
    }
    if let Some(pid) = agent_pid(state_dir, tele) {
        if unchanged {
            return Ok(());
        }
        stop_pid(pid, Duration::from_secs(60));
    }
    let log_path = log_file(state_dir, "agent");
    fs::create_dir_all(log_path.parent().expect("logs dir"))?;
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)?;
    let mut cmd = Command::new(tele);
    cmd.arg("agent")
        .arg("--state-dir")
        .arg(state_dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let child = cmd.spawn()?;
    crate::plan::write_durably(
        &agent_pid_file(state_dir),
        child.id().to_string().as_bytes(),
        0o644,
    )?;
    // The agent outlives the installer; it is reaped by init.
    std::mem::forget(child);
    Ok(())
}

/// Stops the agent (and with it every service) or the systemd units.
pub fn stop_services(state_dir: &Path, tele: &Path) -> anyhow::Result<()> {
    if systemd_is_init() {
        if let Ok(bytes) = fs::read(services_file(state_dir)) {
            let specs: Vec<ServiceSpec> = serde_json::from_slice(&bytes)?;
            for s in specs.iter().rev() {
                let unit = format!("tele-{}.service", s.name);
                let _ = Command::new("systemctl")
                    .args(["disable", "--now", &unit])
                    .status();
                let _ = fs::remove_file(Path::new("/etc/systemd/system").join(&unit));
            }
            let _ = Command::new("systemctl").arg("daemon-reload").status();
        }
        return Ok(());
    }
    if let Some(pid) = agent_pid(state_dir, tele) {
        stop_pid(pid, Duration::from_secs(90));
    }
    // Services whose agent was killed outright.
    if let Ok(bytes) = fs::read(services_file(state_dir)) {
        let specs: Vec<ServiceSpec> = serde_json::from_slice(&bytes)?;
        for s in specs.iter().rev() {
            if let Some(pid) = running_pid(state_dir, &s.name, &s.binary) {
                stop_pid(pid, Duration::from_secs(15));
            }
        }
    }
    Ok(())
}

/// The systemd unit of a service: restarted always, output appended to its log.
pub fn render_unit(state_dir: &Path, s: &ServiceSpec) -> String {
    let mut exec = vec![s.binary.display().to_string()];
    exec.extend(s.args.iter().map(|a| systemd_quote(a)));
    let env: String = s
        .env
        .iter()
        .map(|(k, v)| format!("Environment={}\n", systemd_quote(&format!("{k}={v}"))))
        .collect();
    format!(
        "[Unit]\nDescription=tele {name}\nAfter=network-online.target\n\n[Service]\n{env}ExecStart={exec}\nRestart=always\nRestartSec=2\nStandardOutput=append:{log}\nStandardError=append:{log}\nLimitNOFILE=1048576\n\n[Install]\nWantedBy=multi-user.target\n",
        name = s.name,
        exec = exec.join(" "),
        log = log_file(state_dir, &s.name).display(),
    )
}

fn apply_units(state_dir: &Path, specs: &[ServiceSpec]) -> anyhow::Result<()> {
    for s in specs {
        let unit = render_unit(state_dir, s);
        let path = Path::new("/etc/systemd/system").join(format!("tele-{}.service", s.name));
        crate::plan::write_durably(&path, unit.as_bytes(), 0o644)?;
    }
    let ok = Command::new("systemctl")
        .arg("daemon-reload")
        .status()?
        .success();
    anyhow::ensure!(ok, "systemctl daemon-reload failed");
    for s in specs {
        let unit = format!("tele-{}.service", s.name);
        let ok = Command::new("systemctl")
            .args(["enable", "--now", &unit])
            .status()?
            .success();
        anyhow::ensure!(
            ok,
            "systemctl enable --now {unit} failed; see journalctl -u {unit}"
        );
    }
    Ok(())
}

fn systemd_quote(s: &str) -> String {
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@".contains(c))
    {
        s.to_string()
    } else {
        format!(
            "\"{}\"",
            s.replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('%', "%%")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sleeper(name: &str) -> ServiceSpec {
        ServiceSpec {
            name: name.into(),
            binary: "/bin/sleep".into(),
            args: vec!["300".into()],
            env: BTreeMap::new(),
        }
    }

    #[test]
    fn agent_restarts_a_dead_service_and_stops_all_on_sigterm() {
        let dir = tempfile::tempdir().unwrap();
        let specs = vec![sleeper("one"), sleeper("two")];
        crate::plan::write_durably(
            &services_file(dir.path()),
            &serde_json::to_vec(&specs).unwrap(),
            0o600,
        )
        .unwrap();
        let state = dir.path().to_path_buf();
        let agent = std::thread::spawn(move || run_agent(&state));
        let wait_pid = |name: &str, not: Option<i32>| {
            for _ in 0..100 {
                if let Some(p) = running_pid(dir.path(), name, Path::new("/bin/sleep"))
                    .or_else(|| running_pid(dir.path(), name, Path::new("/usr/bin/sleep")))
                {
                    if Some(p) != not {
                        return p;
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            panic!("{name} not running");
        };
        let first = wait_pid("one", None);
        wait_pid("two", None);
        kill(Pid::from_raw(first), Signal::SIGKILL).unwrap();
        let second = wait_pid("one", Some(first));
        assert_ne!(first, second, "the agent restarted the killed service");
        nix::sys::signal::raise(Signal::SIGTERM).unwrap();
        agent.join().unwrap().unwrap();
        assert!(
            kill(Pid::from_raw(second), None).is_err() || is_zombie(second),
            "services stop with the agent"
        );
    }

    #[test]
    fn units_pass_systemd_analyze_verify() {
        // systemd's own checker, which works without systemd as PID 1.
        let dir = tempfile::tempdir().unwrap();
        let mut spec = sleeper("etcd");
        spec.args = vec![
            "--listen=https://127.0.0.1:2379,https://10.0.0.1:2379".into(),
            "a b".into(),
            "100%".into(),
        ];
        spec.env.insert("PATH".into(), "/usr/bin:/bin".into());
        let unit = dir.path().join("tele-etcd.service");
        std::fs::write(&unit, render_unit(dir.path(), &spec)).unwrap();
        let out = Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(&unit)
            .output();
        let out = out.expect("systemd-analyze (Debian's systemd package) checks the units");
        let complaints = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && complaints.trim().is_empty(),
            "{complaints}"
        );
    }

    #[test]
    fn unit_arguments_are_quoted_for_systemd() {
        assert_eq!(systemd_quote("--flag=a,b"), "--flag=a,b");
        assert_eq!(systemd_quote("a b"), "\"a b\"");
        assert_eq!(systemd_quote("100%"), "\"100%%\"");
    }
}
