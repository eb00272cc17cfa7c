//! kube-apiserver: TLS only, RBAC and node authorization, etcd over mutual
//! TLS (etcd's own CA), Secrets encrypted in etcd, and an audit log.

use super::{Component, NodeContext, Probe};
use crate::service::ServiceSpec;

pub struct ApiServer;

impl Component for ApiServer {
    fn name(&self) -> &'static str {
        "kube-apiserver"
    }
    fn service(&self, n: &NodeContext) -> anyhow::Result<ServiceSpec> {
        let pki = &n.pki;
        Ok(
            n.with_cloud(ServiceSpec::new("kube-apiserver", n.bin("kube-apiserver")?))
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
                .path_flag("etcd-cafile", &pki.etcd_ca_cert())
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
                .flag("profiling", false)
                // Secrets are encrypted in etcd with the key made at install.
                .path_flag("encryption-provider-config", &pki.encryption_config())
                // Who did what, as metadata (never a request's body, which may
                // hold a Secret), rotated by size.
                .path_flag("audit-policy-file", &audit_policy_file(n))
                .path_flag("audit-log-path", &audit_dir(n).join("audit.log"))
                .flag("audit-log-maxsize", AUDIT_LOG_MAX_MB)
                .flag("audit-log-maxbackup", AUDIT_LOG_BACKUPS)
                .flag("audit-log-maxage", 30)
                .flag("audit-log-compress", true),
        )
    }
    fn write_files(&self, n: &NodeContext) -> anyhow::Result<()> {
        crate::durable::write_if_changed(&audit_policy_file(n), AUDIT_POLICY.as_bytes(), 0o644)?;
        // The API server writes its audit files readable by all: the
        // directory keeps them root's.
        std::fs::create_dir_all(audit_dir(n))?;
        crate::durable::set_mode(&audit_dir(n), 0o700)?;
        n.write_cloud_config()
    }
    fn credentials(&self, n: &NodeContext) -> Vec<std::path::PathBuf> {
        vec![
            n.pki.ca_cert(),
            n.pki.etcd_ca_cert(),
            n.pki.cert("apiserver"),
            n.pki.cert("apiserver-etcd-client"),
            n.pki.cert("apiserver-kubelet-client"),
        ]
    }
    fn probe(&self, n: &NodeContext) -> Probe {
        Probe::Tcp((n.cfg.node_ip, n.cfg.ports.api).into())
    }
}

/// Size (MB) at which the audit log is rotated, and how many rotated files are kept.
const AUDIT_LOG_MAX_MB: u32 = 100;
const AUDIT_LOG_BACKUPS: u32 = 5;

/// What the audit log records: every request as metadata (who, what, when,
/// the answer's code) once it is answered; nothing for health probes and
/// events, which would drown the rest.
const AUDIT_POLICY: &str = r#"# Written by tele: the API server's audit policy.
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: None
    nonResourceURLs: ["/healthz*", "/livez*", "/readyz*", "/version"]
  - level: None
    resources:
      - group: ""
        resources: ["events"]
  - level: Metadata
"#;

/// Where the audit log and its rotated files are (0700).
pub fn audit_dir(n: &NodeContext) -> std::path::PathBuf {
    n.state.logs_dir().join("audit")
}

fn audit_policy_file(n: &NodeContext) -> std::path::PathBuf {
    n.state.kube_config_dir().join("audit-policy.yaml")
}
