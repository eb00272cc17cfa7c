//! The wizard's AWS card in a real browser (headless Chromium over
//! WebDriver), against moto (AWS's EC2 and IAM APIs, with IAM enforced) and
//! the project's instance-metadata stand-in as this machine's: keys AWS
//! does not know, a secret that does not match, keys whose policy denies
//! `ec2:RunInstances`, each reported on its field with what to do; then
//! keys that may do everything, and the VPCs and subnets they see offered,
//! this instance's subnet chosen. The secret never comes back from the
//! installer. (The install itself on AWS is in tests/systemd_aws.rs, from
//! the command line.)

mod support;

use std::process::Command;
use std::time::Duration;

use support::aws::{fixture, moto};
use support::browser::{Browser, WizardInstaller};
use support::example::example_bundle;
use support::*;

const REGION: &str = "eu-west-1";
const ZONE: &str = "eu-west-1a";

#[test]
fn aws_keys_are_checked_on_their_fields_and_the_vpcs_they_see_are_offered() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = example_bundle(dir.path());
    // Seven requests make the instance and its network, six the two users;
    // moto checks every request after those.
    let (_moto, endpoint) = moto("127.0.0.1", Some(13));
    let made = fixture(&[
        &endpoint,
        REGION,
        ZONE,
        "10.77.0.0/24",
        "10.77.0.10",
        "shop",
    ]);
    let keys = fixture(&["iam-users", &endpoint, "ec2:RunInstances"]);
    let key = |user: &str| -> (String, String) {
        let (id, secret) = keys[user].as_str().unwrap().split_once(':').unwrap();
        (id.to_string(), secret.to_string())
    };
    let (_imds, imds) = imds(&[
        "--cloud",
        "aws",
        "--instance-id",
        made["instance_id"].as_str().unwrap(),
        "--region",
        REGION,
        "--zone",
        ZONE,
        "--local-ipv4",
        "10.77.0.10",
        "--subnet-id",
        made["subnet"].as_str().unwrap(),
        "--security-group-id",
        made["security_group"].as_str().unwrap(),
        "--instance-profile-arn",
        made["instance_profile"].as_str().unwrap(),
    ]);

    let mut installer = Command::new(bundle.join("install"));
    installer
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .arg("--wizard")
        .args(["--wizard-port", &free_port().to_string()])
        .env("AWS_ENDPOINT_URL", &endpoint)
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", &imds)
        .env("NO_COLOR", "1");
    let wizard = WizardInstaller::spawn(installer);

    let b = Browser::start();
    b.open_wizard(&wizard.url);
    b.type_into("#deployment", "shop");
    b.click("#provider-aws");
    b.wait_for(
        "the AWS fields",
        "!document.querySelector('#aws-box').hidden",
        Duration::from_secs(5),
    );
    // Continue before the keys are checked: they must be, first.
    b.click("#to-capacity");
    assert!(b
        .text("#accessKeyId-error")
        .contains("Check the keys first"));

    let check = |id: &str, secret: &str| {
        b.type_into("#accessKeyId", id);
        b.type_into("#secretAccessKey", secret);
        b.click("#aws-check");
        b.wait_for(
            "the check's answer",
            "!document.querySelector('#aws-check').disabled && !document.querySelector('#aws-state').textContent.startsWith('Checking')",
            Duration::from_secs(60),
        );
    };
    let (full_id, full_secret) = key("nodes-full");
    let (restricted_id, restricted_secret) = key("nodes-restricted");

    check("AKIAUNKNOWNKEY000000", "not-the-secret");
    let said = b.text("#accessKeyId-error");
    assert!(
        said.contains("AWS does not know this access key ID"),
        "{said} / {} / {}",
        b.text("#provider-error"),
        b.text("#aws-state")
    );

    check(&full_id, "not-the-secret");
    let said = b.text("#secretAccessKey-error");
    assert!(
        said.contains("does not belong to this access key ID"),
        "{said} / {}",
        b.text("#accessKeyId-error")
    );

    check(&restricted_id, &restricted_secret);
    let said = b.text("#accessKeyId-error");
    assert!(
        said.contains("these keys may not call ec2:RunInstances")
            && said.contains(
                r#"{"Effect": "Allow", "Action": ["ec2:RunInstances"], "Resource": "*"}"#
            ),
        "{said}"
    );
    b.screenshot("9-aws-missing-permission");

    check(&full_id, &full_secret);
    let state = b.text("#aws-state");
    assert!(state.contains("The keys work in eu-west-1"), "{state}");
    assert_eq!(b.text("#accessKeyId-error"), "");
    let vpc = made["vpc"].as_str().unwrap();
    let subnet = made["subnet"].as_str().unwrap();
    assert_eq!(
        b.js("return document.querySelector('#vpc').value;"),
        vpc,
        "{}",
        b.text("#vpc")
    );
    assert_eq!(
        b.js("return document.querySelector('#subnet').value;"),
        subnet
    );
    b.js("document.querySelector('#aws-state').scrollIntoView();");
    b.screenshot("10-aws-keys-work");

    // The secret goes to the installer and stays there.
    let progress = b.js(
        "const r = new XMLHttpRequest(); r.open('GET', '/api/v1/progress', false); r.send(); return r.responseText;",
    );
    let progress = progress.as_str().unwrap();
    assert!(!progress.contains(&full_secret), "{progress}");
    assert!(!b
        .js("return document.body.innerText;")
        .as_str()
        .unwrap()
        .contains(&full_secret));
    drop(wizard);
}
