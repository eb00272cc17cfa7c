//! Cluster DNS and volumes on a real cluster: the three-tier shop app of
//! tests/fixtures/shop (web on a NodePort -> api by its full name -> a
//! StatefulSet database by its short name, its rows on a claim) installed
//! from its bundle on a systemd host, with a volumes directory of its own
//! (`--volumes-dir`). The page on the NodePort shows rows that came through
//! the chain, also after the database's pod was deleted and came back. Then
//! an ExternalName Service and a client pod: real lookups from the client
//! pod (busybox `nslookup`, with the pod's own resolv.conf as the kubelet
//! wrote it) for every record kind of the Kubernetes DNS specification, the
//! search path for short names, a name outside the cluster with no upstream
//! resolver, and answers while the API server is stopped. A claim larger
//! than the node's free space gets an event that says so; a deleted claim's
//! data is removed, and uninstall removes the node's volumes and nothing
//! else of that directory.

mod support;

use std::time::{Duration, Instant};

use support::example::shop_bundle;
use support::systemd_host::{HostOptions, SystemdHost};
use support::*;

/// What the test adds to the shop: an ExternalName Service, a claim no node
/// can hold (and a pod that wants it), and a pod to look names up from.
const OBJECTS: &str = "apiVersion: v1
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
      image: example.com/hello/web:1.0.0
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
      image: example.com/hello/web:1.0.0
      command: [/bin/busybox, sleep, '100000']
";

/// The shop's page, through the node's NodePort.
const SHOP_PAGE: &str = "curl -sf -m 10 http://10.213.0.71:30080/cgi-bin/shop";

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
fn a_three_tier_app_finds_its_tiers_by_name_and_keeps_its_data_on_claims() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = shop_bundle(dir.path());
    let mut host = SystemdHost::boot(
        "tele-dns1",
        HostOptions::new("10.213.0.71/24").bind_ro(&bundle, "/opt/shop"),
    );
    host.wait_running(Duration::from_secs(120));
    // The volumes on a disk of their own, beside someone else's files.
    host.ok_sh("mkdir -p /srv/volumes && echo theirs > /srv/volumes/keep.txt");
    let o = host.exec(&[
        "/opt/shop/install",
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
    // Under systemd its answering thread is real time (`ps`: FF), or, on a
    // kernel that schedules real time per cgroup (CONFIG_RT_GROUP_SCHED, as
    // this machine's) where systemd gives the service's cgroup no budget
    // (the test hosts' cgroups have none), it says why it is not.
    let class = host
        .ok_sh("ps -o cls= -p \"$(systemctl show -p MainPID --value tele-cluster-dns.service)\"");
    let budget = host.sh(
        "cat /sys/fs/cgroup/cpu/cpu.rt_runtime_us /sys/fs/cgroup/cpu,cpuacct/cpu.rt_runtime_us 2>/dev/null | head -1",
    );
    let dns_log = host.ok_sh("cat /var/lib/tele/logs/cluster-dns.log");
    if String::from_utf8_lossy(&budget.stdout).trim() == "0" {
        assert_eq!(class.trim(), "TS", "{dns_log}");
        assert!(
            dns_log.contains("answering at normal priority: real time was refused")
                && dns_log.contains("no real-time budget (cpu.rt_runtime_us is 0)"),
            "{dns_log}"
        );
    } else {
        assert_eq!(class.trim(), "FF", "{dns_log}");
        assert!(
            dns_log.contains("answering at real-time priority"),
            "{dns_log}"
        );
    }
    // The shop's page, with a row that came from the database through the
    // api: web -> api.shop.svc.cluster.local -> db.
    let page = host.eventually(SHOP_PAGE, "order 1: 3 apples", Duration::from_secs(180));
    assert!(page.starts_with("the shop's orders:"), "{page}");

    // Two database pods (a headless Service with two addresses), and the
    // test's own objects.
    host.ok_sh("kubectl -n shop scale statefulset db --replicas=2");
    host.ok_sh(&format!("cat <<'EOF' | kubectl apply -f -\n{OBJECTS}EOF"));
    host.eventually(
        "kubectl -n shop get pods --field-selector status.phase=Running --no-headers | wc -l",
        "5",
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
    // volumes directory.
    let pv = field("pvc data-db-0 -o jsonpath={.spec.volumeName}");
    let path = host
        .ok_sh(&format!(
            "kubectl get pv {pv} -o jsonpath={{.spec.local.path}}"
        ))
        .trim()
        .to_string();
    assert_eq!(path, format!("/srv/volumes/{pv}"));
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

    // The database's rows outlive its pod: a row added, the pod deleted,
    // and the page shows the row once db-0 is back.
    host.ok_sh(&in_pod(
        &pid_of(&host, "db-0"),
        "sh -c 'echo \"order 2: kept\" >> /data/orders'",
    ));
    assert!(host
        .ok_sh(&format!("cat {path}/orders"))
        .contains("order 2: kept"));
    host.ok_sh("kubectl -n shop delete pod db-0 --wait=true");
    host.eventually(
        "kubectl -n shop get pod db-0 -o jsonpath={.status.phase}",
        "Running",
        Duration::from_secs(120),
    );
    let page = host.eventually(SHOP_PAGE, "order 2: kept", Duration::from_secs(120));
    assert!(page.contains("order 1: 3 apples"), "{page}");

    // Uninstall deletes the node's volumes, and nothing else of that directory.
    let o = host.exec(&["tele", "uninstall", "--yes"]);
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("volumes removed"), "{}", stdout(&o));
    assert_eq!(host.ok_sh("ls /srv/volumes").trim(), "keep.txt");
    assert_eq!(host.ok_sh("cat /srv/volumes/keep.txt").trim(), "theirs");
}
