//! The operation plan: an ordered list of named phases saved in the state
//! directory before the first one runs, and saved again at every change of
//! state (write to a temporary file, fsync, rename). `--resume` reads it back
//! and carries on from the first phase that is not completed; a phase that
//! was in progress when the installer died runs again, which is safe because
//! every phase is idempotent.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// The state of one phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PhaseState {
    /// Not run yet.
    Unstarted,
    /// Started; if the installer is not running, it died in this phase.
    InProgress,
    /// Done.
    Completed,
    /// Failed with an error.
    Failed,
}

/// One phase of the plan.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Phase {
    /// Path-like id, e.g. `/services` or `/hooks/install`.
    pub id: String,
    /// What it does, for people.
    pub description: String,
    /// Where it stands.
    pub state: PhaseState,
    /// Unix time (ms) it last started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_ms: Option<u128>,
    /// Unix time (ms) it last ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_ms: Option<u128>,
    /// The error of its last failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// How many times it was started.
    #[serde(default)]
    pub attempts: u32,
}

impl Phase {
    /// Seconds the phase took (or has taken so far).
    pub fn duration_secs(&self) -> Option<f64> {
        let start = self.started_ms?;
        let end = self.finished_ms.unwrap_or_else(now_ms);
        Some(end.saturating_sub(start) as f64 / 1000.0)
    }
}

/// The whole plan of an operation.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// Which operation, e.g. `install`.
    pub operation: String,
    /// The phases in the order they run.
    pub phases: Vec<Phase>,
    #[serde(skip)]
    path: PathBuf,
}

/// The plan file name inside the state directory.
pub const PLAN_FILE: &str = "plan.json";

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

/// Writes `bytes` to `path` crash-safely: temporary file, fsync, rename, fsync dir.
pub fn write_durably(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
    tmp.as_file()
        .set_permissions(fs::Permissions::from_mode(mode))?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

impl Plan {
    /// A new plan of `phases` (id, description), saved at `state_dir/plan.json`.
    pub fn create(
        state_dir: &Path,
        operation: &str,
        phases: &[(&str, &str)],
    ) -> std::io::Result<Plan> {
        let plan = Plan {
            operation: operation.into(),
            phases: phases
                .iter()
                .map(|(id, d)| Phase {
                    id: id.to_string(),
                    description: d.to_string(),
                    state: PhaseState::Unstarted,
                    started_ms: None,
                    finished_ms: None,
                    error: None,
                    attempts: 0,
                })
                .collect(),
            path: state_dir.join(PLAN_FILE),
        };
        plan.save()?;
        Ok(plan)
    }

    /// The saved plan in `state_dir`, if any.
    pub fn load(state_dir: &Path) -> std::io::Result<Option<Plan>> {
        let path = state_dir.join(PLAN_FILE);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut plan: Plan = serde_json::from_slice(&bytes).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        })?;
        plan.path = path;
        Ok(Some(plan))
    }

    /// Saves the plan crash-safely.
    pub fn save(&self) -> std::io::Result<()> {
        let mut bytes = serde_json::to_vec_pretty(self).expect("plan serialises");
        bytes.push(b'\n');
        write_durably(&self.path, &bytes, 0o600)
    }

    /// The first phase that is not completed.
    pub fn next(&self) -> Option<&Phase> {
        self.phases
            .iter()
            .find(|p| p.state != PhaseState::Completed)
    }

    /// True when every phase completed.
    pub fn is_complete(&self) -> bool {
        self.next().is_none()
    }

    fn phase_mut(&mut self, id: &str) -> &mut Phase {
        self.phases
            .iter_mut()
            .find(|p| p.id == id)
            .expect("phase in plan")
    }

    /// Marks a phase started and saves.
    pub fn start(&mut self, id: &str) -> std::io::Result<()> {
        let p = self.phase_mut(id);
        p.state = PhaseState::InProgress;
        p.started_ms = Some(now_ms());
        p.finished_ms = None;
        p.error = None;
        p.attempts += 1;
        self.save()
    }

    /// Marks a phase completed and saves.
    pub fn complete(&mut self, id: &str) -> std::io::Result<()> {
        let p = self.phase_mut(id);
        p.state = PhaseState::Completed;
        p.finished_ms = Some(now_ms());
        self.save()
    }

    /// Marks a phase failed with `error` and saves.
    pub fn fail(&mut self, id: &str, error: &str) -> std::io::Result<()> {
        let p = self.phase_mut(id);
        p.state = PhaseState::Failed;
        p.finished_ms = Some(now_ms());
        p.error = Some(error.into());
        self.save()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_survives_a_reload_and_resumes_at_the_first_unfinished_phase() {
        let dir = tempfile::tempdir().unwrap();
        let mut plan = Plan::create(
            dir.path(),
            "install",
            &[("/a", "first"), ("/b", "second"), ("/c", "third")],
        )
        .unwrap();
        plan.start("/a").unwrap();
        plan.complete("/a").unwrap();
        plan.start("/b").unwrap();
        // The installer "dies" here: only what was saved counts.
        let reloaded = Plan::load(dir.path()).unwrap().unwrap();
        assert_eq!(reloaded.next().unwrap().id, "/b");
        assert_eq!(reloaded.phases[1].state, PhaseState::InProgress);
        assert_eq!(reloaded.phases[0].state, PhaseState::Completed);
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &fs::metadata(dir.path().join(PLAN_FILE))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers.len(), 1, "no temporary files left: {leftovers:?}");
    }

    #[test]
    fn failed_phase_keeps_its_error_until_it_runs_again() {
        let dir = tempfile::tempdir().unwrap();
        let mut plan = Plan::create(dir.path(), "install", &[("/a", "first")]).unwrap();
        plan.start("/a").unwrap();
        plan.fail("/a", "boom").unwrap();
        let mut plan = Plan::load(dir.path()).unwrap().unwrap();
        assert_eq!(plan.phases[0].error.as_deref(), Some("boom"));
        plan.start("/a").unwrap();
        assert_eq!(plan.phases[0].error, None);
        assert_eq!(plan.phases[0].attempts, 2);
        plan.complete("/a").unwrap();
        assert!(Plan::load(dir.path()).unwrap().unwrap().is_complete());
    }
}
