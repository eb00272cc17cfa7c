//! The tele agent back-end, for machines whose PID 1 is not systemd
//! (containers, test sandboxes). `tele agent` ([`run_agent`]) supervises the
//! services listed in `STATE/agent/services.json`: it starts them in order,
//! appends their output to `logs/NAME.log`, restarts any that dies with a
//! back-off (1 s doubling to 30 s, reset after a minute of uptime), reloads
//! the list on SIGHUP, and on SIGTERM stops them in reverse order. The
//! installer's side ([`Agent`]) edits the list and waits until the agent
//! has applied it.

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::{ServiceManager, ServiceSpec, ServiceState};
use crate::durable::write_durably;
use crate::procfs;
use crate::state_dir::StateDir;

/// The agent's list of services.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ServiceList {
    /// Bumped at every change; the agent reports the one it applied.
    pub generation: u64,
    /// The services in start order.
    pub services: Vec<ServiceSpec>,
}

impl ServiceList {
    /// The list in `state` (empty when there is none).
    pub fn load(state: &StateDir) -> anyhow::Result<ServiceList> {
        match fs::read(state.services_file()) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| anyhow::anyhow!("`{}`: {e}", state.services_file().display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ServiceList::default()),
            Err(e) => Err(e.into()),
        }
    }

    fn save(&self, state: &StateDir) -> anyhow::Result<()> {
        let mut bytes = serde_json::to_vec_pretty(self)?;
        bytes.push(b'\n');
        write_durably(&state.services_file(), &bytes, 0o600)?;
        Ok(())
    }
}

fn pid_file(state: &StateDir, name: &str) -> std::path::PathBuf {
    state.run_dir().join(format!("{name}.pid"))
}

fn restarts_file(state: &StateDir, name: &str) -> std::path::PathBuf {
    state.run_dir().join(format!("{name}.restarts"))
}

fn generation_file(state: &StateDir) -> std::path::PathBuf {
    state.run_dir().join("agent.generation")
}

fn read_number<T: std::str::FromStr>(path: &Path) -> Option<T> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The pid recorded for `name` if that process is alive and runs `binary`.
pub fn running_pid(state: &StateDir, name: &str, binary: &Path) -> Option<i32> {
    let pid: i32 = read_number(&pid_file(state, name))?;
    procfs::runs(pid, binary).then_some(pid)
}

/// The running agent's pid, if any.
pub fn agent_pid(state: &StateDir) -> Option<i32> {
    running_pid(state, "agent", &state.tele())
}

