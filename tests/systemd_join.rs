//! A second node joins a cluster, on two hosts whose PID 1 is systemd
//! (systemd-nspawn containers on one bridge), with the command `./install`
//! printed on the first: the worker is admitted only with a token the
//! cluster made, for a CA it pins; refused joins change nothing on either
//! side; a join killed halfway is finished by `./install join --resume`;
//! the joined worker is Ready with its role, runs the kubelet,
//! kube-proxy, containerd, the image registry and the health checker as
//! systemd units, runs pods from the bundle's images, and pods on either
//! node reach pods on the other, directly and through a Service; the worker
//! leaves (drained, cleaned, forgotten) and joins again.

mod support;

use std::time::{Duration, Instant};

use support::example::example_bundle;
use support::systemd_host::{HostOptions, SystemdHost};
use support::*;

/// A script that runs `curl URL` in the network namespace of pod `pod`, on
/// the pod's node: traffic that starts at the pod's address, as the pod's
/// own would. (The bundle's images hold only busybox, whose static `wget`
/// crashes resolving an address.)
fn curl_from_pod(master: &SystemdHost, pod: &str, url: &str) -> String {
    format!(
        "pid=$({})
         nsenter -t \"$pid\" -n curl -sf -m 5 {url}",
        master.pod_pid_command("default", pod)
    )
}

/// A script that runs `curl URL` from pod `pod` as a program of the pod
/// would: in its network namespace, resolving names with the pod's own
/// resolv.conf (the node's cluster DNS and the cluster's search path).
fn curl_by_name_from_pod(master: &SystemdHost, pod: &str, url: &str) -> String {
    format!(
        "pid=$({})
         nsenter -t \"$pid\" -m cat /etc/resolv.conf > /run/pod-resolv.conf
         nsenter -t \"$pid\" -n unshare -m sh -c 'mount --bind /run/pod-resolv.conf /etc/resolv.conf && curl -sf -m 5 {url}'",
        master.pod_pid_command("default", pod)
    )
}

/// Runs a join on the worker that must be refused: exit 1, the reason in
/// its error, nothing written on the worker.
fn refused(worker: &SystemdHost, args: &str, reason: &str) {
    let o = worker.sh(&format!("cd /opt/hello && ./install join {args} --autofix"));
    assert_eq!(o.status.code(), Some(1), "{}\n{}", stdout(&o), stderr(&o));
    assert!(
        stderr(&o).contains(reason),
        "wanted {reason:?}:\n{}",
        stderr(&o)
    );
    assert!(
        !worker.sh("test -e /var/lib/tele").status.success(),
        "a refused join left /var/lib/tele behind:\n{}",
        stderr(&o)
    );
}

