//! The node's volumes (`tele local-volumes`): the provisioner of the
//! cluster's default StorageClass [`STORAGE_CLASS`]
//! (`volumeBindingMode: WaitForFirstConsumer`). A claim of that class waits
//! until its pod is scheduled; the scheduler names the node
//! (`volume.kubernetes.io/selected-node`), and that node's provisioner makes
//! a directory `pvc-<uid>` under its volumes directory
//! (`STATE_DIR/volumes`) and a `local` PersistentVolume for it, bound to the
//! claim and tied to the node by node affinity. A claim that asks for more
//! than the volumes directory's filesystem has free gets an event that says
//! so. When a claim is deleted, its volume is Released: with
//! `reclaimPolicy: Delete` the directory and the volume are removed; with
//! `Retain` both stay.
//!
//! Claims and volumes are looked at every [`INTERVAL`]: a change is acted
//! on within that, and nothing is missed across an API server restart.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ::kube::api::{Api, DeleteParams, ListParams, PostParams};
use ::kube::runtime::events::{Event, EventType, Recorder, Reporter};
use ::kube::{Client, Resource};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;

/// The provisioner's name, on the StorageClass and on each volume.
pub const PROVISIONER: &str = "tele.dev/local-path";
/// The default StorageClass.
pub const STORAGE_CLASS: &str = "tele-local";
/// How often claims and volumes are looked at.
pub const INTERVAL: Duration = Duration::from_secs(3);
/// The label naming the node a volume lives on.
const NODE_LABEL: &str = "tele.dev/node";
const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";

