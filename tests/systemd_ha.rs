//! A cluster of three masters and a worker, on four hosts whose PID 1 is
//! systemd (systemd-nspawn containers on one bridge), made with the
//! commands the first master prints, the three joins run at the same time:
//! the masters form one etcd cluster (each joined as a learner, then
//! promoted), every node reaches the API through its local endpoint, and
//! with the first master cut off from the network the API on the others
//! still answers and accepts writes, the controllers and the scheduler carry
//! on elsewhere, and the worker keeps working; removing a master that
//! would lose etcd its quorum is refused; the cut-off master comes back
//! Ready; a master leaves and etcd shrinks with it; the worker, removed from
//! a master, cleans itself.

mod support;

use std::time::Duration;

use support::example::example_bundle;
use support::systemd_host::{boot_hosts, SystemdHost};
use support::*;

const ETCDCTL: &str = "/var/lib/tele/runtime/bin/etcdctl --endpoints https://127.0.0.1:2379 \
    --cacert /var/lib/tele/pki/etcd-ca.crt --cert /var/lib/tele/pki/apiserver-etcd-client.crt \
    --key /var/lib/tele/pki/apiserver-etcd-client.key";

fn logs(host: &SystemdHost) -> String {
    String::from_utf8_lossy(
        &host
            .sh("tail -n 15 /var/lib/tele/logs/*.log 2>&1 | tail -n 200")
            .stdout,
    )
    .into_owned()
}

/// Waits until `host`'s kubectl says Node `node` is Ready.
fn node_ready(host: &SystemdHost, node: &str, limit: Duration) {
    host.eventually(
        &format!("kubectl get node {node} -o jsonpath='{{.status.conditions[?(@.type==\"Ready\")].status}}'"),
        "True",
        limit,
    );
}