#[test]
fn a_worker_joins_with_the_printed_command_and_refused_joins_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = example_bundle(dir.path());
    let mut master = SystemdHost::boot(
        "tele-m1",
        HostOptions::new("10.213.0.41/24").bind_ro(&bundle, "/opt/hello"),
    );
    let mut worker = SystemdHost::boot(
        "tele-w1",
        HostOptions::new("10.213.0.42/24").bind_ro(&bundle, "/opt/hello"),
    );
    master.wait_running(Duration::from_secs(120));
    worker.wait_running(Duration::from_secs(120));

    let o = master.exec(&[
        "/opt/hello/install",
        "--flavor",
        "two",
        "--autofix",
        "--timeout",
        "300",
        "--output-format",
        "json",
    ]);
    assert!(
        o.status.success(),
        "master install:\n{}\n{}",
        stderr(&o),
        stdout(&o)
    );
    let summary = json(&o);
    assert_eq!(summary["flavor"]["name"], "two");
    let status = master.ok_sh("tele status || true");
    assert!(
        status.contains("flavor:    two (incomplete): 1 of 2 node"),
        "{status}"
    );
    let command = summary["joinCommand"].as_str().unwrap().to_string();
    assert!(
        command.starts_with("sudo ./install join 10.213.0.41 --token "),
        "{command}"
    );
    let args = command
        .trim_start_matches("sudo ./install join ")
        .to_string();
    let token = args.split_whitespace().nth(2).unwrap().to_string();
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "{token}");

    // Refusals: each says why and changes nothing here or on the master.
    let wrong_secret = format!("{}.{}.{}", parts[0], "0".repeat(32), parts[2]);
    refused(
        &worker,
        &format!("10.213.0.41 --token {wrong_secret}"),
        "does not know this token",
    );
    let wrong_pin = format!("{}.{}.{}", parts[0], parts[1], "0".repeat(64));
    refused(
        &worker,
        &format!("10.213.0.41 --token {wrong_pin}"),
        "does not match the token's pin",
    );
    refused(
        &worker,
        &format!("10.213.0.41 --token {token} --role nosuch"),
        "no node profile `nosuch`",
    );
    refused(&worker, "10.213.0.41 --token not-a-token", "ID.SECRET.PIN");
    let made = master.ok_sh("tele token create --ttl 1h --output-format json");
    let revoked: serde_json::Value = serde_json::from_str(&made).unwrap();
    master.ok_sh(&format!(
        "tele token revoke {}",
        revoked["id"].as_str().unwrap()
    ));
    refused(
        &worker,
        &format!("10.213.0.41 --token {}", revoked["token"].as_str().unwrap()),
        "was revoked",
    );
    let made = master.ok_sh("tele token create --ttl 1s --role node --output-format json");
    let short: serde_json::Value = serde_json::from_str(&made).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    refused(
        &worker,
        &format!(
            "10.213.0.41 --token {} --role node",
            short["token"].as_str().unwrap()
        ),
        "has expired",
    );
    // A machine that fails preflight (the kubelet's port is taken): exit 3,
    // and nothing is left on it either.
    let mut blocker = worker
        .command(&["socat", "TCP-LISTEN:10250,reuseaddr", "STDOUT"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let o = worker.sh(&format!("cd /opt/hello && ./install join {args} --autofix"));
    worker.ok_sh("pkill -x socat");
    let _ = blocker.wait();
    assert_eq!(o.status.code(), Some(3), "{}\n{}", stdout(&o), stderr(&o));
    assert!(
        format!("{}{}", stdout(&o), stderr(&o)).contains("10250"),
        "{}\n{}",
        stdout(&o),
        stderr(&o)
    );
    assert!(
        !worker.sh("test -e /var/lib/tele").status.success(),
        "a join refused by preflight left /var/lib/tele behind"
    );
    assert!(
        !master
            .sh("test -e /var/lib/tele/nodes.json")
            .status
            .success(),
        "refused joins admitted nobody"
    );

    // The join, as printed (run as root, so without sudo), killed with
    // SIGKILL once its services run, then resumed.
    let mut killed = worker
        .command(&[
            "sh",
            "-c",
            &format!("cd /opt/hello && TELE_TEST_PAUSE_AT=/nodes/tele-w1/services:after ./install join {args} --autofix --timeout 300"),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let paused = worker.root().join("var/lib/tele/.paused");
    let deadline = Instant::now() + Duration::from_secs(300);
    while !paused.exists() {
        assert!(
            Instant::now() < deadline,
            "the join never reached its services"
        );
        assert!(killed.try_wait().unwrap().is_none(), "the join ended early");
        std::thread::sleep(Duration::from_millis(200));
    }
    worker.ok_sh("pkill -KILL -x install");
    killed.wait().unwrap();
    std::fs::remove_file(&paused).unwrap();
    let o = worker.sh("cd /opt/hello && ./install join --resume --output-format json");
    assert!(
        o.status.success(),
        "join:\n{}\n{}\nservices' logs:\n{}",
        stderr(&o),
        stdout(&o),
        worker
            .sh("tail -n 20 /var/lib/tele/logs/*.log")
            .stdout
            .escape_ascii()
    );
    let joined = json(&o);
    assert_eq!(joined["joinedThrough"], "10.213.0.41:6444");
    assert_eq!(joined["serviceManager"], "systemd");
    for s in [
        "registry",
        "containerd",
        "kubelet",
        "kube-proxy",
        "health-checker",
    ] {
        assert_eq!(
            worker
                .ok_sh(&format!("systemctl is-active tele-{s}.service"))
                .trim(),
            "active",
            "{s}"
        );
    }
    for s in ["etcd", "kube-apiserver"] {
        assert!(
            !worker
                .sh(&format!("test -e /etc/systemd/system/tele-{s}.service"))
                .status
                .success(),
            "a worker runs no {s}"
        );
    }
    assert!(
        !worker
            .sh("test -e /var/lib/tele/join-token")
            .status
            .success(),
        "the token is forgotten once the node joined"
    );
    let nodes = master.eventually(
        "kubectl get nodes --no-headers",
        "tele-w1",
        Duration::from_secs(60),
    );
    assert!(
        nodes.lines().all(|l| l.contains(" Ready ")),
        "both nodes Ready:\n{nodes}"
    );
    let labels = master.ok_sh("kubectl get node tele-w1 -o jsonpath={.metadata.labels}");
    assert!(
        labels.contains("node-role.kubernetes.io/worker"),
        "{labels}"
    );

    // Pods run on the worker from the bundle's images (its own registry).
    master.ok_sh(
        "cat <<'EOF' | kubectl apply -f -
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: everywhere}
spec:
  selector: {matchLabels: {app: everywhere}}
  template:
    metadata: {labels: {app: everywhere}}
    spec:
      containers:
        - name: web
          image: example.com/hello/web:1.0.0
---
apiVersion: v1
kind: Service
metadata: {name: everywhere}
spec:
  selector: {app: everywhere}
  ports: [{port: 80, targetPort: 8080}]
EOF",
    );
    let pod_ip = |node: &str| {
        master.eventually(&format!("kubectl get pods -l app=everywhere --field-selector spec.nodeName={node},status.phase=Running -o jsonpath={{.items[*].status.podIP}}"),
            "10.244.",
            Duration::from_secs(120),
        )
        .trim()
        .to_string()
    };
    let on_worker = pod_ip("tele-w1");
    let on_master = pod_ip("tele-m1");
    assert!(
        on_worker.starts_with("10.244.1."),
        "the worker's pods use its own subnet: {on_worker}"
    );

    // One pod network: routes to each node's pod subnet through the node.
    master.eventually(
        "ip route show 10.244.1.0/24; tail -n 5 /var/lib/tele/logs/pod-network.log >&2",
        "via 10.213.0.42",
        Duration::from_secs(30),
    );
    // From the master machine and from a pod on the master to a pod on the worker ...
    master.eventually(
        &format!("curl -sf -m 5 http://{on_worker}:8080/"),
        "hello from a tele bundle",
        Duration::from_secs(60),
    );
    let pod_on = |node: &str| {
        master
            .ok_sh(&format!(
                "kubectl get pods -l app=everywhere --field-selector spec.nodeName={node} -o jsonpath={{.items[0].metadata.name}}"
            ))
            .trim()
            .to_string()
    };
    let script = curl_from_pod(
        &master,
        &pod_on("tele-m1"),
        &format!("http://{on_worker}:8080/"),
    );
    master.eventually(&script, "hello from a tele bundle", Duration::from_secs(60));
    // ... and from a pod on the worker to a pod on the master, and through a Service.
    let script = curl_from_pod(
        &master,
        &pod_on("tele-w1"),
        &format!("http://{on_master}:8080/"),
    );
    worker.eventually(&script, "hello from a tele bundle", Duration::from_secs(60));
    // Each request goes to either node's pod: all of them must be answered.
    for host in [&master, &worker] {
        for _ in 0..6 {
            host.eventually("curl -sf -m 5 http://$(kubectl get service everywhere -o jsonpath={.spec.clusterIP})/",
                "hello from a tele bundle",
                Duration::from_secs(60),
            );
        }
    }

    // By name: a pod on each node finds, through its node's DNS, a Service
    // whose only pod is on the other node, and reaches it.
    for node in ["master", "worker"] {
        master.ok_sh(&format!(
            "cat <<'EOF' | kubectl apply -f -
apiVersion: apps/v1
kind: Deployment
metadata: {{name: on-{node}}}
spec:
  selector: {{matchLabels: {{app: on-{node}}}}}
  template:
    metadata: {{labels: {{app: on-{node}}}}}
    spec:
      nodeSelector: {{kubernetes.io/hostname: tele-{n}1}}
      containers:
        - name: web
          image: example.com/hello/web:1.0.0
---
apiVersion: v1
kind: Service
metadata: {{name: on-{node}}}
spec:
  selector: {{app: on-{node}}}
  ports: [{{port: 80, targetPort: 8080}}]
EOF",
            n = &node[..1],
        ));
    }
    let script = curl_by_name_from_pod(&master, &pod_on("tele-m1"), "http://on-worker/");
    master.eventually(
        &script,
        "hello from a tele bundle",
        Duration::from_secs(120),
    );
    master.ok_sh("kubectl delete deployment on-worker --wait=true");
    let script = curl_by_name_from_pod(&master, &pod_on("tele-w1"), "http://on-master/");
    worker.eventually(
        &script,
        "hello from a tele bundle",
        Duration::from_secs(120),
    );
    let script = curl_by_name_from_pod(
        &master,
        &pod_on("tele-w1"),
        "http://on-master.default.svc.cluster.local/",
    );
    worker.eventually(&script, "hello from a tele bundle", Duration::from_secs(30));

    // Both sides' status tell of the join.
    let status = worker.ok_sh("tele status || true");
    assert!(
        status.contains("joined:    through 10.213.0.41:6444"),
        "{status}"
    );
    assert!(status.contains("node:      tele-w1 Ready=True"), "{status}");
    let status = master.ok_sh("tele status || true");
    assert!(status.contains("tele-w1"), "{status}");
    assert!(
        status.contains("flavor:    two (complete): 2 of 2 node"),
        "{status}"
    );
    assert!(status.contains("used by tele-w1"), "{status}");

    // Certificates renew themselves on both nodes, under systemd: the master
    // from its CAs, the worker through the master's join service with its
    // kubelet's certificate. With a validity of three minutes (set on the
    // master, taken by the worker's forced renewal) both are due within two.
    let out = master.ok_sh("tele certificates renew --validity 3m");
    assert!(
        out.contains("restarted registry, etcd, containerd, kube-apiserver"),
        "{out}"
    );
    let out = worker.ok_sh("tele certificates renew");
    assert!(out.contains("restarted registry, containerd"), "{out}");
    assert!(out.contains("kubelet"), "{out}");
    let o = worker.sh("tele certificates renew --validity 1h");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("issued by the master it joined through"),
        "{}",
        stderr(&o)
    );
    for (host, file) in [
        (&worker, "kubeconfig/kubelet.conf"),
        (&worker, "registry-client.crt"),
        (&master, "apiserver.crt"),
    ] {
        let line = host.ok_sh(&format!("tele certificates list | grep '^{file} '"));
        assert!(line.contains(" 0.00"), "{line}");
        host.ok_sh(&format!(
            "tele certificates list | grep '^{file} ' > /tmp/before-renewal"
        ));
        host.eventually(
            &format!(
                "tele certificates list | grep '^{file} ' | cmp -s - /tmp/before-renewal || echo renewed"
            ),
            "renewed",
            Duration::from_secs(200),
        );
    }
    // Through the renewals: the worker Ready, pods on both nodes served.
    master.eventually(
        "kubectl get node tele-w1 -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}'",
        "True",
        Duration::from_secs(120),
    );
    for host in [&master, &worker] {
        for _ in 0..4 {
            host.eventually("curl -sf -m 5 http://$(kubectl get service everywhere -o jsonpath={.spec.clusterIP})/",
                "hello from a tele bundle",
                Duration::from_secs(120),
            );
        }
    }
    // Back to a year for the rest of the test.
    master.ok_sh("tele certificates renew --validity 365d");
    worker.ok_sh("tele certificates renew");
    let line = worker.ok_sh("tele certificates list | grep '^kubeconfig/kubelet.conf '");
    assert!(line.contains(" 365.00"), "{line}");

    // Taking nodes out: the master is not removed; unknown nodes are named.
    let o = master.sh("tele remove tele-m1");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("is this master"), "{}", stderr(&o));
    let o = master.sh("tele remove tele-x9");
    assert!(stderr(&o).contains("has no node tele-x9"), "{}", stderr(&o));
    // The worker leaves: drained, cleaned, forgotten ...
    let o = worker.sh("tele leave --yes");
    assert!(o.status.success(), "leave:\n{}\n{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("tele-w1 left the cluster"),
        "{}",
        stdout(&o)
    );
    assert!(!worker.sh("test -e /var/lib/tele").status.success());
    let units = worker.ok_sh("systemctl list-units --all --no-legend 'tele-*'");
    assert!(units.trim().is_empty(), "units left:\n{units}");
    master.eventually(
        "kubectl get node tele-w1 2>&1 || true",
        "NotFound",
        Duration::from_secs(60),
    );
    let status = master.ok_sh("tele status || true");
    assert!(status.contains("two (incomplete): 1 of 2 node"), "{status}");
    // ... and joins again with a new token, this time with the tele binary
    // alone: what the node runs comes from the master, checked byte by byte.
    let made = master.ok_sh("tele token create --role node --output-format json");
    let again: serde_json::Value = serde_json::from_str(&made).unwrap();
    worker.ok_sh("mkdir -p /root/alone && cp /opt/hello/install /root/alone/tele");
    let o = worker.sh(&format!(
        "cd /root/alone && ./tele join 10.213.0.41 --token {} --role node --autofix --timeout 300",
        again["token"].as_str().unwrap()
    ));
    assert!(
        o.status.success(),
        "rejoin:\n{}\n{}",
        stdout(&o),
        stderr(&o)
    );
    assert!(
        stderr(&o).contains("fetched and verified"),
        "{}",
        stderr(&o)
    );
    // The node part only: the manifest, the runtime, the images; not the installer.
    let fetched = worker.ok_sh("cd /var/lib/tele/fetched-bundle && ls");
    assert_eq!(
        fetched.split_whitespace().collect::<Vec<_>>(),
        ["app.yaml", "bundle.json", "images", "runtime"],
        "{fetched}"
    );
    let log = master.ok_sh("cat /var/lib/tele/logs/join-server.log");
    assert!(
        log.contains("tele:bundle-reader:tele-w1 fetches the bundle"),
        "{log}"
    );
    master.eventually(
        "kubectl get node tele-w1 --no-headers",
        " Ready ",
        Duration::from_secs(120),
    );
    // Its pods run from the fetched images.
    let back = pod_ip("tele-w1");
    master.eventually(
        &format!("curl -sf -m 5 http://{back}:8080/"),
        "hello from a tele bundle",
        Duration::from_secs(60),
    );
}
