//! An install on Azure started from the wizard, end to end: a systemd host
//! plays an Azure VM (the metadata stand-in at 169.254.169.254 in its
//! network namespace) in an Azure Stack cloud whose sign-in and Resource
//! Manager are the project's stand-in (tests/support/azure_arm.py, which
//! checks every request against the roles given); `./install --wizard` runs
//! on it and Debian's headless Chromium on this machine drives the page.
//! The Azure card's application (a service principal with Contributor on
//! the group) is checked, the flavor `two` and a VM size typed in CAPACITY;
//! the install then runs with the Azure provider signed in as that
//! application (its secret only in the 0600 cloud config) and makes the
//! flavor's second VM of that size in this VM's subnet. The VM is not
//! played here (tests/systemd_azure.rs shows one joining): the admin
//! finishes without it.

mod support;

use std::process::Command;
use std::time::Duration;

use support::browser::{install_two_on_a_cloud, Browser, WizardInstaller};
use support::example::example_bundle;
use support::systemd_host::{HostOptions, SystemdHost, GATEWAY};
use support::*;

const SUBSCRIPTION: &str = "8d10da13-8125-4ba9-a717-bf7490507b3d";
const FIRST_IP: &str = "10.213.0.35";
/// The address Resource Manager's stand-in gives the first NIC it makes.
const MADE_IP: &str = "10.213.0.36";
const SECRET: &str = "s3cret-ops-wizard";

#[test]
fn an_azure_install_from_the_wizard_makes_the_vm_chosen_on_the_page() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = example_bundle(dir.path());
    let mut host = SystemdHost::boot(
        "tele-azw1",
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
            "tele-azw1",
            "--client",
            &format!("app-ops:{SECRET}"),
            "--contributor",
            "app-ops",
            // The machines' own identities are given their roles.
            "--role",
            "app-ops=Microsoft.Authorization/roleAssignments/write",
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
        "tele-azw1",
        "--region",
        "westeurope",
        "--zone",
        "1",
        "--instance-type",
        "Standard_D4s_v3",
        "--instance-id",
        "9a0c1d7e-2b3f-4c5d-8e9f-0a1b2c3d4e5f",
    ]);
    std::fs::write(
        host.root().join("root/azure-environment.json"),
        format!(
            r#"{{"name": "AzureStackCloud", "resourceManagerEndpoint": "{arm}", "activeDirectoryEndpoint": "{arm}", "serviceManagementEndpoint": "https://management.core.windows.net/", "storageEndpointSuffix": "core.windows.net"}}"#
        ),
    )
    .unwrap();

    let installer = host.command(&[
        "/opt/hello/install",
        "--wizard",
        "--azure-environment",
        "/root/azure-environment.json",
        "--autofix",
        "--timeout",
        "300",
    ]);
    let wizard = WizardInstaller::spawn(installer);
    let b = Browser::start();
    b.open_wizard(&wizard.url);

    // LOCATION: the deployment's name, Azure, an application that may install.
    b.type_into("#deployment", "shop");
    b.click("#provider-azure");
    b.type_into("#tenantId", "tenant-1");
    b.type_into("#clientId", "app-ops");
    b.type_into("#clientSecret", SECRET);
    b.type_into("#subscriptionId", SUBSCRIPTION);
    b.click("#azure-check");
    b.wait_for(
        "the application checked",
        "document.querySelector('#azure-state').textContent.startsWith('The application may install here')",
        Duration::from_secs(60),
    );
    // CAPACITY: the flavor of two nodes and the second one's VM size; then
    // the install, and the wait for the made VM, which the admin ends.
    install_two_on_a_cloud(&b, wizard, "Standard_B2s", FIRST_IP);

    // The node is the VM, its components signed in as the application.
    host.eventually(
        "kubectl get node tele-azw1 -o jsonpath={.spec.providerID}",
        &format!("azure:///subscriptions/{SUBSCRIPTION}/resourceGroups/shop/providers/Microsoft.Compute/virtualMachines/tele-azw1"),
        Duration::from_secs(120),
    );
    let conf = host.ok_sh(
        "stat -c %a /var/lib/tele/kubernetes/cloud.conf; cat /var/lib/tele/kubernetes/cloud.conf",
    );
    assert!(conf.starts_with("600\n"), "{conf}");
    assert!(
        conf.contains("\"aadClientId\": \"app-ops\"")
            || conf.contains("\"aadClientId\":\"app-ops\""),
        "{conf}"
    );
    // The secret is in that file alone.
    let found = host.sh(&format!(
        "grep -rl {SECRET} /var/lib/tele /etc/systemd/system 2>/dev/null"
    ));
    assert_eq!(
        stdout(&found).trim(),
        "/var/lib/tele/kubernetes/cloud.conf",
        "{}",
        stdout(&found)
    );

    // The VM the page asked for: of the size typed, its NIC in this VM's
    // subnet, tagged for the deployment; its start-up script without the secret.
    let o = ok(Command::new("curl").args(["-sf", &format!("{arm}_standin/resources")]));
    let all: Vec<serde_json::Value> = serde_json::from_str(&stdout(&o)).unwrap();
    let made: Vec<&serde_json::Value> = all
        .iter()
        .filter(|r| r["type"] == "Microsoft.Compute/virtualMachines" && r["name"] != "tele-azw1")
        .collect();
    assert_eq!(made.len(), 1, "{all:#?}");
    let vm = made[0];
    assert_eq!(
        vm["properties"]["hardwareProfile"]["vmSize"], "Standard_B2s",
        "{vm}"
    );
    assert_eq!(vm["tags"]["tele.cluster"], "shop", "{vm}");
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
    let script = vm["customDataText"].as_str().unwrap();
    assert!(
        script.contains("--cluster-name shop") && !script.contains(SECRET),
        "{script}"
    );
}
