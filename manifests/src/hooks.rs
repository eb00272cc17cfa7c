//! Lifecycle hooks: Kubernetes jobs run at install, update, node add, ...,
//! written inline in the manifest or kept in a file beside it.

use std::path::{Component, Path, PathBuf};

use crate::schema_check::{Checker, Node};
use crate::source_text::{Origin, SourceText};

/// Every hook name the manifest accepts under `hooks:`.
pub const HOOK_NAMES: &[&str] = &[
    "install",
    "postInstall",
    "preUpdate",
    "update",
    "postUpdate",
    "rollback",
    "postRollback",
    "preUninstall",
    "uninstall",
    "preNodeAdd",
    "postNodeAdd",
    "preNodeRemove",
    "postNodeRemove",
    "status",
    "info",
    "licenseUpdated",
    "start",
    "stop",
    "dump",
    "backup",
    "restore",
    "networkInstall",
    "networkUpdate",
    "networkRollback",
    "clusterProvision",
    "clusterDeprovision",
    "nodesProvision",
    "nodesDeprovision",
];

const FILE_SCHEME: &str = "file://";

/// The `hooks:` section, in manifest order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Hooks {
    /// The hooks that are defined.
    pub hooks: Vec<Hook>,
}

impl Hooks {
    /// The hook named `name` (e.g. `install`), if defined.
    pub fn get(&self, name: &str) -> Option<&Hook> {
        self.hooks.iter().find(|hook| hook.name == name)
    }

    /// Files referenced by `job: file://...`, relative to the manifest directory.
    pub fn files(&self) -> impl Iterator<Item = &Path> {
        self.hooks.iter().filter_map(|hook| match &hook.job {
            HookJob::File(path) => Some(path.as_path()),
            HookJob::Inline(_) => None,
        })
    }
}

/// One hook.
#[derive(Debug, Clone, PartialEq)]
pub struct Hook {
    /// Hook name, e.g. `install`.
    pub name: String,
    /// The job to run.
    pub job: HookJob,
    /// Where the `job:` value is in the manifest.
    pub origin: Origin,
}

/// Where a hook's job is defined.
#[derive(Debug, Clone, PartialEq)]
pub enum HookJob {
    /// The job's YAML, written in the manifest (usually as `job: |`).
    Inline(String),
    /// `file://PATH`: a file relative to the manifest directory.
    File(PathBuf),
}

pub(crate) fn read_hooks(c: &mut Checker, node: &Node) -> Hooks {
    let mut hooks = Hooks::default();
    let Some(f) = c.mapping(node, "hooks", HOOK_NAMES) else {
        return hooks;
    };
    for (_, name, value) in f.entries() {
        if !HOOK_NAMES.contains(&name) {
            continue;
        }
        let path = f.child(name);
        let Some(h) = c.mapping(value, &path, &["job", "type"]) else {
            continue;
        };
        c.opt_string(&h, "type");
        let Some(job_node) = c.required(&h, "job") else {
            continue;
        };
        let Some(job) = c.string(job_node, &h.child("job")) else {
            continue;
        };
        let origin = c
            .src
            .origin(job_node)
            .expect("the manifest is not embedded");
        let job = match job.strip_prefix(FILE_SCHEME) {
            Some(file) => match check_hook_path(file) {
                Ok(path) => HookJob::File(path),
                Err(reason) => {
                    c.error(job_node, format!("hook `{name}`: {reason}")).hint = Some(
                        "hook files live beside the manifest: `file://hooks/install.yaml`"
                            .to_string(),
                    );
                    continue;
                }
            },
            None => {
                check_inline_job(c, job_node, &job, name);
                HookJob::Inline(job)
            }
        };
        hooks.hooks.push(Hook {
            name: name.to_string(),
            job,
            origin,
        });
    }
    hooks
}

fn check_hook_path(file: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(file);
    if file.is_empty() {
        return Err("the `file://` path is empty".to_string());
    }
    if path.is_absolute() {
        return Err(format!(
            "`{file}` is absolute; it must be relative to the manifest"
        ));
    }
    if path.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(format!("`{file}` leaves the manifest directory"));
    }
    Ok(path)
}

/// Parses an inline job so its YAML errors are reported at the manifest lines.
fn check_inline_job(c: &mut Checker, job_node: &Node, job: &str, name: &str) {
    let embedded = c.src.embedded(job_node, job);
    let documents = match embedded.load() {
        Ok(documents) => documents,
        Err(mut diagnostic) => {
            diagnostic.message = format!("in hook `{name}` job: {}", diagnostic.message);
            c.diagnostics.push(diagnostic);
            return;
        }
    };
    let objects: Vec<&Node> = documents
        .iter()
        .filter(|d| !crate::schema_check::is_null(d))
        .collect();
    if objects.is_empty() {
        c.error(job_node, format!("hook `{name}` job is empty"))
            .hint = Some("write a Kubernetes Job, or `file://path/to/job.yaml`".to_string());
    }
    let mut inner = Checker::new(&embedded);
    for object in objects {
        let Some(f) = inner.any_mapping(object, "job") else {
            continue;
        };
        inner.required(&f, "apiVersion");
        inner.required(&f, "kind");
    }
    for mut diagnostic in inner.diagnostics {
        diagnostic.message = format!("in hook `{name}` job: {}", diagnostic.message);
        c.diagnostics.push(diagnostic);
    }
}

/// The inline hook jobs of a manifest as texts whose positions map into it.
pub(crate) fn inline_job_sources(manifest: &SourceText, root: &Node) -> Vec<(String, SourceText)> {
    let Some(hooks) = root
        .data
        .as_mapping_get("hooks")
        .and_then(|h| h.data.as_mapping())
    else {
        return Vec::new();
    };
    let mut sources = Vec::new();
    for (key, hook) in hooks {
        let (Some(name), Some(job)) = (key.data.as_str(), hook.data.as_mapping_get("job")) else {
            continue;
        };
        if let Some(text) = job.data.as_str() {
            if !text.starts_with(FILE_SCHEME) {
                sources.push((name.to_string(), manifest.embedded(job, text)));
            }
        }
    }
    sources
}
