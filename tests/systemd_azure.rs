//! Making the flavor's other machines on Azure, end to end, on hosts whose
//! PID 1 is systemd. The first host plays an Azure VM (a metadata stand-in
//! at 169.254.169.254 in its network namespace, with a user-assigned
//! identity) in an Azure Stack cloud whose sign-in and Resource Manager are
//! the project's stand-in (tests/support/azure_arm.py). `./install
//! --provision --flavor two` makes the second machine there: a NIC in this
//! VM's subnet and a VM of the size asked, with this VM's identity and a
//! start-up script as its custom data. A second host then plays that VM
//! (at the NIC's address, its metadata naming it) and runs the script as
//! cloud-init would: it fetches tele from the first node, joins in the same
//! Azure cloud and becomes Ready as the VM the provider names. `tele
//! uninstall --deprovision` deletes that VM, its NIC and its disk, and
//! nothing else.

mod support;

use std::process::Command;
use std::time::Duration;

use support::example::example_bundle;
use support::systemd_host::{HostOptions, SystemdHost, GATEWAY};
use support::*;

/// The subscription and group of both VMs.
const SUBSCRIPTION: &str = "8d10da13-8125-4ba9-a717-bf7490507b3d";
const FIRST_IP: &str = "10.213.0.31";
/// The address Resource Manager's stand-in gives the first NIC it makes.
const MADE_IP: &str = "10.213.0.32";
/// The user-assigned identity of the first VM, which the made VM shares.
const IDENTITY: &str = "tele-nodes";

