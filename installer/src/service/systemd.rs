//! The systemd back-end: each service is a unit `tele-NAME.service` in
//! `/etc/systemd/system`, enabled so that it comes back after a reboot,
//! ordered after the service started before it, restarted when it dies,
//! its output appended to the same log file the agent would write.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{ServiceManager, ServiceSpec, ServiceState};
use crate::durable::write_if_changed;
use crate::state_dir::StateDir;

/// Where unit files go.
const UNIT_DIR: &str = "/etc/systemd/system";
/// The key naming the state directory a unit belongs to.
const OWNER_KEY: &str = "X-Tele-StateDir";

/// systemd as the service manager.
pub struct Systemd {
    state: StateDir,
    unit_dir: PathBuf,
}

/// The unit name of a service.
pub fn unit_name(name: &str) -> String {
    format!("tele-{name}.service")
}

impl Systemd {
    /// Units for the install in `state`.
    pub fn new(state: StateDir) -> Systemd {
        Systemd {
            state,
            unit_dir: PathBuf::from(UNIT_DIR),
        }
    }

    fn unit_path(&self, name: &str) -> PathBuf {
        self.unit_dir.join(unit_name(name))
    }

    fn show(&self, name: &str) -> std::collections::BTreeMap<String, String> {
        let out = Command::new("systemctl")
            .args([
                "show",
                "-p",
                "LoadState,ActiveState,SubState,MainPID,NRestarts,UnitFileState",
                &unit_name(name),
            ])
            .output();
        let text = out
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        text.lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }
}

fn systemctl(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("systemctl").args(args).output()?;
    anyhow::ensure!(
        out.status.success(),
        "systemctl {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

impl ServiceManager for Systemd {
    fn kind(&self) -> &'static str {
        "systemd"
    }

    fn start(&self, spec: &ServiceSpec, after: Option<&str>) -> anyhow::Result<()> {
        // StandardOutput=append: fails with 209/STDOUT when the directory is missing.
        std::fs::create_dir_all(self.state.logs_dir())?;
        let unit = render_unit(&self.state, spec, after);
        let changed = write_if_changed(&self.unit_path(&spec.name), unit.as_bytes(), 0o644)?;
        let name = unit_name(&spec.name);
        if changed {
            systemctl(&["daemon-reload"])?;
        }
        systemctl(&["enable", "--quiet", &name])?;
        let active = self.show(&spec.name).get("ActiveState").map(String::as_str) == Some("active");
        if changed || !active {
            // restart resets the restart counter's meaning: the unit starts afresh.
            systemctl(&["reset-failed", &name]).ok();
            systemctl(&["restart", &name])?;
        }
        Ok(())
    }

    fn is_current(&self, spec: &ServiceSpec, after: Option<&str>) -> bool {
        std::fs::read(self.unit_path(&spec.name))
            .is_ok_and(|u| u == render_unit(&self.state, spec, after).as_bytes())
    }

    fn stop(&self, name: &str) -> anyhow::Result<()> {
        let path = self.unit_path(name);
        let unit = unit_name(name);
        if path.exists() {
            // disable --now stops it too; failures (already gone) are not errors.
            let _ = Command::new("systemctl")
                .args(["disable", "--now", "--quiet", &unit])
                .output();
            std::fs::remove_file(&path)?;
            systemctl(&["daemon-reload"])?;
            let _ = Command::new("systemctl")
                .args(["reset-failed", &unit])
                .output();
        }
        Ok(())
    }

    fn state(&self, name: &str) -> ServiceState {
        if !self.unit_path(name).exists() {
            return ServiceState::Absent;
        }
        let p = self.show(name);
        let get = |k: &str| p.get(k).map(String::as_str).unwrap_or_default();
        let restarts = get("NRestarts").parse().unwrap_or(0);
        let pid: i32 = get("MainPID").parse().unwrap_or(0);
        match (get("ActiveState"), get("SubState")) {
            ("active", _) if pid > 0 => ServiceState::Running { pid, restarts },
            ("activating", "auto-restart") | ("failed", _) | ("activating", _) => {
                ServiceState::Restarting { restarts }
            }
            _ => ServiceState::Stopped,
        }
    }

    fn installed(&self) -> Vec<String> {
        // Unit files name their state directory and the service started before them.
        let mut units: Vec<(String, Option<String>)> = Vec::new();
        let owner = format!("{OWNER_KEY}={}", self.state.root().display());
        for entry in std::fs::read_dir(&self.unit_dir)
            .into_iter()
            .flatten()
            .flatten()
        {
            let file = entry.file_name().to_string_lossy().into_owned();
            let Some(name) = file
                .strip_prefix("tele-")
                .and_then(|n| n.strip_suffix(".service"))
            else {
                continue;
            };
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            if !text.lines().any(|l| l == owner) {
                continue;
            }
            let after = text
                .lines()
                .find_map(|l| l.strip_prefix("After=tele-"))
                .and_then(|a| a.split(".service").next())
                .map(String::from);
            units.push((name.to_string(), after));
        }
        start_order(units)
    }
}

/// Orders services so that each comes after the one it names.
fn start_order(mut units: Vec<(String, Option<String>)>) -> Vec<String> {
    units.sort();
    let mut out: Vec<String> = Vec::new();
    while !units.is_empty() {
        let pos = units
            .iter()
            .position(|(_, after)| {
                after
                    .as_ref()
                    .is_none_or(|a| out.contains(a) || !units.iter().any(|(n, _)| n == a))
            })
            .unwrap_or(0);
        out.push(units.remove(pos).0);
    }
    out
}

/// The unit of a service: enabled at boot, after `after`, restarted always,
/// output appended to its log in the state directory.
pub fn render_unit(state: &StateDir, s: &ServiceSpec, after: Option<&str>) -> String {
    let mut exec = vec![quote(&s.binary.display().to_string())];
    exec.extend(s.args.iter().map(|a| quote(a)));
    let env: String = s
        .env
        .iter()
        .map(|(k, v)| format!("Environment={}\n", quote(&format!("{k}={v}"))))
        .collect();
    let order = match after {
        Some(a) => format!("After={0}\nWants={0}\n", unit_name(a)),
        None => "After=network-online.target\n".into(),
    };
    format!(
        "# Written by tele.\n[Unit]\nDescription=tele {name}\n{order}{OWNER_KEY}={state}\n\n[Service]\n{env}ExecStart={exec}\nRestart=always\nRestartSec=2\nStandardOutput=append:{log}\nStandardError=append:{log}\nLimitNOFILE=1048576\n{kill}\n[Install]\nWantedBy=multi-user.target\n",
        name = s.name,
        state = state.root().display(),
        exec = exec.join(" "),
        log = state.log(&s.name).display(),
        kill = if s.keep_children { "KillMode=process\n" } else { "" },
    )
}

/// Quotes a word for an `ExecStart=` line.
fn quote(s: &str) -> String {
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
                .replace('$', "$$")
        )
    }
}

