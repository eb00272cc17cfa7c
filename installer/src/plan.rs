//! The operation plan: a tree of phases with path ids (`/checks`,
//! `/nodes/<node>/services`, `/hooks/install`, ...), saved in the state
//! directory before the first phase runs and again at every change of state
//! (temporary file, fsync, rename). Leaves are run by executors
//! ([`crate::phase`]); a group's state follows its children. `requires`
//! edges name the phases that must be completed before a phase may run.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::durable::write_durably;

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

impl std::fmt::Display for PhaseState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PhaseState::Unstarted => "unstarted",
            PhaseState::InProgress => "in progress",
            PhaseState::Completed => "completed",
            PhaseState::Failed => "failed",
        })
    }
}

/// One phase of the plan: a leaf with an executor, or a group of phases.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanPhase {
    /// Path-like id, e.g. `/nodes/node-1/services`.
    pub id: String,
    /// What it does, for people.
    pub description: String,
    /// Phases that must be completed first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requires: Vec<String>,
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
    /// Its sub-phases (a group), in the order they run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phases: Vec<PlanPhase>,
}

impl PlanPhase {
    fn new(id: &str, description: &str, requires: Vec<String>) -> PlanPhase {
        PlanPhase {
            id: id.into(),
            description: description.into(),
            requires,
            state: PhaseState::Unstarted,
            started_ms: None,
            finished_ms: None,
            error: None,
            attempts: 0,
            phases: Vec::new(),
        }
    }

    /// Seconds the phase took (or has taken so far).
    pub fn duration_secs(&self) -> Option<f64> {
        let start = self.started_ms?;
        let end = self.finished_ms.unwrap_or_else(now_ms);
        Some(end.saturating_sub(start) as f64 / 1000.0)
    }

    /// True for a group of phases.
    pub fn is_group(&self) -> bool {
        !self.phases.is_empty()
    }

    fn update_group(&mut self) {
        if self.phases.is_empty() {
            return;
        }
        for p in &mut self.phases {
            p.update_group();
        }
        let states: Vec<PhaseState> = self.phases.iter().map(|p| p.state).collect();
        self.state = if states.iter().all(|s| *s == PhaseState::Completed) {
            PhaseState::Completed
        } else if states.contains(&PhaseState::Failed) {
            PhaseState::Failed
        } else if states.iter().all(|s| *s == PhaseState::Unstarted) {
            PhaseState::Unstarted
        } else {
            PhaseState::InProgress
        };
        self.started_ms = self.phases.iter().filter_map(|p| p.started_ms).min();
        self.finished_ms = (self.state == PhaseState::Completed)
            .then(|| self.phases.iter().filter_map(|p| p.finished_ms).max())
            .flatten();
        self.error = None;
    }
}

/// The whole plan of an operation.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// Which operation, e.g. `install`.
    pub operation: String,
    /// The top-level phases in the order they run.
    pub phases: Vec<PlanPhase>,
    #[serde(skip)]
    path: PathBuf,
}

/// A leaf phase as the plan is built: id, description, requirements.
#[derive(Clone, Debug)]
pub struct PhaseEntry {
    /// Its id.
    pub id: String,
    /// What it does.
    pub description: String,
    /// What must be completed first.
    pub requires: Vec<String>,
}

/// The plan file name inside the state directory.
pub const PLAN_FILE: &str = "plan.json";

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

fn group_description(id: &str) -> String {
    let parts: Vec<&str> = id.trim_start_matches('/').split('/').collect();
    match parts.as_slice() {
        ["nodes"] => "the cluster's nodes".into(),
        ["nodes", node] => format!("node {node}"),
        ["hooks"] => "the app's hooks".into(),
        _ => format!("the phases under {id}"),
    }
}

