//! Cluster DNS on a real cluster: the example bundle installed on a systemd
//! host, a namespace with a ClusterIP Service, a headless Service in front
//! of a StatefulSet, an ExternalName Service, and a client pod. Real lookups
//! from the client pod (busybox `nslookup`, with the pod's own resolv.conf
//! as the kubelet wrote it) for every record kind of the Kubernetes DNS
//! specification, the search path for short names, a name outside the
//! cluster with no upstream resolver, and answers while the API server is
//! stopped. The StatefulSet's pods keep their data on claims of the default
//! StorageClass (directories of the node's volumes directory) across a pod's
//! deletion, in a volumes directory of their own (`--volumes-dir`); a claim
//! larger than the node's free space gets an event that says so; a deleted
//! claim's data is removed, and uninstall removes the node's volumes and
//! nothing else of that directory.

mod support;

use std::time::{Duration, Instant};

use support::example::example_bundle;
use support::systemd_host::{HostOptions, SystemdHost};
use support::*;

const OBJECTS: &str = "apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: shop}
spec:
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec:
      containers:
        - name: web
          image: example.com/hello/web:1.0.0
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: shop}
spec:
  selector: {app: api}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: shop}
spec:
  clusterIP: None
  selector: {app: db}
  ports: [{name: pg, port: 5432}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: shop}
spec:
  serviceName: db
  replicas: 2
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers:
        - name: db
          image: example.com/hello/web:1.0.0
          command: [/bin/httpd, -f, -p, '5432', -h, /www]
          volumeMounts: [{name: data, mountPath: /data}]
  volumeClaimTemplates:
    - metadata: {name: data}
      spec:
        accessModes: [ReadWriteOnce]
        resources: {requests: {storage: 16Mi}}
---
apiVersion: v1
kind: Service
metadata: {name: bank, namespace: shop}
spec:
  type: ExternalName
  externalName: api.bank.example
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: huge, namespace: shop}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1000Ti}}
---
apiVersion: v1
kind: Pod
metadata: {name: hog, namespace: shop}
spec:
  containers:
    - name: hog
      image: example.com/hello/busybox:1.36
      command: [/bin/busybox, sleep, '100000']
      volumeMounts: [{name: v, mountPath: /v}]
  volumes: [{name: v, persistentVolumeClaim: {claimName: huge}}]
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: shop}
spec:
  containers:
    - name: client
      image: example.com/hello/busybox:1.36
      command: [/bin/busybox, sleep, '100000']
";

/// The host pid of the main process of pod `pod`'s first container.
fn pid_of(host: &SystemdHost, pod: &str) -> String {
    let pid = host
        .ok_sh(&host.pod_pid_command("shop", pod))
        .trim()
        .to_string();
    assert!(!pid.is_empty(), "no task for pod {pod}");
    pid
}

/// A script that runs `busybox ARGS` in every namespace of the container
/// whose main process is `pid`: its files, its resolv.conf, its network.
fn in_pod(pid: &str, args: &str) -> String {
    format!("nsenter -t {pid} -a /bin/busybox {args}")
}