/// Stops a process (or its whole process group): SIGTERM, then SIGKILL after `grace`.
pub fn stop_pid(pid: i32, group: bool, grace: Duration) {
    let target = if group {
        Pid::from_raw(-pid)
    } else {
        Pid::from_raw(pid)
    };
    if kill(target, Signal::SIGTERM).is_err() {
        return;
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if !procfs::is_alive(pid) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = kill(target, Signal::SIGKILL);
}

/// The tele agent as the service manager.
pub struct Agent {
    state: StateDir,
}

impl Agent {
    /// The agent of the install in `state`.
    pub fn new(state: StateDir) -> Agent {
        Agent { state }
    }

    fn spawn_agent(&self) -> anyhow::Result<()> {
        let log_path = self.state.log("agent");
        fs::create_dir_all(self.state.logs_dir())?;
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)?;
        let mut cmd = Command::new(self.state.tele());
        cmd.arg("agent")
            .arg("--state-dir")
            .arg(self.state.root())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd.spawn().map_err(|e| {
            anyhow::anyhow!(
                "cannot start the agent `{}`: {e}",
                self.state.tele().display()
            )
        })?;
        write_durably(
            &pid_file(&self.state, "agent"),
            child.id().to_string().as_bytes(),
            0o644,
        )?;
        // The agent outlives the installer; init reaps it.
        std::mem::forget(child);
        Ok(())
    }

    /// Makes the running agent apply `generation` (starting the agent if
    /// needed) and waits until it has.
    fn apply(&self, generation: u64) -> anyhow::Result<()> {
        match agent_pid(&self.state) {
            Some(pid) => {
                kill(Pid::from_raw(pid), Signal::SIGHUP)?;
            }
            None => self.spawn_agent()?,
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if read_number::<u64>(&generation_file(&self.state)).is_some_and(|g| g >= generation) {
                return Ok(());
            }
            if agent_pid(&self.state).is_none() {
                let tail = procfs::tail(&self.state.log("agent"), 10).join("\n");
                anyhow::bail!(
                    "the tele agent stopped; its log ({}):\n{tail}",
                    self.state.log("agent").display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        anyhow::bail!(
            "the tele agent did not apply its service list within 60 s; see {}",
            self.state.log("agent").display()
        )
    }
}

impl ServiceManager for Agent {
    fn kind(&self) -> &'static str {
        "agent"
    }

    fn start(&self, spec: &ServiceSpec, _after: Option<&str>) -> anyhow::Result<()> {
        // The list's order is the start order; `after` is implied by it.
        let mut list = ServiceList::load(&self.state)?;
        let unchanged = list.services.iter().any(|s| s == spec);
        if unchanged && agent_pid(&self.state).is_some() {
            return Ok(());
        }
        match list.services.iter_mut().find(|s| s.name == spec.name) {
            Some(s) => *s = spec.clone(),
            None => list.services.push(spec.clone()),
        }
        list.generation += 1;
        list.save(&self.state)?;
        self.apply(list.generation)
    }

    fn is_current(&self, spec: &ServiceSpec, _after: Option<&str>) -> bool {
        ServiceList::load(&self.state).is_ok_and(|l| l.services.iter().any(|s| s == spec))
    }

    fn stop(&self, name: &str) -> anyhow::Result<()> {
        let mut list = ServiceList::load(&self.state)?;
        let Some(pos) = list.services.iter().position(|s| s.name == name) else {
            return Ok(());
        };
        let spec = list.services.remove(pos);
        list.generation += 1;
        list.save(&self.state)?;
        if agent_pid(&self.state).is_some() {
            self.apply(list.generation)?;
        } else if let Some(pid) = running_pid(&self.state, name, &spec.binary) {
            // Its agent was killed outright: stop the orphan directly.
            stop_pid(pid, !spec.keep_children, Duration::from_secs(15));
        }
        let _ = fs::remove_file(pid_file(&self.state, name));
        let _ = fs::remove_file(restarts_file(&self.state, name));
        if list.services.is_empty() {
            if let Some(pid) = agent_pid(&self.state) {
                stop_pid(pid, false, Duration::from_secs(30));
            }
            let _ = fs::remove_file(pid_file(&self.state, "agent"));
        }
        Ok(())
    }

    fn state(&self, name: &str) -> ServiceState {
        let Ok(list) = ServiceList::load(&self.state) else {
            return ServiceState::Absent;
        };
        let Some(spec) = list.services.iter().find(|s| s.name == name) else {
            return ServiceState::Absent;
        };
        let restarts = read_number(&restarts_file(&self.state, name)).unwrap_or(0);
        match running_pid(&self.state, name, &spec.binary) {
            Some(pid) => ServiceState::Running { pid, restarts },
            None if agent_pid(&self.state).is_some() => ServiceState::Restarting { restarts },
            None => ServiceState::Stopped,
        }
    }

    fn installed(&self) -> Vec<String> {
        ServiceList::load(&self.state)
            .map(|l| l.services.into_iter().map(|s| s.name).collect())
            .unwrap_or_default()
    }
}

struct Running {
    spec: ServiceSpec,
    child: Option<Child>,
    started: Instant,
    backoff: Duration,
    next_start: Instant,
    restarts: u32,
}

fn spawn(state: &StateDir, spec: &ServiceSpec) -> std::io::Result<Child> {
    fs::create_dir_all(state.logs_dir())?;
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(state.log(&spec.name))?;
    let mut cmd = Command::new(&spec.binary);
    cmd.args(&spec.args)
        .envs(&spec.env)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // Its own process group: a signal to the agent's group does not reach it.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let child = cmd.spawn()?;
    write_durably(
        &pid_file(state, &spec.name),
        child.id().to_string().as_bytes(),
        0o644,
    )?;
    Ok(child)
}

fn stop_running(state: &StateDir, r: &mut Running) {
    if let Some(c) = &mut r.child {
        stop_pid(
            c.id() as i32,
            !r.spec.keep_children,
            Duration::from_secs(15),
        );
        let _ = c.wait();
    }
    r.child = None;
    let _ = fs::remove_file(pid_file(state, &r.spec.name));
}

fn start_running(state: &StateDir, spec: ServiceSpec) -> Running {
    // A service left running by an agent that was killed is replaced.
    if let Some(pid) = running_pid(state, &spec.name, &spec.binary) {
        log(&format!(
            "stopping {} (pid {pid}) left by a previous agent",
            spec.name
        ));
        stop_pid(pid, !spec.keep_children, Duration::from_secs(15));
    }
    let child = spawn(state, &spec);
    if let Err(e) = &child {
        log(&format!("cannot start {}: {e}", spec.name));
    }
    let _ = write_durably(&restarts_file(state, &spec.name), b"0", 0o644);
    Running {
        child: child.ok(),
        spec,
        started: Instant::now(),
        backoff: Duration::from_secs(1),
        next_start: Instant::now() + Duration::from_secs(1),
        restarts: 0,
    }
}

#[allow(clippy::print_stderr)]
fn log(line: &str) {
    eprintln!("agent: {line}");
}

/// Brings `running` in line with the list: stops what left it (in reverse
/// order), restarts what changed, starts what is new, in list order.
fn reconcile(state: &StateDir, running: &mut Vec<Running>, list: &ServiceList) {
    let mut i = running.len();
    while i > 0 {
        i -= 1;
        let keep = list.services.iter().any(|s| s == &running[i].spec);
        if !keep {
            log(&format!("stopping {}", running[i].spec.name));
            stop_running(state, &mut running[i]);
            running.remove(i);
        }
    }
    let mut next = Vec::new();
    for spec in &list.services {
        match running.iter().position(|r| &r.spec == spec) {
            Some(pos) => next.push(running.remove(pos)),
            None => {
                log(&format!("starting {}", spec.name));
                next.push(start_running(state, spec.clone()));
            }
        }
    }
    *running = next;
    let _ = write_durably(
        &generation_file(state),
        list.generation.to_string().as_bytes(),
        0o644,
    );
}

/// Runs the agent until SIGTERM or SIGINT; SIGHUP reloads the list. Its
/// stderr is its log (`logs/agent.log`).
pub fn run_agent(state_dir: &Path) -> anyhow::Result<()> {
    let state = StateDir::new(state_dir);
    let term = Arc::new(AtomicBool::new(false));
    let hup = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, Arc::clone(&term))?;
    }
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&hup))?;
    let mut running: Vec<Running> = Vec::new();
    reconcile(&state, &mut running, &ServiceList::load(&state)?);
    log(&format!("supervising {} services", running.len()));
    while !term.load(Ordering::Relaxed) {
        if hup.swap(false, Ordering::Relaxed) {
            match ServiceList::load(&state) {
                Ok(list) => reconcile(&state, &mut running, &list),
                Err(e) => log(&format!("cannot reload the service list: {e}")),
            }
        }
        for r in &mut running {
            let exited = match &mut r.child {
                Some(c) => c.try_wait().ok().flatten().map(|s| s.to_string()),
                None => None,
            };
            if let Some(status) = exited {
                log(&format!(
                    "{} exited ({status}); restarting in {:?}",
                    r.spec.name, r.backoff
                ));
                r.child = None;
                r.restarts += 1;
                let _ = write_durably(
                    &restarts_file(&state, &r.spec.name),
                    r.restarts.to_string().as_bytes(),
                    0o644,
                );
                if r.started.elapsed() > Duration::from_secs(60) {
                    r.backoff = Duration::from_secs(1);
                }
                r.next_start = Instant::now() + r.backoff;
                r.backoff = (r.backoff * 2).min(Duration::from_secs(30));
            }
            if r.child.is_none() && Instant::now() >= r.next_start {
                match spawn(&state, &r.spec) {
                    Ok(c) => {
                        r.child = Some(c);
                        r.started = Instant::now();
                    }
                    Err(e) => {
                        log(&format!("cannot start {}: {e}", r.spec.name));
                        r.next_start = Instant::now() + r.backoff;
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    log("stopping services");
    for r in running.iter_mut().rev() {
        stop_running(&state, r);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
        for _ in 0..200 {
            if f() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("timed out waiting for {what}");
    }

    #[test]
    fn agent_reloads_restarts_a_dead_service_and_stops_all_on_sigterm() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        let bin = std::fs::canonicalize("/bin/sleep").unwrap();
        let mut list = ServiceList {
            generation: 1,
            services: vec![ServiceSpec::new("one", &bin).arg("300")],
        };
        list.save(&state).unwrap();
        let root = dir.path().to_path_buf();
        let agent = std::thread::spawn(move || run_agent(&root));
        let pid_of = |name: &str| running_pid(&state, name, &bin);
        wait_for("one", || pid_of("one").is_some());
        let first = pid_of("one").unwrap();
        // A service added to the list starts after a reload; the first is untouched.
        list.services.push(ServiceSpec::new("two", &bin).arg("300"));
        list.generation = 2;
        list.save(&state).unwrap();
        nix::sys::signal::raise(Signal::SIGHUP).unwrap();
        wait_for("two", || pid_of("two").is_some());
        assert_eq!(pid_of("one"), Some(first));
        // A killed service comes back, counted.
        kill(Pid::from_raw(first), Signal::SIGKILL).unwrap();
        wait_for("one restarted", || {
            pid_of("one").is_some_and(|p| p != first)
        });
        assert_eq!(read_number::<u32>(&restarts_file(&state, "one")), Some(1));
        let second = pid_of("one").unwrap();
        nix::sys::signal::raise(Signal::SIGTERM).unwrap();
        agent.join().unwrap().unwrap();
        assert!(!procfs::is_alive(second), "services stop with the agent");
    }
}
