//! kube-apiserver: TLS only, RBAC and node authorization, etcd over mutual TLS.

use super::{Component, NodeContext, Probe};
use crate::service::ServiceSpec;

pub struct ApiServer;

impl Component for ApiServer {
    fn name(&self) -> &'static str {
        "kube-apiserver"
    }
    fn service(&self, n: &NodeContext) -> anyhow::Result<ServiceSpec> {
        let pki = &n.pki;
        Ok(ServiceSpec::new("kube-apiserver", n.bin("kube-apiserver")?)
            .flag("advertise-address", n.cfg.node_ip)
            .flag("bind-address", "0.0.0.0")
            .flag("secure-port", n.cfg.ports.api)
            .flag("insecure-port", 0)
            .flag("allow-privileged", true)
            .flag("anonymous-auth", false)
            .flag("authorization-mode", "Node,RBAC")
            .flag("enable-admission-plugins", "NodeRestriction")
            .path_flag("client-ca-file", &pki.ca_cert())
            .path_flag("tls-cert-file", &pki.cert("apiserver"))
            .path_flag("tls-private-key-file", &pki.key("apiserver"))
            .flag(
                "etcd-servers",
                format!("https://127.0.0.1:{}", n.cfg.ports.etcd_client),
            )
            .path_flag("etcd-cafile", &pki.ca_cert())
            .path_flag("etcd-certfile", &pki.cert("apiserver-etcd-client"))
            .path_flag("etcd-keyfile", &pki.key("apiserver-etcd-client"))
            .path_flag(
                "kubelet-client-certificate",
                &pki.cert("apiserver-kubelet-client"),
            )
            .path_flag("kubelet-client-key", &pki.key("apiserver-kubelet-client"))
            .path_flag("kubelet-certificate-authority", &pki.ca_cert())
            .flag("kubelet-preferred-address-types", "InternalIP,Hostname")
            .flag("service-cluster-ip-range", &n.cfg.service_cidr)
            .flag(
                "service-account-issuer",
                "https://kubernetes.default.svc.cluster.local",
            )
            .path_flag("service-account-key-file", &pki.sa_pub())
            .path_flag("service-account-signing-key-file", &pki.sa_key())
            .flag("profiling", false))
    }
    fn probe(&self, n: &NodeContext) -> Probe {
        Probe::Tcp((n.cfg.node_ip, n.cfg.ports.api).into())
    }
}