#[test]
fn three_masters_and_a_worker_keep_the_api_up_when_a_master_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = example_bundle(dir.path());
    let hosts = boot_hosts("tele-h", 51, 4, &bundle);
    let [h1, h2, h3, h4] = &hosts[..] else {
        unreachable!()
    };

    let o = h1.exec(&[
        "/opt/hello/install",
        "--flavor",
        "ha",
        "--autofix",
        "--timeout",
        "300",
        "--output-format",
        "json",
    ]);
    assert!(
        o.status.success(),
        "first master:\n{}\n{}",
        stderr(&o),
        stdout(&o)
    );
    let summary = json(&o);
    let command = |profile: &str| {
        let c = summary["joinCommands"][profile]
            .as_str()
            .unwrap_or_else(|| panic!("no join command for {profile}: {summary}"));
        assert!(
            c.starts_with("sudo ./install join 10.213.0.51 --token "),
            "{c}"
        );
        assert!(c.ends_with(&format!("--role {profile}")), "{c}");
        c.trim_start_matches("sudo ").to_string()
    };
    let (as_master, as_worker) = (command("master"), command("node"));

    // Two masters and the worker join at the same time.
    let joins: Vec<_> = [(h2, &as_master), (h3, &as_master), (h4, &as_worker)]
        .into_iter()
        .map(|(h, cmd)| {
            h.command(&[
                "sh",
                "-c",
                &format!("cd /opt/hello && {cmd} --autofix --timeout 600 --output-format json"),
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    for (h, join) in [h2, h3, h4].into_iter().zip(joins) {
        let o = join.wait_with_output().unwrap();
        assert!(
            o.status.success(),
            "join of {}:\n{}\n{}\nits services' logs:\n{}",
            h.name(),
            stderr(&o),
            stdout(&o),
            logs(h)
        );
    }

    // Four nodes Ready, with their roles.
    let nodes = h1.eventually(
        "kubectl get nodes --no-headers | grep -c ' Ready '",
        "4",
        Duration::from_secs(120),
    );
    assert_eq!(nodes.trim(), "4");
    for (h, role) in [
        (h1, "master"),
        (h2, "master"),
        (h3, "master"),
        (h4, "worker"),
    ] {
        let labels = h1.ok_sh(&format!(
            "kubectl get node {} -o jsonpath={{.metadata.labels}}",
            h.name()
        ));
        assert!(
            labels.contains(&format!("node-role.kubernetes.io/{role}")),
            "{}: {labels}",
            h.name()
        );
    }
    for (h, units) in [
        (
            h2,
            &[
                "etcd",
                "kube-apiserver",
                "kube-controller-manager",
                "kube-scheduler",
                "api-proxy",
                "join-server",
            ][..],
        ),
        (h4, &["api-proxy", "kubelet", "kube-proxy"][..]),
    ] {
        for u in units {
            assert_eq!(
                h.ok_sh(&format!("systemctl is-active tele-{u}.service"))
                    .trim(),
                "active",
                "{} {u}",
                h.name()
            );
        }
    }
    // One etcd cluster of three voting members.
    let members = h1.ok_sh(&format!("{ETCDCTL} member list"));
    assert_eq!(members.lines().count(), 3, "{members}");
    assert!(
        members
            .lines()
            .all(|l| l.contains(", started, ") && l.ends_with(", false")),
        "three started voting members:\n{members}"
    );
    // Every node's kubeconfigs name its local endpoint.
    for h in [h2, h4] {
        let server = h.ok_sh("grep server: /var/lib/tele/pki/kubeconfig/kubelet.conf");
        assert!(server.contains("https://127.0.0.1:6445"), "{server}");
    }
    let status = h1.ok_sh("tele status || true");
    assert!(
        status.contains("flavor:    ha (complete): 3 of 3 master, 1 of 1 node"),
        "{status}"
    );

    // The first master is cut off.
    h1.set_connected(false);
    // The API on another master answers and accepts writes ...
    h2.eventually(
        "kubectl create configmap after-loss --from-literal=lost=tele-h1 && kubectl get configmap after-loss -o name",
        "configmap/after-loss",
        Duration::from_secs(90),
    );
    h3.eventually(
        "kubectl get configmap after-loss -o jsonpath={.data.lost}",
        "tele-h1",
        Duration::from_secs(30),
    );
    // ... the controllers and the scheduler run elsewhere, and the worker,
    // through its local endpoint, runs what they give it.
    h2.ok_sh(
        "kubectl create deployment after-loss --image=example.com/hello/web:1.0.0 \
         && kubectl patch deployment after-loss -p '{\"spec\":{\"template\":{\"spec\":{\"nodeSelector\":{\"kubernetes.io/hostname\":\"tele-h4\"}}}}}'",
    );
    h2.eventually(
        "kubectl get pods -l app=after-loss --field-selector status.phase=Running -o name",
        "pod/after-loss",
        Duration::from_secs(180),
    );
    node_ready(h4, "tele-h4", Duration::from_secs(60));
    // Removing a master now would leave etcd one healthy member of two: refused, nothing changed.
    let o = h2.sh("tele remove tele-h3");
    assert_eq!(o.status.code(), Some(1), "{}\n{}", stdout(&o), stderr(&o));
    assert!(stderr(&o).contains("quorum"), "{}", stderr(&o));
    assert_eq!(
        h2.ok_sh(&format!("{ETCDCTL} member list")).lines().count(),
        3
    );
    h2.ok_sh("kubectl get node tele-h3");

    // The first master comes back, Ready, with what was written meanwhile.
    h1.set_connected(true);
    node_ready(h2, "tele-h1", Duration::from_secs(180));
    h1.eventually(
        "kubectl get configmap after-loss -o jsonpath={.data.lost}",
        "tele-h1",
        Duration::from_secs(60),
    );

    // A master leaves: etcd shrinks to two, its Node goes.
    let o = h3.sh("tele leave --yes");
    assert!(o.status.success(), "leave:\n{}\n{}", stdout(&o), stderr(&o));
    let members = h1.ok_sh(&format!("{ETCDCTL} member list"));
    assert_eq!(members.lines().count(), 2, "{members}");
    assert!(!members.contains("tele-h3"), "{members}");
    h1.eventually(
        "kubectl get node tele-h3 2>&1 || true",
        "NotFound",
        Duration::from_secs(60),
    );
    h2.eventually(
        "kubectl create configmap after-leave && kubectl get configmap after-leave -o name",
        "configmap/after-leave",
        Duration::from_secs(60),
    );

    // The worker is removed from a master: the machine cleans itself.
    let o = h1.sh("tele remove tele-h4");
    assert!(
        o.status.success(),
        "remove:\n{}\n{}",
        stdout(&o),
        stderr(&o)
    );
    assert!(stdout(&o).contains("uninstalling itself"), "{}", stdout(&o));
    h4.eventually(
        "test -e /var/lib/tele || echo gone",
        "gone",
        Duration::from_secs(120),
    );
    let units =
        h4.ok_sh("systemctl list-units --all --no-legend 'tele-*' | grep -v tele-removed || true");
    assert!(units.trim().is_empty(), "units left:\n{units}");
    h1.eventually(
        "kubectl get node tele-h4 2>&1 || true",
        "NotFound",
        Duration::from_secs(60),
    );
}
