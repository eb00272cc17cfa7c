//! The node's services, in start order: what each runs and with which
//! arguments. Every file they use comes from the state directory or the
//! bundle's runtime; every endpoint uses TLS with the cluster's certificates.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::node::{fmt_host, Layout, NodeConfig};
use crate::supervisor::ServiceSpec;

fn bin(bins: &BTreeMap<String, PathBuf>, name: &str) -> anyhow::Result<PathBuf> {
    bins.get(name)
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("the bundle's runtime has no {name}"))
}

fn p(path: PathBuf) -> String {
    path.display().to_string()
}

fn spec(name: &str, binary: PathBuf, args: Vec<String>) -> ServiceSpec {
    ServiceSpec {
        name: name.into(),
        binary,
        args,
        env: BTreeMap::new(),
    }
}

/// The services of a single control-plane node, in start order.
pub fn services(
    cfg: &NodeConfig,
    layout: &Layout,
    bins: &BTreeMap<String, PathBuf>,
) -> anyhow::Result<Vec<ServiceSpec>> {
    let pki = layout.pki();
    let crt = |n: &str| p(pki.join(format!("{n}.crt")));
    let key = |n: &str| p(pki.join(format!("{n}.key")));
    let kubeconfig = |n: &str| p(pki.join("kubeconfig").join(format!("{n}.conf")));
    let ip = cfg.node_ip;
    let host = fmt_host(ip);
    let ports = &cfg.ports;
    let path_env = {
        let dir = bin(bins, "containerd")?
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        format!(
            "{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            dir.display()
        )
    };

    let registry = spec(
        "registry",
        layout.tele(),
        vec![
            "registry".into(),
            "serve".into(),
            "--layout".into(),
            p(cfg.bundle_dir.join("images")),
            "--listen".into(),
            format!("{host}:{}", ports.registry),
            "--tls-cert".into(),
            crt("registry"),
            "--tls-key".into(),
            key("registry"),
        ],
    );

    let etcd = spec(
        "etcd",
        bin(bins, "etcd")?,
        vec![
            format!("--name={}", cfg.node_name),
            format!("--data-dir={}", p(layout.etcd_data())),
            format!(
                "--listen-client-urls=https://127.0.0.1:{0},https://{host}:{0}",
                ports.etcd_client
            ),
            format!(
                "--advertise-client-urls=https://{host}:{}",
                ports.etcd_client
            ),
            format!("--listen-peer-urls=https://{host}:{}", ports.etcd_peer),
            format!(
                "--initial-advertise-peer-urls=https://{host}:{}",
                ports.etcd_peer
            ),
            format!(
                "--initial-cluster={}=https://{host}:{}",
                cfg.node_name, ports.etcd_peer
            ),
            "--initial-cluster-state=new".into(),
            format!("--cert-file={}", crt("etcd-server")),
            format!("--key-file={}", key("etcd-server")),
            format!("--trusted-ca-file={}", crt("ca")),
            "--client-cert-auth=true".into(),
            format!("--peer-cert-file={}", crt("etcd-server")),
            format!("--peer-key-file={}", key("etcd-server")),
            format!("--peer-trusted-ca-file={}", crt("ca")),
            "--peer-client-cert-auth=true".into(),
        ],
    );

    let mut containerd = spec(
        "containerd",
        bin(bins, "containerd")?,
        vec![
            "--config".into(),
            p(layout.containerd().join("config.toml")),
        ],
    );
    containerd.env.insert("PATH".into(), path_env.clone());

    let apiserver = spec(
        "kube-apiserver",
        bin(bins, "kube-apiserver")?,
        vec![
            format!("--advertise-address={ip}"),
            "--bind-address=0.0.0.0".into(),
            format!("--secure-port={}", ports.api),
            "--insecure-port=0".into(),
            "--allow-privileged=true".into(),
            "--anonymous-auth=false".into(),
            "--authorization-mode=Node,RBAC".into(),
            "--enable-admission-plugins=NodeRestriction".into(),
            format!("--client-ca-file={}", crt("ca")),
            format!("--tls-cert-file={}", crt("apiserver")),
            format!("--tls-private-key-file={}", key("apiserver")),
            format!("--etcd-servers=https://127.0.0.1:{}", ports.etcd_client),
            format!("--etcd-cafile={}", crt("ca")),
            format!("--etcd-certfile={}", crt("apiserver-etcd-client")),
            format!("--etcd-keyfile={}", key("apiserver-etcd-client")),
            format!(
                "--kubelet-client-certificate={}",
                crt("apiserver-kubelet-client")
            ),
            format!("--kubelet-client-key={}", key("apiserver-kubelet-client")),
            format!("--kubelet-certificate-authority={}", crt("ca")),
            "--kubelet-preferred-address-types=InternalIP,Hostname".into(),
            format!("--service-cluster-ip-range={}", cfg.service_cidr),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
            format!("--service-account-key-file={}", p(pki.join("sa.pub"))),
            format!(
                "--service-account-signing-key-file={}",
                p(pki.join("sa.key"))
            ),
            "--profiling=false".into(),
        ],
    );

    let controller_manager = spec(
        "kube-controller-manager",
        bin(bins, "kube-controller-manager")?,
        vec![
            format!("--kubeconfig={}", kubeconfig("controller-manager")),
            format!(
                "--authentication-kubeconfig={}",
                kubeconfig("controller-manager")
            ),
            format!(
                "--authorization-kubeconfig={}",
                kubeconfig("controller-manager")
            ),
            "--bind-address=127.0.0.1".into(),
            "--port=0".into(),
            "--use-service-account-credentials=true".into(),
            format!(
                "--service-account-private-key-file={}",
                p(pki.join("sa.key"))
            ),
            format!("--root-ca-file={}", crt("ca")),
            format!("--cluster-signing-cert-file={}", crt("ca")),
            format!("--cluster-signing-key-file={}", key("ca")),
            format!("--cluster-cidr={}", cfg.pod_cidr),
            format!("--service-cluster-ip-range={}", cfg.service_cidr),
            "--leader-elect=false".into(),
            "--profiling=false".into(),
        ],
    );

    let scheduler = spec(
        "kube-scheduler",
        bin(bins, "kube-scheduler")?,
        vec![
            format!("--kubeconfig={}", kubeconfig("scheduler")),
            format!("--authentication-kubeconfig={}", kubeconfig("scheduler")),
            format!("--authorization-kubeconfig={}", kubeconfig("scheduler")),
            "--bind-address=127.0.0.1".into(),
            "--port=0".into(),
            "--leader-elect=false".into(),
            "--profiling=false".into(),
        ],
    );

    let mut kubelet = spec(
        "kubelet",
        bin(bins, "kubelet")?,
        vec![
            format!(
                "--config={}",
                p(layout.kube_config_dir().join("kubelet.yaml"))
            ),
            format!("--kubeconfig={}", kubeconfig("kubelet")),
            "--container-runtime=remote".into(),
            format!(
                "--container-runtime-endpoint=unix://{}",
                p(layout.containerd_sock())
            ),
            format!("--root-dir={}", p(layout.kubelet_root())),
            format!("--hostname-override={}", cfg.node_name),
            format!("--node-ip={ip}"),
            format!(
                "--pod-infra-container-image={}",
                crate::node::sandbox_image(&cfg.bundle_dir)?
            ),
        ],
    );
    kubelet.env.insert("PATH".into(), path_env);

    let proxy = spec(
        "kube-proxy",
        bin(bins, "kube-proxy")?,
        vec![
            format!("--kubeconfig={}", kubeconfig("kube-proxy")),
            "--proxy-mode=iptables".into(),
            format!("--hostname-override={}", cfg.node_name),
            format!("--cluster-cidr={}", cfg.pod_cidr),
            "--conntrack-max-per-core=0".into(),
            "--metrics-bind-address=127.0.0.1:10249".into(),
            "--healthz-bind-address=127.0.0.1:10256".into(),
        ],
    );

    Ok(vec![
        registry,
        etcd,
        containerd,
        apiserver,
        controller_manager,
        scheduler,
        kubelet,
        proxy,
    ])
}
