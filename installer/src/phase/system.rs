//! `/system`: the node's role labels and pod subnet annotation, the default
//! StorageClass (see [`crate::local_volumes`]), the approval of the
//! kubelets' own client certificates ([`crate::kubelet_client`]), and the
//! default service account that pods need before they can be created.

use std::time::Duration;

use super::{Phase, PhaseContext};

/// Labels the node, waits for the default service account.
pub struct System {
    /// The node.
    pub node: String,
}

/// The labels of a master's role.
pub const ROLE_LABELS: [&str; 2] = [
    "node-role.kubernetes.io/control-plane",
    "node-role.kubernetes.io/master",
];

impl Phase for System {
    fn id(&self) -> String {
        "/system".into()
    }
    fn description(&self) -> String {
        "cluster system settings".into()
    }
    fn requires(&self) -> Vec<String> {
        vec!["/wait".into()]
    }
    fn execute(&self, ctx: &PhaseContext) -> anyhow::Result<()> {
        let k = ctx.kubectl()?;
        let node = format!("node/{}", self.node);
        let mut args = vec!["label", "--overwrite", node.as_str()];
        let labels: Vec<String> = ROLE_LABELS.iter().map(|l| format!("{l}=")).collect();
        args.extend(labels.iter().map(String::as_str));
        k.run(&args)?;
        // Other nodes route this node's pods through it.
        let subnet = format!(
            "{}={}",
            crate::pod_network::SUBNET_ANNOTATION,
            ctx.cfg.node_pod_subnet
        );
        k.run(&["annotate", "--overwrite", &node, &subnet])?;
        // The default StorageClass and its provisioner's permissions.
        let volumes = ctx.state.root().join("volumes.yaml");
        crate::durable::write_durably(
            &volumes,
            crate::local_volumes::cluster_resources().as_bytes(),
            0o644,
        )?;
        k.apply(&volumes)?;
        // The kubelets may have their own client certificates approved.
        let rotation = ctx.state.root().join("kubelet-client-rotation.yaml");
        crate::durable::write_durably(
            &rotation,
            crate::kubelet_client::AUTO_APPROVE.as_bytes(),
            0o644,
        )?;
        k.apply(&rotation)?;
        // On AWS, EBS volumes beside the local ones.
        if on_aws(ctx) {
            let ebs = ctx.state.root().join("aws-ebs.yaml");
            crate::durable::write_durably(
                &ebs,
                crate::cloud::aws::EBS_STORAGE_CLASS.as_bytes(),
                0o644,
            )?;
            k.apply(&ebs)?;
        }
        crate::kube::poll(
            Duration::from_secs(120),
            "the default service account",
            || {
                Ok(
                    k.run(&["get", "serviceaccount", "default", "-n", "default"])
                        .is_ok(),
                )
            },
        )
    }
    fn check(&self, ctx: &PhaseContext) -> anyhow::Result<bool> {
        let k = ctx.kubectl()?;
        let labels = k
            .node_field(&self.node, "{.metadata.labels}")
            .unwrap_or_default();
        let subnet = k
            .node_field(&self.node, r"{.metadata.annotations.tele\.dev/pod-subnet}")
            .unwrap_or_default();
        Ok(ROLE_LABELS.iter().all(|l| labels.contains(l))
            && subnet == ctx.cfg.node_pod_subnet
            && k.run(&["get", "storageclass", crate::local_volumes::STORAGE_CLASS])
                .is_ok()
            && k.run(&[
                "get",
                "clusterrolebinding",
                crate::kubelet_client::AUTO_APPROVE_NAME,
            ])
            .is_ok()
            && k.run(&["get", "serviceaccount", "default", "-n", "default"])
                .is_ok()
            && (!on_aws(ctx) || k.run(&["get", "storageclass", "aws-ebs"]).is_ok()))
    }
}

/// True when the node runs on AWS with its provider.
fn on_aws(ctx: &PhaseContext) -> bool {
    ctx.cfg.cloud.as_ref().is_some_and(|c| c.provider == "aws")
}