/// Everything in the Resource Manager stand-in, custom data included.
fn resources(arm: &str) -> Vec<serde_json::Value> {
    let o = ok(Command::new("curl").args(["-sf", &format!("{arm}_standin/resources")]));
    serde_json::from_str::<serde_json::Value>(&stdout(&o))
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn provisioning_on_azure_makes_a_vm_whose_start_up_script_joins_it() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = example_bundle(dir.path());
    let mut host = SystemdHost::boot(
        "tele-az1",
        HostOptions::new(&format!("{FIRST_IP}/24")).bind_ro(&bundle, "/opt/hello"),
    );
    host.wait_running(Duration::from_secs(120));
    let (_arm, arm_port) = standin_in(
        Command::new("python3"),
        "azure_arm.py",
        &[
            "--listen",
            &format!("{GATEWAY}:0"),
            "--tenant",
            "tenant-1",
            "--subscription",
            SUBSCRIPTION,
            "--resource-group",
            "shop",
            "--vm",
            "tele-az1",
            "--user-identity",
            IDENTITY,
            "--contributor",
            IDENTITY,
            "--first-address",
            MADE_IP,
        ],
    );
    let arm = format!("http://{GATEWAY}:{arm_port}/");
    let _imds = host.serve_metadata(&[
        "--cloud",
        "azure",
        "--local-ipv4",
        FIRST_IP,
        "--hostname",
        "tele-az1",
        "--region",
        "westeurope",
        "--zone",
        "1",
        "--instance-type",
        "Standard_D4s_v3",
        "--instance-id",
        "5c3f2c8e-0e4f-4b5e-9d51-3b7a2f0d8e11",
        "--identity",
        IDENTITY,
    ]);
    let environment = format!(
        r#"{{"name": "AzureStackCloud", "resourceManagerEndpoint": "{arm}", "activeDirectoryEndpoint": "{arm}", "serviceManagementEndpoint": "https://management.core.windows.net/", "storageEndpointSuffix": "core.windows.net"}}"#
    );
    std::fs::write(
        host.root().join("root/azure-environment.json"),
        &environment,
    )
    .unwrap();

    let o = host.exec(&[
        "/opt/hello/install",
        "--azure-environment",
        "/root/azure-environment.json",
        "--flavor",
        "two",
        "--provision",
        "--instance-type",
        "node=Standard_B2s",
        "--autofix",
        "--timeout",
        "300",
        "--output-format",
        "json",
    ]);
    assert!(
        o.status.success(),
        "install on the Azure host failed:\n{}\n{}",
        stderr(&o),
        stdout(&o)
    );
    // Preflight found the identity may make and delete the machines.
    let preflight = host.ok_sh("cat /var/lib/tele/preflight.json");
    assert!(
        preflight.contains("make and delete the flavor's machines"),
        "{preflight}"
    );

    // One VM made, of the size asked, with this VM's identity, its NIC in
    // this VM's subnet, and a start-up script that trusts only the cluster
    // CA and joins in this Azure cloud as a node of the cluster.
    let all = resources(&arm);
    let made: Vec<&serde_json::Value> = all
        .iter()
        .filter(|r| r["type"] == "Microsoft.Compute/virtualMachines" && r["name"] != "tele-az1")
        .collect();
    assert_eq!(made.len(), 1, "{all:#?}");
    let vm = made[0];
    let name = vm["name"].as_str().unwrap().to_string();
    assert_eq!(
        vm["properties"]["hardwareProfile"]["vmSize"],
        "Standard_B2s"
    );
    assert_eq!(vm["tags"]["tele.profile"], "node", "{vm}");
    let ids = vm["identity"]["userAssignedIdentities"]
        .as_object()
        .unwrap();
    assert!(
        ids.keys().any(|k| k.ends_with(&format!("/{IDENTITY}"))),
        "{vm}"
    );
    let nic_id = vm["properties"]["networkProfile"]["networkInterfaces"][0]["id"]
        .as_str()
        .unwrap()
        .to_lowercase();
    let nic = all
        .iter()
        .find(|r| r["id"].as_str().is_some_and(|i| i.to_lowercase() == nic_id))
        .unwrap();
    let ipc = &nic["properties"]["ipConfigurations"][0]["properties"];
    assert_eq!(ipc["privateIPAddress"], MADE_IP, "{nic}");
    assert!(
        ipc["subnet"]["id"]
            .as_str()
            .unwrap()
            .ends_with("/subnets/nodes"),
        "{nic}"
    );
    let script = vm["customDataText"].as_str().unwrap().to_string();
    let ca = host.ok_sh("cat /var/lib/tele/pki/ca.crt");
    assert!(script.contains(ca.trim()), "{script}");
    assert!(
        script.contains(&format!("https://{FIRST_IP}:6444/v1/tele"))
            && script.contains("--role node --cluster-name hello")
            && script.contains("--azure-environment azure-environment.json")
            && script.contains(&format!("\"resourceManagerEndpoint\": \"{arm}\"")),
        "{script}"
    );

    // The VM starts: a second host plays it and runs its custom data as
    // cloud-init would. It joins and is Ready as the VM.
    let mut second = SystemdHost::boot("tele-az2", HostOptions::new(&format!("{MADE_IP}/24")));
    second.wait_running(Duration::from_secs(120));
    let _imds2 = second.serve_metadata(&[
        "--cloud",
        "azure",
        "--local-ipv4",
        MADE_IP,
        "--hostname",
        &name,
        "--region",
        "westeurope",
        "--zone",
        "1",
        "--instance-type",
        "Standard_B2s",
        "--instance-id",
        "0d2b6a57-3f0e-4c41-8a8e-51e2b0c6f7a2",
        "--identity",
        IDENTITY,
    ]);
    std::fs::write(second.root().join("root/custom-data"), &script).unwrap();
    let o = second.exec(&["sh", "/root/custom-data"]);
    assert!(
        o.status.success(),
        "the start-up script failed:\n{}\n{}",
        stdout(&o),
        stderr(&o)
    );
    host.eventually(
        &format!("kubectl get node {name} -o jsonpath='{{.status.conditions[?(@.type==\"Ready\")].status}} {{.spec.providerID}}'"),
        &format!("True azure:///subscriptions/{SUBSCRIPTION}/resourceGroups/shop/providers/Microsoft.Compute/virtualMachines/{name}"),
        Duration::from_secs(180),
    );
    // The joined node signed in to the same cloud: its azure.json names it.
    let conf = second.ok_sh("cat /var/lib/tele/kubernetes/cloud.conf");
    assert!(conf.contains("AzureStackCloud"), "{conf}");

    // Deprovisioning deletes that VM with its NIC and disk, nothing else.
    let o = host.exec(&["tele", "uninstall", "--yes", "--deprovision"]);
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains(&name), "{}", stdout(&o));
    let left: Vec<String> = resources(&arm)
        .iter()
        .map(|r| r["name"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(!left.iter().any(|n| n.starts_with(&name)), "{left:?}");
    assert!(left.contains(&"tele-az1".to_string()), "{left:?}");
    assert!(left.contains(&"tele-az1-nic".to_string()), "{left:?}");
}