/// Used by tests: a manager writing units into `dir` instead of /etc.
#[doc(hidden)]
pub fn with_unit_dir(state: StateDir, dir: &Path) -> Systemd {
    Systemd {
        state,
        unit_dir: dir.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_pass_systemd_analyze_verify() {
        // systemd's own checker, which works without systemd as PID 1.
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        let spec = ServiceSpec::new("etcd", "/bin/sleep")
            .flag("listen", "https://127.0.0.1:2379,https://10.0.0.1:2379")
            .arg("a b")
            .arg("100%")
            .env("PATH", "/usr/bin:/bin");
        let unit = dir.path().join("tele-etcd.service");
        std::fs::write(&unit, render_unit(&state, &spec, None)).unwrap();
        let out = Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(&unit)
            .output()
            .expect("systemd-analyze (Debian's systemd package) checks the units");
        let complaints = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && complaints.trim().is_empty(),
            "{complaints}"
        );
    }

    #[test]
    fn arguments_are_quoted_for_systemd() {
        assert_eq!(quote("--flag=a,b"), "--flag=a,b");
        assert_eq!(quote("a b"), "\"a b\"");
        assert_eq!(quote("100%"), "\"100%%\"");
    }

    #[test]
    fn installed_units_come_back_in_start_order_and_only_our_own() {
        let dir = tempfile::tempdir().unwrap();
        let units = dir.path().join("units");
        std::fs::create_dir_all(&units).unwrap();
        let state = StateDir::new(dir.path().join("state"));
        let other = StateDir::new(dir.path().join("other"));
        for (name, after) in [("c", Some("b")), ("a", None), ("b", Some("a"))] {
            let spec = ServiceSpec::new(name, "/bin/true");
            std::fs::write(
                units.join(unit_name(name)),
                render_unit(&state, &spec, after),
            )
            .unwrap();
        }
        std::fs::write(
            units.join(unit_name("z")),
            render_unit(&other, &ServiceSpec::new("z", "/bin/true"), None),
        )
        .unwrap();
        let m = with_unit_dir(state, &units);
        assert_eq!(m.installed(), ["a", "b", "c"]);
    }
}