impl Plan {
    /// A plan of `leaves` in run order. Ids with a common prefix are grouped
    /// (`/nodes/a/x` and `/nodes/a/y` under `/nodes/a` under `/nodes`).
    /// Fails when a phase requires one that does not run before it.
    pub fn new(state_dir: &Path, operation: &str, leaves: &[PhaseEntry]) -> anyhow::Result<Plan> {
        let mut plan = Plan {
            operation: operation.into(),
            phases: Vec::new(),
            path: state_dir.join(PLAN_FILE),
        };
        let mut seen: Vec<&str> = Vec::new();
        for leaf in leaves {
            for r in &leaf.requires {
                anyhow::ensure!(
                    seen.iter()
                        .any(|s| s == r || s.starts_with(&format!("{r}/"))),
                    "phase {} requires {r}, which does not run before it",
                    leaf.id
                );
            }
            anyhow::ensure!(!seen.contains(&leaf.id.as_str()), "phase {} twice", leaf.id);
            seen.push(&leaf.id);
            let parts: Vec<&str> = leaf.id.trim_start_matches('/').split('/').collect();
            let mut level = &mut plan.phases;
            for depth in 1..parts.len() {
                let gid = format!("/{}", parts[..depth].join("/"));
                let pos = match level.iter().position(|p| p.id == gid) {
                    Some(p) => p,
                    None => {
                        level.push(PlanPhase::new(&gid, &group_description(&gid), vec![]));
                        level.len() - 1
                    }
                };
                level = &mut level[pos].phases;
            }
            level.push(PlanPhase::new(
                &leaf.id,
                &leaf.description,
                leaf.requires.clone(),
            ));
        }
        Ok(plan)
    }

    /// Takes the state of every leaf that `saved` also has (same id).
    pub fn merge_from(&mut self, saved: &Plan) {
        let ids: Vec<String> = self.leaves().iter().map(|p| p.id.clone()).collect();
        for id in ids {
            if let Some(old) = saved.find(&id).filter(|p| !p.is_group()).cloned() {
                let p = self.find_mut(&id).expect("leaf");
                p.state = old.state;
                p.started_ms = old.started_ms;
                p.finished_ms = old.finished_ms;
                p.error = old.error;
                p.attempts = old.attempts;
            }
        }
        for p in &mut self.phases {
            p.update_group();
        }
    }

    /// The saved plan in `state_dir`, if any.
    pub fn load(state_dir: &Path) -> anyhow::Result<Option<Plan>> {
        let path = state_dir.join(PLAN_FILE);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let mut plan: Plan = serde_json::from_slice(&bytes).map_err(|e| {
            anyhow::anyhow!(
                "`{}` is damaged: {e}\nhint: remove the install with `tele uninstall` and install again",
                path.display()
            )
        })?;
        plan.path = path;
        Ok(Some(plan))
    }

    /// Saves the plan crash-safely.
    pub fn save(&mut self) -> std::io::Result<()> {
        for p in &mut self.phases {
            p.update_group();
        }
        let mut bytes = serde_json::to_vec_pretty(self).expect("plan serialises");
        bytes.push(b'\n');
        write_durably(&self.path, &bytes, 0o600)
    }

