//! `./install` on a host whose PID 1 is systemd, as customers' servers are:
//! a Debian 12 container booted with systemd-nspawn (tests/support/
//! systemd_host.rs), with the example bundle bound in read-only. Every
//! service is an enabled, active unit; the health checker's measurements
//! reach InfluxDB; `tele status` is right; the app answers over its Service.
//! The host plays an Azure VM (a metadata stand-in at 169.254.169.254 in
//! its network namespace): the install finds it there by itself and status
//! shows the VM; the Kubernetes components run with the Azure provider on
//! the VM's managed identity, against the project's stand-in for Azure's
//! sign-in and Resource Manager (tests/support/azure_arm.py). After a reboot the cluster and the app come back with
//! nothing run by hand, and `tele uninstall` leaves the host's files as
//! they were.

mod support;

use std::time::Duration;

use support::example::example_bundle;
use support::systemd_host::{HostOptions, SystemdHost};
use support::*;

/// The Azure subscription of the VM the host plays (imds.py's default).
const SUBSCRIPTION: &str = "8d10da13-8125-4ba9-a717-bf7490507b3d";

/// The units a single-node install runs.
const SERVICES: [&str; 10] = [
    "registry",
    "etcd",
    "containerd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "cluster-dns",
    "kubelet",
    "kube-proxy",
    "health-checker",
];

/// What an uninstall must leave as it found it: unit files, enablement
/// links, the PATH, the state directory's parent, firewall rules, network
/// links and mounts.
const SNAPSHOT: &str = "find /etc/systemd /usr/local/bin /var/lib -xdev -not -path '/var/lib/systemd/*' -not -path '/var/lib/dpkg/*' -not -path '/var/lib/apt/*' | sort
    echo '--- iptables (chains that are not built in, rules)'
    iptables-save | grep -E '^(:|-A)' | grep -vE '^:(PREROUTING|INPUT|FORWARD|OUTPUT|POSTROUTING) ' || true
    echo '--- links'; ip -o link | awk '{print $2}' | sed 's/@.*//'
    echo '--- mounts'; awk '{print $2}' /proc/self/mounts | sort";

fn app_answers(host: &SystemdHost) {
    host.eventually("ip=$(kubectl get service hello-web -o jsonpath={.spec.clusterIP}) && curl -sf -m 5 http://$ip/",
        "hello from a tele bundle",
        Duration::from_secs(180),
    );
}

