//! Keeping the node's services running: one [`ServiceSpec`] per service and
//! one [`ServiceManager`] with two back-ends, chosen in one place
//! ([`for_host`]): systemd units where PID 1 is systemd ([`systemd`]), the
//! tele agent's own supervisor elsewhere ([`agent`]), as in containers and
//! test sandboxes. Both run the same command line, write the same log file
//! (`STATE/logs/NAME.log`) and restart a service that dies.

pub mod agent;
pub mod systemd;

use std::collections::BTreeMap;
use std::fmt::Display;
use std::path::{Path, PathBuf};

use crate::state_dir::StateDir;

/// One service: a binary, its arguments and environment. Components build
/// it with the typed helpers below; both back-ends run it as it is.
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
    /// Leave the service's child processes running when it stops (containerd:
    /// its shims keep the pods running across its restarts).
    #[serde(default)]
    pub keep_children: bool,
}

impl ServiceSpec {
    /// `binary` with no arguments, known as `name`.
    pub fn new(name: &str, binary: impl Into<PathBuf>) -> ServiceSpec {
        ServiceSpec {
            name: name.into(),
            binary: binary.into(),
            args: Vec::new(),
            env: BTreeMap::new(),
            keep_children: false,
        }
    }

    /// Leaves child processes running when the service stops.
    pub fn keep_children(mut self) -> ServiceSpec {
        self.keep_children = true;
        self
    }

    /// Adds `--NAME=VALUE`.
    pub fn flag(mut self, name: &str, value: impl Display) -> ServiceSpec {
        self.args.push(format!("--{name}={value}"));
        self
    }

    /// Adds `--NAME=PATH`.
    pub fn path_flag(self, name: &str, path: &Path) -> ServiceSpec {
        let v = path.display().to_string();
        self.flag(name, v)
    }

    /// Adds a plain argument.
    pub fn arg(mut self, a: impl Into<String>) -> ServiceSpec {
        self.args.push(a.into());
        self
    }

    /// Sets an environment variable.
    pub fn env(mut self, key: &str, value: impl Into<String>) -> ServiceSpec {
        self.env.insert(key.into(), value.into());
        self
    }
}

/// Where a service stands.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase", tag = "state")]
pub enum ServiceState {
    /// Running as `pid`, restarted `restarts` times since it was installed.
    Running {
        /// Its main process.
        pid: i32,
        /// Restarts after it died.
        restarts: u32,
    },
    /// Installed, waiting to be (re)started after it died.
    Restarting {
        /// Restarts after it died.
        restarts: u32,
    },
    /// Installed but not running.
    Stopped,
    /// Not installed.
    Absent,
}

impl ServiceState {
    /// Restarts so far (0 when not installed).
    pub fn restarts(&self) -> u32 {
        match self {
            ServiceState::Running { restarts, .. } | ServiceState::Restarting { restarts } => {
                *restarts
            }
            _ => 0,
        }
    }

    /// The pid when running.
    pub fn pid(&self) -> Option<i32> {
        match self {
            ServiceState::Running { pid, .. } => Some(*pid),
            _ => None,
        }
    }
}

/// Starts, stops and reports on the node's services.
pub trait ServiceManager {
    /// `systemd` or `agent`.
    fn kind(&self) -> &'static str;
    /// Installs `spec` to start at boot (after `after`, when given) and makes
    /// it run: started when stopped, restarted when its spec changed,
    /// untouched otherwise.
    fn start(&self, spec: &ServiceSpec, after: Option<&str>) -> anyhow::Result<()>;
    /// Stops `name` and removes it; safe in any state, also when absent.
    fn stop(&self, name: &str) -> anyhow::Result<()>;
    /// True when `spec` (after `after`) is the service as installed, so
    /// that [`ServiceManager::start`] would leave a running one alone.
    fn is_current(&self, spec: &ServiceSpec, after: Option<&str>) -> bool;
    /// Where `name` stands.
    fn state(&self, name: &str) -> ServiceState;
    /// The services installed for this state directory, in start order.
    fn installed(&self) -> Vec<String>;
    /// Stops and removes every service, in reverse start order.
    fn stop_all(&self) -> anyhow::Result<()> {
        for name in self.installed().iter().rev() {
            self.stop(name)?;
        }
        Ok(())
    }
}

/// True when PID 1 is systemd.
pub fn systemd_is_init() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// The service manager of this machine: systemd where it is PID 1, else the
/// tele agent. `TELE_SERVICE_MANAGER=agent|systemd` overrides the choice.
pub fn for_host(state: &StateDir) -> Box<dyn ServiceManager> {
    let systemd = match std::env::var("TELE_SERVICE_MANAGER").as_deref() {
        Ok("agent") => false,
        Ok("systemd") => true,
        _ => systemd_is_init(),
    };
    if systemd {
        Box::new(systemd::Systemd::new(state.clone()))
    } else {
        Box::new(agent::Agent::new(state.clone()))
    }
}