    /// Every leaf, in run order.
    pub fn leaves(&self) -> Vec<&PlanPhase> {
        fn walk<'a>(ps: &'a [PlanPhase], out: &mut Vec<&'a PlanPhase>) {
            for p in ps {
                if p.is_group() {
                    walk(&p.phases, out);
                } else {
                    out.push(p);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.phases, &mut out);
        out
    }

    /// The phase (leaf or group) with `id`.
    pub fn find(&self, id: &str) -> Option<&PlanPhase> {
        fn walk<'a>(ps: &'a [PlanPhase], id: &str) -> Option<&'a PlanPhase> {
            ps.iter().find_map(|p| {
                if p.id == id {
                    Some(p)
                } else {
                    walk(&p.phases, id)
                }
            })
        }
        walk(&self.phases, id)
    }

    fn find_mut(&mut self, id: &str) -> Option<&mut PlanPhase> {
        fn walk<'a>(ps: &'a mut [PlanPhase], id: &str) -> Option<&'a mut PlanPhase> {
            for p in ps {
                if p.id == id {
                    return Some(p);
                }
                if let Some(f) = walk(&mut p.phases, id) {
                    return Some(f);
                }
            }
            None
        }
        walk(&mut self.phases, id)
    }

    /// The first leaf that is not completed.
    pub fn next(&self) -> Option<&PlanPhase> {
        self.leaves()
            .into_iter()
            .find(|p| p.state != PhaseState::Completed)
    }

    /// True when every phase completed.
    pub fn is_complete(&self) -> bool {
        self.next().is_none()
    }

    /// True when nothing but `ids` has ever started (their effects are
    /// harmless to redo, so a new run may replace the plan).
    pub fn only_started(&self, ids: &[&str]) -> bool {
        self.leaves()
            .iter()
            .all(|p| p.state == PhaseState::Unstarted || ids.contains(&p.id.as_str()))
    }

    /// Whether every phase `id` requires is completed (names the first that is not).
    pub fn unmet_requirement(&self, id: &str) -> Option<String> {
        let p = self.find(id)?;
        p.requires
            .iter()
            .find(|r| {
                self.find(r)
                    .is_none_or(|q| q.state != PhaseState::Completed)
            })
            .cloned()
    }

    fn leaf_mut(&mut self, id: &str) -> &mut PlanPhase {
        self.find_mut(id).expect("phase in plan")
    }

    /// Marks a phase started and saves.
    pub fn start(&mut self, id: &str) -> std::io::Result<()> {
        let p = self.leaf_mut(id);
        p.state = PhaseState::InProgress;
        p.started_ms = Some(now_ms());
        p.finished_ms = None;
        p.error = None;
        p.attempts += 1;
        self.save()
    }

    /// Marks a phase completed and saves.
    pub fn complete(&mut self, id: &str) -> std::io::Result<()> {
        let p = self.leaf_mut(id);
        p.state = PhaseState::Completed;
        p.finished_ms = Some(now_ms());
        p.error = None;
        self.save()
    }

    /// Marks a phase failed with `error` and saves.
    pub fn fail(&mut self, id: &str, error: &str) -> std::io::Result<()> {
        let p = self.leaf_mut(id);
        p.state = PhaseState::Failed;
        p.finished_ms = Some(now_ms());
        p.error = Some(error.into());
        self.save()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, requires: &[&str]) -> PhaseEntry {
        PhaseEntry {
            id: id.into(),
            description: format!("do {id}"),
            requires: requires.iter().map(|r| r.to_string()).collect(),
        }
    }

    fn sample(dir: &Path) -> Plan {
        Plan::new(
            dir,
            "install",
            &[
                entry("/checks", &[]),
                entry("/nodes/n1/configure", &["/checks"]),
                entry("/nodes/n1/services", &["/nodes/n1/configure"]),
                entry("/app", &["/nodes"]),
            ],
        )
        .unwrap()
    }

    #[test]
    fn ids_form_a_tree_and_groups_follow_their_children() {
        let dir = tempfile::tempdir().unwrap();
        let mut plan = sample(dir.path());
        let top: Vec<&str> = plan.phases.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(top, ["/checks", "/nodes", "/app"]);
        assert_eq!(plan.phases[1].phases[0].id, "/nodes/n1");
        assert_eq!(plan.phases[1].phases[0].phases.len(), 2);
        plan.start("/checks").unwrap();
        plan.complete("/checks").unwrap();
        plan.start("/nodes/n1/configure").unwrap();
        plan.complete("/nodes/n1/configure").unwrap();
        assert_eq!(plan.find("/nodes").unwrap().state, PhaseState::InProgress);
        assert_eq!(plan.unmet_requirement("/app").as_deref(), Some("/nodes"));
        plan.start("/nodes/n1/services").unwrap();
        plan.complete("/nodes/n1/services").unwrap();
        assert_eq!(plan.find("/nodes").unwrap().state, PhaseState::Completed);
        assert_eq!(plan.unmet_requirement("/app"), None);
    }

    #[test]
    fn a_requirement_that_runs_later_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = Plan::new(
            dir.path(),
            "install",
            &[entry("/a", &["/b"]), entry("/b", &[])],
        )
        .unwrap_err();
        assert!(err.to_string().contains("/a requires /b"), "{err}");
    }

    #[test]
    fn plan_survives_a_reload_and_a_rebuilt_plan_keeps_its_states() {
        let dir = tempfile::tempdir().unwrap();
        let mut plan = sample(dir.path());
        plan.start("/checks").unwrap();
        plan.complete("/checks").unwrap();
        plan.start("/nodes/n1/configure").unwrap();
        // The installer "dies" here: only what was saved counts.
        let saved = Plan::load(dir.path()).unwrap().unwrap();
        let mut rebuilt = sample(dir.path());
        rebuilt.merge_from(&saved);
        assert_eq!(rebuilt.next().unwrap().id, "/nodes/n1/configure");
        assert_eq!(rebuilt.next().unwrap().state, PhaseState::InProgress);
        assert!(!rebuilt.only_started(&["/checks"]));
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &fs::metadata(dir.path().join(PLAN_FILE))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary files left");
    }

    #[test]
    fn failed_phase_keeps_its_error_until_it_runs_again() {
        let dir = tempfile::tempdir().unwrap();
        let mut plan = Plan::new(dir.path(), "install", &[entry("/a", &[])]).unwrap();
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
