//! kube-controller-manager: approves the kubelets' requests for their own
//! client certificates and signs them with the cluster CA, for as long as
//! tele's own certificates last, and runs the controllers with
//! per-controller service accounts.

use super::{Component, NodeContext, Probe};
use crate::service::ServiceSpec;

pub struct ControllerManager;

impl Component for ControllerManager {
    fn name(&self) -> &'static str {
        "kube-controller-manager"
    }
    fn write_files(&self, n: &NodeContext) -> anyhow::Result<()> {
        n.write_cloud_config()
    }
    fn service(&self, n: &NodeContext) -> anyhow::Result<ServiceSpec> {
        let pki = &n.pki;
        let kc = pki.kubeconfig("controller-manager");
        let spec = n.with_cloud(ServiceSpec::new(
            "kube-controller-manager",
            n.bin("kube-controller-manager")?,
        ));
        let spec = match &n.cfg.cloud_settings {
            // The cloud's load balancers are named and tagged for the
            // cluster; tele's own pod network routes, not the cloud's
            // route tables.
            // Masters run workloads too: they stay behind the cloud's load
            // balancers (Kubernetes 1.20 leaves nodes with the master role
            // label out unless told otherwise).
            Some(s) => spec
                .flag("cluster-name", &s.cluster_id)
                .flag("configure-cloud-routes", false)
                .flag("feature-gates", "LegacyNodeRoleBehavior=false"),
            None => spec,
        };
        Ok(spec
            .path_flag("kubeconfig", &kc)
            .path_flag("authentication-kubeconfig", &kc)
            .path_flag("authorization-kubeconfig", &kc)
            .flag("bind-address", "127.0.0.1")
            .flag("port", 0)
            .flag("use-service-account-credentials", true)
            .path_flag("service-account-private-key-file", &pki.sa_key())
            .path_flag("root-ca-file", &pki.ca_cert())
            .path_flag("cluster-signing-cert-file", &pki.ca_cert())
            .path_flag("cluster-signing-key-file", &pki.key("ca"))
            .flag(
                "cluster-signing-duration",
                format!("{}s", n.cfg.cert_validity_secs),
            )
            .flag("cluster-cidr", &n.cfg.pod_cidr)
            .flag("service-cluster-ip-range", &n.cfg.service_cidr)
            .flag("leader-elect", true)
            .flag("profiling", false))
    }
    fn credentials(&self, n: &NodeContext) -> Vec<std::path::PathBuf> {
        vec![n.pki.ca_cert(), n.pki.kubeconfig("controller-manager")]
    }
    fn probe(&self, _n: &NodeContext) -> Probe {
        Probe::Tcp(([127, 0, 0, 1], 10257).into())
    }
}
