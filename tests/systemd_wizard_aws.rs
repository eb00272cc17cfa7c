//! An install on AWS started from the wizard, end to end: a systemd host
//! plays an EC2 instance (the project's metadata stand-in at
//! 169.254.169.254 in its network namespace) in an AWS whose APIs are
//! moto's server; `./install --wizard` runs on it and Debian's headless
//! Chromium on this machine drives the page. The AWS card's keys are
//! checked, a subnet chosen, the flavor `two` and an instance type typed in
//! CAPACITY; the install then runs with the provider (the node named as AWS
//! names the instance) and makes the flavor's second machine in EC2 with
//! the type and subnet chosen on the page, tagged for the deployment the
//! page named. The machine is not played here (tests/systemd_aws.rs shows
//! one joining): the admin finishes without it.

mod support;

use std::time::Duration;

use support::aws::{fixture, moto};
use support::browser::{install_two_on_a_cloud, Browser, WizardInstaller};
use support::example::example_bundle;
use support::systemd_host::{HostOptions, SystemdHost};

const REGION: &str = "eu-west-1";
const ZONE: &str = "eu-west-1a";
const HOST_IP: &str = "10.213.0.47";
/// The host bridge's address, where moto listens for the host.
const BRIDGE_IP: &str = "10.213.0.1";

#[test]
fn an_aws_install_from_the_wizard_makes_the_machines_chosen_on_the_page() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = example_bundle(dir.path());
    let mut host = SystemdHost::boot(
        "tele-awz1",
        HostOptions::new(&format!("{HOST_IP}/24")).bind_ro(&bundle, "/opt/hello"),
    );
    host.wait_running(Duration::from_secs(120));

    let (_moto, endpoint) = moto(BRIDGE_IP, None);
    let made = fixture(&[&endpoint, REGION, ZONE, "10.213.0.0/24", HOST_IP, "shop"]);
    let instance = made["instance_id"].as_str().unwrap().to_string();
    let dns = made["private_dns"].as_str().unwrap().to_string();
    let subnet = made["subnet"].as_str().unwrap().to_string();
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
        "--subnet-id",
        &subnet,
        "--security-group-id",
        made["security_group"].as_str().unwrap(),
        "--instance-profile-arn",
        made["instance_profile"].as_str().unwrap(),
    ]);

    let installer = host.command(&[
        "env",
        &format!("AWS_ENDPOINT_URL={endpoint}"),
        "/opt/hello/install",
        "--wizard",
        "--autofix",
        "--timeout",
        "300",
    ]);
    let wizard = WizardInstaller::spawn(installer);
    let b = Browser::start();
    b.open_wizard(&wizard.url);

    // LOCATION: the deployment's name, AWS, keys that work.
    b.type_into("#deployment", "shop");
    b.click("#provider-aws");
    b.type_into("#accessKeyId", "AKIAWIZARDTESTKEY000");
    b.type_into("#secretAccessKey", "wizard-test-secret");
    b.click("#aws-check");
    b.wait_for(
        "the keys checked",
        "document.querySelector('#aws-state').textContent.startsWith('The keys work')",
        Duration::from_secs(60),
    );
    assert_eq!(
        b.js("return document.querySelector('#subnet').value;"),
        subnet.as_str()
    );
    // CAPACITY: the flavor of two nodes and the second one's type; then the
    // install with the provider, and the wait for the second machine, which
    // the admin ends.
    install_two_on_a_cloud(&b, wizard, "c5.xlarge", HOST_IP);

    // The node is the instance, its components run with the provider.
    host.eventually(
        &format!("kubectl get node {dns} -o jsonpath={{.spec.providerID}}"),
        &format!("aws:///{ZONE}/{instance}"),
        Duration::from_secs(120),
    );
    // (It exits non-zero: the flavor lacks the machine not played here.)
    let status = host.ok_sh("tele status || true");
    assert!(
        status.contains(&format!("provider:  aws, region {REGION}"))
            && status.contains("flavor:    two (incomplete): 1 of 2 node"),
        "{status}"
    );

    // The machine the page asked for: one instance of the type typed, in
    // the subnet chosen, tagged for the deployment named on the page.
    let all = fixture(&["instances", &endpoint, REGION]);
    let others: Vec<&serde_json::Value> = all
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["id"] != instance.as_str())
        .collect();
    assert_eq!(others.len(), 1, "{all}");
    let machine = others[0];
    assert_eq!(machine["type"], "c5.xlarge", "{machine}");
    assert_eq!(machine["subnet"], subnet.as_str(), "{machine}");
    assert_eq!(
        machine["tags"]["kubernetes.io/cluster/shop"], "owned",
        "{machine}"
    );
    assert_eq!(machine["tags"]["Name"], "shop-node-1", "{machine}");
    assert!(
        machine["user_data"]
            .as_str()
            .is_some_and(|s| s.contains(&format!("./tele join {HOST_IP}:6444 --token "))),
        "{machine}"
    );
    // The keys were the installer's alone: in no file on the node.
    let found =
        host.sh("grep -rl wizard-test-secret /var/lib/tele /etc/systemd/system 2>/dev/null");
    assert!(
        String::from_utf8_lossy(&found.stdout).trim().is_empty(),
        "{}",
        String::from_utf8_lossy(&found.stdout)
    );
}