#[test]
fn pods_resolve_cluster_names_without_the_api_server_and_keep_their_data_on_claims() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = example_bundle(dir.path());
    let mut host = SystemdHost::boot(
        "tele-dns1",
        HostOptions::new("10.213.0.71/24").bind_ro(&bundle, "/opt/hello"),
    );
    host.wait_running(Duration::from_secs(120));
    // The volumes on a disk of their own, beside someone else's files.
    host.ok_sh("mkdir -p /srv/volumes && echo theirs > /srv/volumes/keep.txt");
    let o = host.exec(&[
        "/opt/hello/install",
        "--autofix",
        "--timeout",
        "300",
        "--volumes-dir",
        "/srv/volumes",
    ]);
    assert!(
        o.status.success(),
        "install:\n{}\n{}\nlogs:\n{}",
        stdout(&o),
        stderr(&o),
        host.sh("tail -n 20 /var/lib/tele/logs/cluster-dns.log")
            .stdout
            .escape_ascii()
    );
    assert_eq!(
        host.ok_sh("systemctl is-active tele-cluster-dns.service")
            .trim(),
        "active"
    );
    host.ok_sh(&format!("cat <<'EOF' | kubectl apply -f -\n{OBJECTS}EOF"));
    host.eventually(
        "kubectl -n shop get pods --field-selector status.phase=Running --no-headers | wc -l",
        "4",
        Duration::from_secs(180),
    );
    let field = |what: &str| {
        host.ok_sh(&format!("kubectl -n shop get {what}"))
            .trim()
            .to_string()
    };
    let api_ip = field("service api -o jsonpath={.spec.clusterIP}");
    let db0 = field("pod db-0 -o jsonpath={.status.podIP}");
    let db1 = field("pod db-1 -o jsonpath={.status.podIP}");
    let pid = pid_of(&host, "client");
    // The kubelet gave the pod the node's DNS and the cluster's search path.
    let resolv = host.ok_sh(&in_pod(&pid, "cat /etc/resolv.conf"));
    assert!(resolv.contains("nameserver 10.213.0.71"), "{resolv}");
    assert!(
        resolv.contains("search shop.svc.cluster.local svc.cluster.local cluster.local"),
        "{resolv}"
    );

    // Each lookup, and what its answer must hold.
    let api_ptr = api_ip.split('.').rev().collect::<Vec<_>>().join(".");
    let table: Vec<(String, Vec<String>)> = vec![
        ("api.shop.svc.cluster.local".into(), vec![api_ip.clone()]),
        // The search path (busybox applies it to names without a dot).
        ("api".into(), vec![api_ip.clone()]),
        (
            "-type=srv _http._tcp.api.shop.svc.cluster.local".into(),
            vec!["80 api.shop.svc.cluster.local".into()],
        ),
        (
            "db.shop.svc.cluster.local".into(),
            vec![db0.clone(), db1.clone()],
        ),
        ("db".into(), vec![db0.clone(), db1.clone()]),
        ("db-0.db.shop.svc.cluster.local".into(), vec![db0.clone()]),
        (
            "-type=srv _pg._tcp.db.shop.svc.cluster.local".into(),
            vec![
                "5432 db-0.db.shop.svc.cluster.local".into(),
                "5432 db-1.db.shop.svc.cluster.local".into(),
            ],
        ),
        (
            "-type=cname bank.shop.svc.cluster.local".into(),
            vec!["api.bank.example".into()],
        ),
        (
            format!("-type=ptr {api_ptr}.in-addr.arpa"),
            vec!["api.shop.svc.cluster.local".into()],
        ),
        (
            format!(
                "-type=ptr {}.in-addr.arpa",
                db0.split('.').rev().collect::<Vec<_>>().join(".")
            ),
            vec!["db-0.db.shop.svc.cluster.local".into()],
        ),
        (
            format!("{}.shop.pod.cluster.local", db0.replace('.', "-")),
            vec![db0.clone()],
        ),
        (
            "-type=txt dns-version.cluster.local".into(),
            vec!["1.1.0".into()],
        ),
    ];
    let lookup_all = || {
        for (query, want) in &table {
            // busybox tries every search domain, and fails when one of
            // them gives NXDOMAIN: what counts is the answer it prints.
            let out = host.eventually(
                &format!("{}; true", in_pod(&pid, &format!("nslookup {query}"))),
                &want[0],
                Duration::from_secs(30),
            );
            for w in want {
                assert!(
                    out.contains(w.as_str()),
                    "nslookup {query}: no {w} in\n{out}"
                );
            }
        }
    };
    lookup_all();
    // The short names a vendor's app uses, through a libc resolver (glibc's
    // getent) with the pod's resolv.conf (ndots:5: the search path first).
    host.ok_sh(&format!(
        "{} > /run/pod-resolv.conf",
        in_pod(&pid, "cat /etc/resolv.conf")
    ));
    let kubernetes = field("service -n default kubernetes -o jsonpath={.spec.clusterIP}");
    for (name, want) in [
        ("kubernetes.default", &kubernetes),
        ("api", &api_ip),
        ("api.shop", &api_ip),
        ("db.shop", &db0),
        ("db-1.db", &db1),
        ("db-1.db.shop", &db1),
    ] {
        let out = host.ok_sh(&format!(
            "nsenter -t {pid} -n unshare -m sh -c 'mount --bind /run/pod-resolv.conf /etc/resolv.conf && getent ahostsv4 {name}'"
        ));
        assert!(out.contains(want.as_str()), "{name}: {out}");
    }
    // Names that do not exist are refused at once.
    let o = host.sh(&in_pod(&pid, "nslookup nothing.shop.svc.cluster.local"));
    assert!(!o.status.success());
    assert!(stdout(&o).contains("NXDOMAIN"), "{}", stdout(&o));
    // A name outside the cluster, on a host with no resolver that answers:
    // a failure well before the 5 s a client waits for a silent server.
    let began = Instant::now();
    let o = host.sh(&in_pod(&pid, "nslookup outside.example.com."));
    let took = began.elapsed();
    assert!(!o.status.success(), "{}", stdout(&o));
    assert!(took < Duration::from_secs(4), "{took:?}\n{}", stdout(&o));

    // The API server stopped: the names are still answered, from what the
    // node's DNS last knew.
    host.ok_sh("systemctl stop tele-kube-apiserver.service");
    host.eventually(
        "kubectl get nodes >/dev/null 2>&1 && echo up || echo down",
        "down",
        Duration::from_secs(30),
    );
    lookup_all();
    host.ok_sh("systemctl start tele-kube-apiserver.service");
    // And it follows changes again once the API server is back.
    host.eventually(
        "kubectl -n shop create service clusterip later --tcp=81:81 2>&1",
        "created",
        Duration::from_secs(120),
    );
    let later = field("service later -o jsonpath={.spec.clusterIP}");
    host.eventually(
        &in_pod(&pid, "nslookup later.shop.svc.cluster.local"),
        &later,
        Duration::from_secs(60),
    );

    // Volumes: each database pod has its claim, a directory of the node's
    // volumes directory, which outlives the pod.
    let pv = field("pvc data-db-0 -o jsonpath={.spec.volumeName}");
    let path = host
        .ok_sh(&format!(
            "kubectl get pv {pv} -o jsonpath={{.spec.local.path}}"
        ))
        .trim()
        .to_string();
    assert_eq!(path, format!("/srv/volumes/{pv}"));
    host.ok_sh(&in_pod(
        &pid_of(&host, "db-0"),
        "sh -c 'echo kept > /data/proof'",
    ));
    assert_eq!(host.ok_sh(&format!("cat {path}/proof")).trim(), "kept");
    host.ok_sh("kubectl -n shop delete pod db-0 --wait=true");
    host.eventually(
        "kubectl -n shop get pod db-0 -o jsonpath={.status.phase}",
        "Running",
        Duration::from_secs(120),
    );
    assert_eq!(
        host.ok_sh(&in_pod(&pid_of(&host, "db-0"), "cat /data/proof"))
            .trim(),
        "kept"
    );
    // A claim larger than the node's free space is told so, on the claim.
    host.eventually(
        "kubectl -n shop get events --field-selector involvedObject.name=huge -o jsonpath={.items[*].message}",
        "the claim asks for 1000 TiB; node tele-dns1 has",
        Duration::from_secs(60),
    );
    assert_eq!(field("pvc huge -o jsonpath={.status.phase}"), "Pending");
    // A deleted claim's volume is released, and with reclaimPolicy Delete
    // its data goes with it.
    let pv1 = field("pvc data-db-1 -o jsonpath={.spec.volumeName}");
    host.ok_sh("kubectl -n shop scale statefulset db --replicas=1");
    host.eventually(
        "kubectl -n shop get pod db-1 2>&1 || true",
        "NotFound",
        Duration::from_secs(120),
    );
    host.ok_sh("kubectl -n shop delete pvc data-db-1");
    host.eventually(
        &format!("kubectl get pv {pv1} 2>&1 || true"),
        "NotFound",
        Duration::from_secs(60),
    );
    assert!(!host
        .sh(&format!("test -e /srv/volumes/{pv1}"))
        .status
        .success());
    assert!(host.sh(&format!("test -e {path}/proof")).status.success());

    // Uninstall deletes the node's volumes, and nothing else of that directory.
    let o = host.exec(&["tele", "uninstall", "--yes"]);
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("volumes removed"), "{}", stdout(&o));
    assert_eq!(host.ok_sh("ls /srv/volumes").trim(), "keep.txt");
    assert_eq!(host.ok_sh("cat /srv/volumes/keep.txt").trim(), "theirs");
}
