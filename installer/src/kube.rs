//! Talking to the cluster with the runtime's kubectl and the admin
//! kubeconfig: waiting for the API and the node, applying the app's resources
//! (server-side apply; namespaces and CRDs first), waiting for workloads, and
//! running hook Jobs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A tool's stdout when it succeeded, else an error naming the command
/// (`tool args...`) with its stderr.
pub fn stdout_or_stderr(
    tool: &str,
    args: &[&str],
    out: std::process::Output,
) -> anyhow::Result<String> {
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        anyhow::bail!(
            "{tool} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )
    }
}

/// One object kubectl applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// Kind, e.g. `Deployment`.
    pub kind: String,
    /// Name.
    pub name: String,
    /// Namespace (empty for cluster-scoped objects).
    pub namespace: String,
}

/// kubectl with the cluster's admin kubeconfig.
pub struct Kubectl {
    bin: PathBuf,
    kubeconfig: PathBuf,
}

impl Kubectl {
    /// A kubectl at `bin` using `kubeconfig`.
    pub fn new(bin: PathBuf, kubeconfig: PathBuf) -> Kubectl {
        Kubectl { bin, kubeconfig }
    }

    /// Runs kubectl; its stdout, or an error with its stderr.
    pub fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = Command::new(&self.bin)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .output()?;
        stdout_or_stderr("kubectl", args, out)
    }

    /// True when the API server answers /readyz.
    pub fn api_ready(&self) -> bool {
        self.run(&["get", "--raw", "/readyz"]).is_ok()
    }

    /// A field of Node `node`, by a jsonpath expression (`{.metadata.labels}`), trimmed.
    pub fn node_field(&self, node: &str, jsonpath: &str) -> anyhow::Result<String> {
        let path = format!("jsonpath={jsonpath}");
        Ok(self
            .run(&["get", "node", node, "-o", &path])?
            .trim()
            .to_string())
    }

    /// True when Node `node` reports Ready.
    pub fn node_ready(&self, node: &str) -> bool {
        self.node_field(node, r#"{.status.conditions[?(@.type=="Ready")].status}"#)
            .is_ok_and(|s| s == "True")
    }

    /// Server-side applies a file of resources and returns what was applied.
    pub fn apply(&self, file: &Path) -> anyhow::Result<Vec<Applied>> {
        let f = file.display().to_string();
        match self.run(&[
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=tele",
            "-o",
            "json",
            "-f",
            &f,
        ]) {
            Ok(out) => Ok(parse_applied(&out)),
            // Kubernetes 1.20's server-side apply refuses list entries that omit a key
            // field with a default (a Service port without `protocol`), which plain
            // manifests often do; client-side apply accepts them.
            Err(e) if e.to_string().contains("omits key field") => {
                let out = self.run(&["apply", "-o", "json", "-f", &f])?;
                Ok(parse_applied(&out))
            }
            Err(e) => Err(e),
        }
    }

    /// Waits for a workload to be ready; on timeout the error says what is
    /// not ready and why (pods and their events).
    pub fn wait_ready(&self, obj: &Applied, timeout: Duration) -> anyhow::Result<()> {
        let target = format!("{}/{}", obj.kind.to_lowercase(), obj.name);
        let secs = format!("--timeout={}s", timeout.as_secs().max(1));
        let ns = ["-n", obj.namespace.as_str()];
        let result = match obj.kind.as_str() {
            "Deployment" | "StatefulSet" | "DaemonSet" => {
                self.run(&[&["rollout", "status", &target, &secs], &ns[..]].concat())
            }
            "Job" => self.run(
                &[
                    &["wait", "--for=condition=complete", &target, &secs],
                    &ns[..],
                ]
                .concat(),
            ),
            _ => return Ok(()),
        };
        result.map(|_| ()).map_err(|e| {
            anyhow::anyhow!(
                "{} {}/{} is not ready: {e}\n{}",
                obj.kind,
                obj.namespace,
                obj.name,
                self.diagnose(&obj.namespace)
            )
        })
    }

    /// Pods and recent events of a namespace, for error reports.
    pub fn diagnose(&self, namespace: &str) -> String {
        let pods = self
            .run(&["get", "pods", "-n", namespace, "-o", "wide"])
            .unwrap_or_else(|e| e.to_string());
        let events = self
            .run(&["get", "events", "-n", namespace, "--sort-by=.lastTimestamp"])
            .map(|e| {
                e.lines()
                    .rev()
                    .take(15)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_else(|e| e.to_string());
        format!("pods in {namespace}:\n{pods}\nrecent events:\n{events}")
    }

    /// Runs a hook Job to completion (replacing an earlier run of it); on
    /// failure the error carries the Job's logs.
    pub fn run_hook(&self, hook: &str, job_file: &Path, timeout: Duration) -> anyhow::Result<()> {
        // Delete a previous run first so that a resumed install runs the hook afresh.
        let _ = self.run(&[
            "delete",
            "--ignore-not-found",
            "--wait=true",
            "-f",
            &job_file.display().to_string(),
        ]);
        let applied = self.apply(job_file)?;
        let job = applied
            .iter()
            .find(|a| a.kind == "Job")
            .ok_or_else(|| anyhow::anyhow!("the {hook} hook holds no Job"))?;
        let ns = if job.namespace.is_empty() {
            "default"
        } else {
            job.namespace.as_str()
        };
        let target = format!("job/{}", job.name);
        let deadline = Instant::now() + timeout;
        loop {
            let status = self.run(&[
                "get",
                &target,
                "-n",
                ns,
                "-o",
                "jsonpath={.status.succeeded}/{.status.failed}",
            ])?;
            let (succeeded, failed) = status.trim().split_once('/').unwrap_or(("", ""));
            if succeeded.parse::<u32>().unwrap_or(0) > 0 {
                return Ok(());
            }
            let backoff_limit: u32 = self
                .run(&[
                    "get",
                    &target,
                    "-n",
                    ns,
                    "-o",
                    "jsonpath={.spec.backoffLimit}",
                ])
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(6);
            let failed = failed.parse::<u32>().unwrap_or(0);
            if failed > backoff_limit || Instant::now() > deadline {
                let logs = self
                    .run(&["logs", &target, "-n", ns, "--all-containers", "--tail=50"])
                    .unwrap_or_else(|e| e.to_string());
                let why = if failed > backoff_limit {
                    "failed"
                } else {
                    "did not finish in time"
                };
                anyhow::bail!(
                    "the {hook} hook (job {ns}/{}) {why}.\nits logs:\n{logs}\n{}",
                    job.name,
                    self.diagnose(ns)
                );
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}

/// Polls `check` every half second until it is true or `timeout` passes.
pub fn poll(
    timeout: Duration,
    what: &str,
    mut check: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if check()? {
            return Ok(());
        }
        crate::interrupt::check()?;
        if Instant::now() > deadline {
            anyhow::bail!("timed out after {}s waiting for {what}", timeout.as_secs());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The objects of `kubectl ... -o json` output (one object or a List).
pub fn parse_applied(json: &str) -> Vec<Applied> {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(json) else {
        return vec![];
    };
    let items: Vec<serde_json::Value> = match v["items"].as_array() {
        Some(items) if v["kind"] == "List" => items.clone(),
        _ => vec![v],
    };
    items
        .iter()
        .map(|i| Applied {
            kind: i["kind"].as_str().unwrap_or_default().to_string(),
            name: i["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            namespace: i["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        })
        .filter(|a| !a.kind.is_empty())
        .collect()
}

/// Splits a YAML stream into documents and sorts them into two groups:
/// namespaces and CRDs (applied first), then everything else.
pub fn split_by_priority(text: &str) -> (Vec<String>, Vec<String>) {
    let mut first = Vec::new();
    let mut rest = Vec::new();
    for (kind, d) in documents(text) {
        match kind.as_str() {
            "Namespace" | "CustomResourceDefinition" => first.push(d),
            _ => rest.push(d),
        }
    }
    (first, rest)
}

/// The Kubernetes objects of a YAML stream (or one JSON document), each with
/// its top-level `kind`; documents without one (comments only) are left out.
pub fn documents(text: &str) -> Vec<(String, String)> {
    let trimmed = text.trim_start();
    let docs: Vec<String> = if trimmed.starts_with('{') || trimmed.starts_with('[') {
        vec![text.to_string()]
    } else {
        let mut docs = vec![String::new()];
        for line in text.lines() {
            if line.starts_with("---") {
                docs.push(String::new());
            } else {
                let d = docs.last_mut().expect("one document");
                d.push_str(line);
                d.push('\n');
            }
        }
        docs
    };
    docs.into_iter()
        .filter_map(|d| {
            let kind = d
                .lines()
                .find_map(|l| l.strip_prefix("kind:"))
                .map(|k| k.trim().trim_matches('"').to_string())?;
            Some((kind, d))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_and_crds_come_first() {
        let (first, rest) = split_by_priority(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n---\n# only a comment\n",
        );
        assert_eq!(first.len(), 1);
        assert!(first[0].contains("Namespace"));
        assert_eq!(rest.len(), 1);
    }

    #[test]
    fn applied_objects_are_read_from_lists_and_single_objects() {
        let list = r#"{"kind":"List","items":[{"kind":"Deployment","metadata":{"name":"web","namespace":"shop"}},{"kind":"Namespace","metadata":{"name":"shop"}}]}"#;
        let a = parse_applied(list);
        assert_eq!(a.len(), 2);
        assert_eq!(
            a[0],
            Applied {
                kind: "Deployment".into(),
                name: "web".into(),
                namespace: "shop".into()
            }
        );
        assert_eq!(
            parse_applied(r#"{"kind":"Job","metadata":{"name":"j"}}"#)[0].kind,
            "Job"
        );
    }
}