/// The StorageClass and the provisioner's permissions, applied when the
/// cluster is made.
pub fn cluster_resources() -> String {
    format!(
        "apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: {STORAGE_CLASS}
  annotations: {{storageclass.kubernetes.io/is-default-class: \"true\"}}
provisioner: {PROVISIONER}
volumeBindingMode: WaitForFirstConsumer
reclaimPolicy: Delete
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: \"{USER}\"}}
rules:
  - apiGroups: [\"\"]
    resources: [persistentvolumes]
    verbs: [get, list, watch, create, delete]
  - apiGroups: [\"\"]
    resources: [persistentvolumeclaims]
    verbs: [get, list, watch]
  - apiGroups: [\"\", events.k8s.io]
    resources: [events]
    verbs: [create, patch]
  - apiGroups: [storage.k8s.io]
    resources: [storageclasses]
    verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: \"{USER}\"}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: \"{USER}\"}}
subjects: [{{apiGroup: rbac.authorization.k8s.io, kind: User, name: \"{USER}\"}}]
"
    )
}

/// The user the provisioners' client certificate names.
pub const USER: &str = "tele:volume-provisioner";

/// Bytes in a Kubernetes quantity (`16Mi`, `1G`, `1500`), None when it is
/// not one or too large.
pub fn parse_quantity(q: &str) -> Option<u64> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    let factor: u64 = match suffix {
        "" => 1,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "P" => 1_000_000_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "Pi" => 1 << 50,
        _ => return None,
    };
    if let Ok(n) = number.parse::<u64>() {
        return n.checked_mul(factor);
    }
    let f: f64 = number.parse().ok()?;
    let bytes = (f * factor as f64).ceil();
    (bytes.is_finite() && bytes >= 0.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
}

/// `bytes` for people: `16 MiB`, `1.5 GiB`.
pub fn human(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < units.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 || value.fract() == 0.0 {
        format!("{value:.0} {}", units[unit])
    } else {
        format!("{value:.1} {}", units[unit])
    }
}

/// Bytes free for unprivileged use on the filesystem of `dir`.
fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    let s = nix::sys::statvfs::statvfs(dir).map_err(std::io::Error::from)?;
    Ok(s.blocks_available().saturating_mul(s.fragment_size()))
}

/// The `local` PersistentVolume for `claim` at `path` on `node`.
fn volume_for(
    claim: &PersistentVolumeClaim,
    node: &str,
    path: &Path,
    bytes: u64,
    reclaim: &str,
) -> anyhow::Result<PersistentVolume> {
    let meta = &claim.metadata;
    let spec = claim.spec.clone().unwrap_or_default();
    Ok(serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": format!("pvc-{}", meta.uid.clone().unwrap_or_default()),
            "labels": { NODE_LABEL: node },
            "annotations": { PROVISIONED_BY: PROVISIONER },
        },
        "spec": {
            "capacity": { "storage": bytes.to_string() },
            "accessModes": spec.access_modes.unwrap_or_else(|| vec!["ReadWriteOnce".into()]),
            "persistentVolumeReclaimPolicy": reclaim,
            "storageClassName": spec.storage_class_name,
            "volumeMode": spec.volume_mode.unwrap_or_else(|| "Filesystem".into()),
            "claimRef": {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "namespace": meta.namespace,
                "name": meta.name,
                "uid": meta.uid,
            },
            "local": { "path": path },
            "nodeAffinity": { "required": { "nodeSelectorTerms": [ { "matchExpressions": [
                { "key": "kubernetes.io/hostname", "operator": "In", "values": [node] }
            ] } ] } },
        },
    }))?)
}

/// The provisioner of one node.
struct Provisioner {
    client: Client,
    node: String,
    dir: PathBuf,
    recorder: Recorder,
    /// Claims already told they do not fit (one event each).
    told: HashSet<String>,
}

#[allow(clippy::print_stderr)]
fn log(line: &str) {
    eprintln!("local-volumes: {line}");
}

impl Provisioner {
    /// The reclaim policy of `class` when its provisioner is this one.
    async fn our_class(&self, class: &str) -> Option<String> {
        let sc = Api::<StorageClass>::all(self.client.clone())
            .get_opt(class)
            .await
            .ok()
            .flatten()?;
        (sc.provisioner == PROVISIONER)
            .then(|| sc.reclaim_policy.unwrap_or_else(|| "Delete".into()))
    }

    async fn provision(&mut self, claim: &PersistentVolumeClaim) -> anyhow::Result<()> {
        let meta = &claim.metadata;
        let selected = meta.annotations.as_ref().and_then(|a| a.get(SELECTED_NODE));
        let spec = claim.spec.as_ref();
        let pending = claim.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Pending");
        if selected != Some(&self.node)
            || !pending
            || spec.and_then(|s| s.volume_name.as_ref()).is_some()
        {
            return Ok(());
        }
        let Some(class) = spec.and_then(|s| s.storage_class_name.as_deref()) else {
            return Ok(());
        };
        let Some(reclaim) = self.our_class(class).await else {
            return Ok(());
        };
        let uid = meta.uid.clone().unwrap_or_default();
        let volumes = Api::<PersistentVolume>::all(self.client.clone());
        if volumes.get_opt(&format!("pvc-{uid}")).await?.is_some() {
            return Ok(());
        }
        let asked = spec
            .and_then(|s| s.resources.as_ref())
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get("storage"))
            .and_then(|q| parse_quantity(&q.0))
            .unwrap_or(0);
        std::fs::create_dir_all(&self.dir)?;
        let free = free_bytes(&self.dir)?;
        let name = format!(
            "{}/{}",
            meta.namespace.as_deref().unwrap_or(""),
            meta.name.as_deref().unwrap_or("")
        );
        if asked > free {
            if self.told.insert(uid) {
                let note = format!(
                    "the claim asks for {}; node {} has {} free in {}",
                    human(asked),
                    self.node,
                    human(free),
                    self.dir.display()
                );
                log(&format!("{name}: {note}"));
                self.recorder
                    .publish(
                        &Event {
                            type_: EventType::Warning,
                            reason: "ProvisioningFailed".into(),
                            note: Some(note),
                            action: "Provisioning".into(),
                            secondary: None,
                        },
                        &claim.object_ref(&()),
                    )
                    .await?;
            }
            return Ok(());
        }
        let path = self.dir.join(format!("pvc-{uid}"));
        std::fs::create_dir_all(&path)?;
        // Pods run as any user: the volume is theirs to write.
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o777))?;
        let pv = volume_for(claim, &self.node, &path, asked, &reclaim)?;
        volumes.create(&PostParams::default(), &pv).await?;
        log(&format!(
            "{name}: volume pvc-{uid} ({}) at {}",
            human(asked),
            path.display()
        ));
        Ok(())
    }

    async fn reclaim(&self, pv: &PersistentVolume) -> anyhow::Result<()> {
        let meta = &pv.metadata;
        let ours = meta
            .annotations
            .as_ref()
            .and_then(|a| a.get(PROVISIONED_BY))
            .map(String::as_str)
            == Some(PROVISIONER)
            && meta.labels.as_ref().and_then(|l| l.get(NODE_LABEL)) == Some(&self.node);
        let released = pv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Released");
        let delete = pv
            .spec
            .as_ref()
            .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
            == Some("Delete");
        if !(ours && released && delete) {
            return Ok(());
        }
        let name = meta.name.clone().unwrap_or_default();
        // Only a directory of ours, under the volumes directory, is removed.
        if name.starts_with("pvc-") && !name.contains('/') {
            let path = self.dir.join(&name);
            match std::fs::remove_dir_all(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        Api::<PersistentVolume>::all(self.client.clone())
            .delete(&name, &DeleteParams::default())
            .await?;
        log(&format!("{name}: released, its data deleted"));
        Ok(())
    }

    async fn round(&mut self) -> anyhow::Result<()> {
        let claims = Api::<PersistentVolumeClaim>::all(self.client.clone())
            .list(&ListParams::default())
            .await?;
        for claim in &claims.items {
            if let Err(e) = self.provision(claim).await {
                log(&format!(
                    "{}: {e:#}",
                    claim.metadata.name.as_deref().unwrap_or("?")
                ));
            }
        }
        let volumes = Api::<PersistentVolume>::all(self.client.clone())
            .list(&ListParams::default().labels(&format!("{NODE_LABEL}={}", self.node)))
            .await?;
        for pv in &volumes.items {
            if let Err(e) = self.reclaim(pv).await {
                log(&format!(
                    "{}: {e:#}",
                    pv.metadata.name.as_deref().unwrap_or("?")
                ));
            }
        }
        Ok(())
    }
}

/// `tele local-volumes`: the volumes of the node installed in `state_dir`,
/// until SIGTERM or SIGINT.
pub fn run(state_dir: &Path) -> anyhow::Result<()> {
    let state = crate::state_dir::StateDir::new(state_dir);
    let cfg = crate::node::NodeConfig::load(&state)?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let config = ::kube::Config::from_custom_kubeconfig(
            ::kube::config::Kubeconfig::read_from(state.pki().kubeconfig("volumes"))?,
            &::kube::config::KubeConfigOptions::default(),
        )
        .await?;
        let client = Client::try_from(config)?;
        let mut p = Provisioner {
            recorder: Recorder::new(
                client.clone(),
                Reporter {
                    controller: PROVISIONER.into(),
                    instance: Some(cfg.node_name.clone()),
                },
            ),
            client,
            node: cfg.node_name.clone(),
            dir: cfg.volumes_dir(),
            told: HashSet::new(),
        };
        log(&format!(
            "provisioning {STORAGE_CLASS} volumes in {}",
            p.dir.display()
        ));
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut last_error = String::new();
        loop {
            if let Err(e) = p.round().await {
                let text = format!("{e:#}");
                if text != last_error {
                    log(&format!("cannot read claims: {text}"));
                    last_error = text;
                }
            } else {
                last_error.clear();
            }
            tokio::select! {
                _ = term.recv() => break,
                _ = tokio::signal::ctrl_c() => break,
                _ = tokio::time::sleep(INTERVAL) => {}
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_are_read_as_kubernetes_writes_them() {
        assert_eq!(parse_quantity("16Mi"), Some(16 << 20));
        assert_eq!(parse_quantity("1G"), Some(1_000_000_000));
        assert_eq!(parse_quantity("1500"), Some(1500));
        assert_eq!(parse_quantity("1.5Gi"), Some(3 << 29));
        assert_eq!(parse_quantity("1000Ti"), Some(1000 << 40));
        assert_eq!(parse_quantity("20000000Pi"), None);
        assert_eq!(parse_quantity("12 bananas"), None);
        assert_eq!(human(16 << 20), "16 MiB");
        assert_eq!(human(3 << 29), "1.5 GiB");
    }

    #[test]
    fn a_volume_is_bound_to_its_claim_and_tied_to_its_node() {
        let claim: PersistentVolumeClaim = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "data-db-0", "namespace": "shop", "uid": "u-1"},
            "spec": {"storageClassName": STORAGE_CLASS, "accessModes": ["ReadWriteOnce"],
                     "resources": {"requests": {"storage": "16Mi"}}},
        }))
        .unwrap();
        let pv = volume_for(&claim, "n1", Path::new("/v/pvc-u-1"), 16 << 20, "Retain").unwrap();
        let v = serde_json::to_value(&pv).unwrap();
        assert_eq!(v["metadata"]["name"], "pvc-u-1");
        assert_eq!(v["spec"]["claimRef"]["name"], "data-db-0");
        assert_eq!(v["spec"]["claimRef"]["uid"], "u-1");
        assert_eq!(v["spec"]["local"]["path"], "/v/pvc-u-1");
        assert_eq!(v["spec"]["persistentVolumeReclaimPolicy"], "Retain");
        assert_eq!(
            v["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]
                ["values"][0],
            "n1"
        );
    }
}
