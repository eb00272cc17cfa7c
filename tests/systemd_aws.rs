//! On AWS, with stand-ins: a systemd host plays an EC2 instance (the
//! project's metadata stand-in at 169.254.169.254 in its network namespace,
//! serving IMDSv2 and the instance profile's credentials) in an AWS whose
//! EC2 and ELB APIs are moto's server, reached through the SDKs'
//! `AWS_ENDPOINT_URL`. `./install` finds AWS by itself, names the node by
//! the instance's private DNS name, and runs the API server, the controller
//! manager and the kubelet with the runtime's AWS provider: the node's
//! provider ID names the instance (the kubelet and the controller manager
//! asked EC2, here moto, about it), and the `aws-ebs` StorageClass is there.

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use support::example::example_bundle;
use support::systemd_host::{HostOptions, SystemdHost};
use support::*;

const REGION: &str = "eu-west-1";
const ZONE: &str = "eu-west-1a";
const HOST_IP: &str = "10.213.0.41";
/// The host bridge's address, where moto listens for the host.
const BRIDGE_IP: &str = "10.213.0.1";

/// A program of the moto virtualenv (scripts/install-deps makes it).
fn venv_bin(name: &str) -> PathBuf {
    let venv = std::env::var_os("TELE_MOTO_VENV").map_or_else(
        || PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/tele/moto-venv"),
        PathBuf::from,
    );
    let bin = venv.join("bin").join(name);
    assert!(
        bin.exists(),
        "{} is missing: run scripts/install-deps",
        bin.display()
    );
    bin
}

fn fixture(args: &[&str]) -> serde_json::Value {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/support/aws_fixture.py");
    let o = ok(Command::new(venv_bin("python")).arg(script).args(args));
    serde_json::from_str(&stdout(&o)).unwrap()
}

#[test]
fn on_aws_the_node_is_the_instance_and_its_components_run_with_the_aws_provider() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = example_bundle(dir.path());
    let mut host = SystemdHost::boot(
        "tele-aws1",
        HostOptions::new(&format!("{HOST_IP}/24")).bind_ro(&bundle, "/opt/hello"),
    );
    host.wait_running(Duration::from_secs(120));

    // AWS's APIs: moto, on the host bridge.
    let port = free_port();
    let _moto = KillOnDrop(
        Command::new(venv_bin("moto_server"))
            .args(["-H", BRIDGE_IP, "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("moto_server runs"),
    );
    wait_for_port(&format!("{BRIDGE_IP}:{port}"));
    let endpoint = format!("http://{BRIDGE_IP}:{port}");
    let made = fixture(&[&endpoint, REGION, ZONE, "10.213.0.0/24", HOST_IP, "shop"]);
    let instance = made["instance_id"].as_str().unwrap().to_string();
    let dns = made["private_dns"].as_str().unwrap().to_string();
    assert_eq!(made["private_ip"], HOST_IP);

    // The instance's metadata service, in the host's network namespace.
    let _imds = host.serve_metadata(&[
        "--cloud",
        "aws",
        "--instance-id",
        &instance,
        "--region",
        REGION,
        "--zone",
        ZONE,
        "--hostname",
        &dns,
        "--local-ipv4",
        HOST_IP,
        "--log",
        dir.path().join("imds.log").to_str().unwrap(),
    ]);

    let o = host.exec(&[
        "env",
        &format!("AWS_ENDPOINT_URL={endpoint}"),
        "/opt/hello/install",
        "--autofix",
        "--timeout",
        "300",
        "--cluster-name",
        "shop",
        "--output-format",
        "json",
    ]);
    assert!(
        o.status.success(),
        "install on the AWS host failed:\n{}\n{}\nmetadata requests:\n{}\nservices' errors:\n{}",
        stderr(&o),
        stdout(&o),
        std::fs::read_to_string(dir.path().join("imds.log")).unwrap_or_default(),
        String::from_utf8_lossy(
            &host
                .sh("grep -hE '^(F|E)[0-9]{4}|^panic|^goroutine 1 ' /var/lib/tele/logs/*.log | head -n 40")
                .stdout
        )
    );
    assert_eq!(json(&o)["node"], dns.as_str());

    // The node is the instance, as the AWS provider sees it.
    host.eventually(
        &format!("kubectl get node {dns} -o jsonpath={{.spec.providerID}}"),
        &format!("aws:///{ZONE}/{instance}"),
        Duration::from_secs(120),
    );
    for unit in ["kube-apiserver", "kube-controller-manager", "kubelet"] {
        let cmdline = host.ok_sh(&format!(
            "tr '\\0' ' ' < /proc/$(systemctl show -p MainPID --value tele-{unit})/cmdline"
        ));
        assert!(
            cmdline.contains("--cloud-provider=aws")
                && cmdline.contains("--cloud-config=/var/lib/tele/"),
            "{unit}: {cmdline}"
        );
    }
    // The cloud config names the cluster and the endpoints, and holds no
    // credential (those come from the instance profile).
    let conf = host.ok_sh(
        "stat -c %a /var/lib/tele/kubernetes/cloud.conf; cat /var/lib/tele/kubernetes/cloud.conf",
    );
    assert!(conf.starts_with("600\n"), "{conf}");
    assert!(conf.contains("KubernetesClusterID = shop"), "{conf}");
    assert!(conf.contains(&format!("URL = {endpoint}")), "{conf}");
    assert!(!conf.contains("tele-test-secret"), "{conf}");
    let status = host.ok_sh("tele status");
    assert!(
        status.contains(&format!(
            "provider:  aws, region {REGION} ({ZONE}), instance {instance} (m5.large)"
        )),
        "{status}"
    );
    host.ok_sh("kubectl get storageclass aws-ebs");
}