#[test]
fn install_on_a_systemd_host_comes_back_after_a_reboot_and_uninstalls_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = example_bundle(dir.path());
    let mut host = SystemdHost::boot(
        "tele-sd1",
        HostOptions::new("10.213.0.21/24").bind_ro(&bundle, "/opt/hello"),
    );
    host.wait_running(Duration::from_secs(120));
    // The host is an Azure VM: the metadata service's link-local address
    // is the test's own stand-in, in the host's network namespace, so the
    // install finds it as it would on Azure, with no setting.
    let _imds = host.serve_metadata(&[
        "--cloud",
        "azure",
        "--local-ipv4",
        "10.213.0.21",
        "--hostname",
        "tele-sd1",
        "--region",
        "westeurope",
        "--zone",
        "1",
        "--instance-type",
        "Standard_D4s_v3",
        "--instance-id",
        "5c3f2c8e-0e4f-4b5e-9d51-3b7a2f0d8e11",
    ]);
    // Azure's sign-in and Resource Manager: the project's stand-in, on the
    // host bridge, named by an Azure Stack environment file; the VM's
    // managed identity may read its resource group and itself.
    let (_arm, arm_port) = standin_in(
        std::process::Command::new("python3"),
        "azure_arm.py",
        &[
            "--listen",
            &format!("{}:0", support::systemd_host::GATEWAY),
            "--tenant",
            "tenant-1",
            "--subscription",
            SUBSCRIPTION,
            "--resource-group",
            "shop",
            "--vm",
            "tele-sd1",
            "--reader",
            "vm-identity",
        ],
    );
    let arm = format!("http://{}:{arm_port}/", support::systemd_host::GATEWAY);
    host.ok_sh(&format!(
        r#"printf '%s' '{{"name": "AzureStackCloud", "resourceManagerEndpoint": "{arm}", "activeDirectoryEndpoint": "{arm}", "serviceManagementEndpoint": "https://management.core.windows.net/", "storageEndpointSuffix": "core.windows.net"}}' > /root/azure-environment.json"#
    ));
    let before = host.ok_sh(SNAPSHOT);

    // The admin's command, as documented: defaults for everything but the
    // cloud's endpoints.
    let o = host.exec(&[
        "/opt/hello/install",
        "--azure-environment",
        "/root/azure-environment.json",
        "--autofix",
        "--timeout",
        "300",
        "--output-format",
        "json",
    ]);
    assert!(
        o.status.success(),
        "install on the systemd host failed:\n{}\n{}\nservices' logs:\n{}",
        stderr(&o),
        stdout(&o),
        host.sh("tail -n 20 /var/lib/tele/logs/*.log")
            .stdout
            .escape_ascii()
    );
    let summary = json(&o);
    assert_eq!(summary["serviceManager"], "systemd");
    assert_eq!(summary["node"], "tele-sd1");

    // Every service is an enabled unit that systemd reports active.
    for s in SERVICES {
        let unit = format!("tele-{s}.service");
        assert_eq!(
            host.ok_sh(&format!("systemctl is-enabled {unit}")).trim(),
            "enabled",
            "{unit}"
        );
        assert_eq!(
            host.ok_sh(&format!("systemctl is-active {unit}")).trim(),
            "active",
            "{unit}"
        );
    }
    // tele and kubectl are on the PATH; status sees the units and the health checker's round.
    let status = host.eventually("tele status", "node health (", Duration::from_secs(60));
    assert!(status.contains("managed by systemd"), "{status}");
    assert!(
        status.contains(
            "provider:  azure, region westeurope (1), instance 5c3f2c8e-0e4f-4b5e-9d51-3b7a2f0d8e11 (Standard_D4s_v3)"
        ),
        "{status}"
    );
    // On Azure the components run with the runtime's Azure provider, on
    // the VM's managed identity (azure.json 0600, no secret), and the node
    // is the VM as the provider names it.
    let conf = host.ok_sh(
        "stat -c %a /var/lib/tele/kubernetes/cloud.conf; cat /var/lib/tele/kubernetes/cloud.conf",
    );
    assert!(conf.starts_with("600\n"), "{conf}");
    let azure_json: serde_json::Value = serde_json::from_str(&conf[4..]).unwrap();
    assert_eq!(azure_json["cloud"], "AzureStackCloud", "{conf}");
    assert_eq!(azure_json["useManagedIdentityExtension"], true, "{conf}");
    assert_eq!(azure_json["subscriptionId"], SUBSCRIPTION, "{conf}");
    assert_eq!(azure_json["resourceGroup"], "shop", "{conf}");
    assert!(azure_json.get("aadClientSecret").is_none(), "{conf}");
    for unit in ["kube-apiserver", "kube-controller-manager", "kubelet"] {
        let cmdline = host.ok_sh(&format!(
            "tr '\\0' ' ' < /proc/$(systemctl show -p MainPID --value tele-{unit})/cmdline"
        ));
        assert!(
            cmdline.contains("--cloud-provider=azure"),
            "{unit}: {cmdline}"
        );
    }
    host.eventually(
        "kubectl get node tele-sd1 -o jsonpath={.spec.providerID}",
        &format!("azure:///subscriptions/{SUBSCRIPTION}/resourceGroups/shop/providers/Microsoft.Compute/virtualMachines/tele-sd1"),
        Duration::from_secs(60),
    );
    let preflight = host.ok_sh("cat /var/lib/tele/preflight.json");
    assert!(
        preflight.contains("the VM's managed identity may read the resource group shop"),
        "{preflight}"
    );
    for s in SERVICES {
        assert!(
            status
                .lines()
                .any(|l| l.trim_start().starts_with(s) && l.contains("running (pid")),
            "{s} in status:\n{status}"
        );
    }
    assert!(status.contains("Ready=True"), "{status}");
    assert!(
        status.contains("default/Deployment/hello-web 1/1"),
        "{status}"
    );
    let health = host.ok_sh("ls /var/lib/tele/health");
    assert!(
        !health.trim().is_empty(),
        "the health checker wrote nothing"
    );
    app_answers(&host);

    // A reboot: systemd brings every unit back in order, then the node and the app.
    host.reboot();
    for s in SERVICES {
        host.eventually(
            &format!("systemctl is-active tele-{s}.service"),
            "active",
            Duration::from_secs(120),
        );
    }
    host.eventually(
        "kubectl get node tele-sd1 -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}'",
        "True",
        Duration::from_secs(180),
    );
    app_answers(&host);
    host.eventually(
        "tele status",
        "default/Deployment/hello-web 1/1",
        Duration::from_secs(120),
    );

    // Uninstall removes every unit, link and file it made.
    let o = host.exec(&["tele", "uninstall", "--yes"]);
    assert!(
        o.status.success(),
        "uninstall:\n{}\n{}",
        stdout(&o),
        stderr(&o)
    );
    let units = host.ok_sh("systemctl list-units --all --no-legend 'tele-*'");
    assert!(units.trim().is_empty(), "units left:\n{units}");
    let after = host.ok_sh(SNAPSHOT);
    assert_eq!(before, after, "the host's files are as before the install");
    let listening = host.ok_sh("ss -ltnH || true");
    for port in [":6443 ", ":2379 ", ":5043 ", ":10250 "] {
        assert!(
            !listening.contains(port),
            "{port} still listening:\n{listening}"
        );
    }
}
