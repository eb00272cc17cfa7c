//! The wizard's Azure card in a real browser (headless Chromium over
//! WebDriver), against the project's stand-ins for Azure's sign-in and
//! Resource Manager (tests/support/azure_arm.py, named by an Azure Stack
//! environment file) and for this VM's metadata service: a tenant the
//! directory does not know, an application it does not know, a wrong
//! secret, a subscription that is not this VM's, and an application with
//! only the Reader role (which may not make the flavor's machines), each
//! reported on its field with what to do; then an application that may,
//! and the VM and group it will install in. In CAPACITY, a flavor of two
//! nodes asks for the VM size of the machine the install makes. The secret
//! never comes back from the installer. (Provisioning on Azure from the
//! command line is in tests/systemd_azure.rs.)

mod support;

use std::process::Command;
use std::time::Duration;

use support::browser::{Browser, WizardInstaller};
use support::example::example_bundle;
use support::*;

const SUBSCRIPTION: &str = "8d10da13-8125-4ba9-a717-bf7490507b3d";

#[test]
fn an_azure_application_is_checked_on_its_fields_and_the_vm_sizes_are_asked() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = example_bundle(dir.path());
    let (_arm, arm_port) = standin_in(
        Command::new("python3"),
        "azure_arm.py",
        &[
            "--tenant",
            "tenant-1",
            "--subscription",
            SUBSCRIPTION,
            "--resource-group",
            "shop",
            "--vm",
            "shop-vm1",
            "--client",
            "app-ops:s3cret-ops",
            "--client",
            "app-reader:s3cret-reader",
            "--contributor",
            "app-ops",
            // The machines' own identities are given their roles.
            "--role",
            "app-ops=Microsoft.Authorization/roleAssignments/write",
            "--reader",
            "app-reader",
        ],
    );
    let arm = format!("http://127.0.0.1:{arm_port}/");
    let environment = dir.path().join("azure-environment.json");
    std::fs::write(
        &environment,
        format!(
            r#"{{"name": "AzureStackCloud", "resourceManagerEndpoint": "{arm}", "activeDirectoryEndpoint": "{arm}", "serviceManagementEndpoint": "https://management.core.windows.net/"}}"#
        ),
    )
    .unwrap();
    let (_imds, imds) = imds(&[
        "--cloud",
        "azure",
        "--hostname",
        "shop-vm1",
        "--region",
        "westeurope",
    ]);

    let mut installer = Command::new(bundle.join("install"));
    installer
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .arg("--azure-environment")
        .arg(&environment)
        .arg("--wizard")
        .args(["--wizard-port", &free_port().to_string()])
        .env("TELE_AZURE_IMDS_ENDPOINT", &imds)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("NO_COLOR", "1");
    let wizard = WizardInstaller::spawn(installer);

    let b = Browser::start();
    b.open_wizard(&wizard.url);
    b.type_into("#deployment", "shop");
    b.click("#provider-azure");
    b.wait_for(
        "the Azure fields",
        "!document.querySelector('#azure-box').hidden && document.querySelector('#aws-box').hidden",
        Duration::from_secs(5),
    );
    // Continue before the application is checked: it must be, first.
    b.click("#to-capacity");
    assert!(b
        .text("#clientId-error")
        .contains("Check the application first"));

    let check = |tenant: &str, client: &str, secret: &str, subscription: &str| {
        b.type_into("#tenantId", tenant);
        b.type_into("#clientId", client);
        b.type_into("#clientSecret", secret);
        b.type_into("#subscriptionId", subscription);
        b.click("#azure-check");
        b.wait_for(
            "the check's answer",
            "!document.querySelector('#azure-check').disabled && !document.querySelector('#azure-state').textContent.startsWith('Signing')",
            Duration::from_secs(60),
        );
    };
    let all_errors = || {
        ["tenantId", "clientId", "clientSecret", "subscriptionId"]
            .iter()
            .map(|f| b.text(&format!("#{f}-error")))
            .collect::<Vec<_>>()
            .join(" / ")
            + " / "
            + &b.text("#azure-state")
    };

    check("tenant-9", "app-ops", "s3cret-ops", "");
    let said = b.text("#tenantId-error");
    assert!(
        said.contains("does not know this tenant") && said.contains("AADSTS90002"),
        "{}",
        all_errors()
    );
    check("tenant-1", "app-nobody", "s3cret-ops", "");
    assert!(
        b.text("#clientId-error")
            .contains("no application with this client id"),
        "{}",
        all_errors()
    );
    check("tenant-1", "app-ops", "not-the-secret", "");
    assert!(
        b.text("#clientSecret-error")
            .contains("the secret is not this application's"),
        "{}",
        all_errors()
    );
    check(
        "tenant-1",
        "app-ops",
        "s3cret-ops",
        "00000000-0000-0000-0000-000000000000",
    );
    assert!(
        b.text("#subscriptionId-error")
            .contains(&format!("this VM is in the subscription {SUBSCRIPTION}")),
        "{}",
        all_errors()
    );
    check("tenant-1", "app-reader", "s3cret-reader", "");
    let said = b.text("#clientId-error");
    assert!(
        said.contains("may not make the flavor's machines")
            && said.contains("Microsoft.Compute/virtualMachines/write")
            && said.contains("Network Contributor")
            && said.contains("resource group shop"),
        "{}",
        all_errors()
    );
    b.screenshot("11-azure-missing-role");

    check("tenant-1", "app-ops", "s3cret-ops", SUBSCRIPTION);
    let state = b.text("#azure-state");
    assert!(
        state.contains("may install here: the VM shop-vm1 in the resource group shop"),
        "{}",
        all_errors()
    );
    assert_eq!(b.text("#clientId-error"), "");
    b.js("document.querySelector('#azure-state').scrollIntoView();");
    b.screenshot("12-azure-application-works");

    // CAPACITY: one node asks nothing more; two nodes ask for the size of
    // the machine the install makes, and it must be given.
    b.click("#to-capacity");
    b.wait_for(
        "CAPACITY",
        "!document.querySelector('#capacity').hidden",
        Duration::from_secs(5),
    );
    assert_eq!(
        b.js("return document.querySelector('#types').hidden;"),
        serde_json::Value::Bool(true)
    );
    b.click("#flavor-two");
    b.wait_for(
        "the VM size asked",
        "!document.querySelector('#types').hidden && document.querySelector('#type-node') !== null",
        Duration::from_secs(5),
    );
    let label = b.text("label[for=type-node]");
    assert_eq!(label, "VM size of node (1 machine)");
    b.click("#start-install");
    assert_eq!(b.text("#type-node-error"), "Give the machines' type.");
    assert!(
        b.text("#capacity-hint")
            .contains("the install makes the others"),
        "{}",
        b.text("#capacity-hint")
    );
    b.screenshot("13-azure-capacity");

    // The secret goes to the installer and stays there.
    let progress = b.js(
        "const r = new XMLHttpRequest(); r.open('GET', '/api/v1/progress', false); r.send(); return r.responseText;",
    );
    let progress = progress.as_str().unwrap();
    assert!(progress.contains("\"stage\":\"choosing\""), "{progress}");
    assert!(!progress.contains("s3cret"), "{progress}");
    assert!(!b
        .js("return document.body.innerText;")
        .as_str()
        .unwrap()
        .contains("s3cret"));
    drop(wizard);
}
