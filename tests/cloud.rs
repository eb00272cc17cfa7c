//! Where am I: the installer recognises AWS and Azure machines by their
//! instance metadata services, here the project's stand-ins
//! (tests/support/imds.py: IMDSv2 with its token and TTL header, Azure's
//! `Metadata: true` and `api-version`), falls back to onprem when neither
//! answers, takes `--cloud-provider` as given, and refuses a provider the
//! app's manifest disables. On AWS, preflight tries each action the AWS
//! provider needs with the instance profile's credentials, against moto's
//! EC2 and ELB with IAM checked, and names what the role lacks.

mod support;

use std::time::{Duration, Instant};

use support::*;
use tele_installer::cloud::{self, Endpoints, Provider};
use tele_manifests::{AwsProvider, GenericProvider, Providers};

/// A URL where nothing listens.
fn closed() -> String {
    format!("http://127.0.0.1:{}", free_port())
}

fn endpoints(aws: &str, azure: &str) -> Endpoints {
    Endpoints {
        aws: Some(aws.into()),
        azure: Some(azure.into()),
    }
}

#[test]
fn an_aws_instance_is_found_through_imdsv2_only() {
    let (_imds, url) = imds(&["--cloud", "aws"]);
    // The stand-in is strict: version 1 (no token) is refused.
    let v1 = run(std::process::Command::new("curl").args([
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("{url}/latest/meta-data/instance-id"),
    ]));
    assert_eq!(stdout(&v1), "401");

    let found = cloud::detect(&endpoints(&url, &closed())).expect("found on AWS");
    assert_eq!(found.provider, "aws");
    assert_eq!(found.instance_id, "i-0123456789abcdef0");
    assert_eq!(found.region, "eu-west-1");
    assert_eq!(found.zone, "eu-west-1a");
    assert_eq!(found.instance_type, "m5.large");
    assert_eq!(found.hostname, "ip-10-0-1-23.eu-west-1.compute.internal");
    assert_eq!(
        found.to_string(),
        "aws, region eu-west-1 (eu-west-1a), instance i-0123456789abcdef0 (m5.large)"
    );
    let located = cloud::locate(None, &Providers::default(), &endpoints(&url, &closed()))
        .unwrap()
        .unwrap();
    assert_eq!(located, found);
}

#[test]
fn an_azure_vm_is_found_with_the_metadata_header() {
    let (_imds, url) = imds(&[
        "--cloud",
        "azure",
        "--region",
        "westeurope",
        "--zone",
        "2",
        "--instance-type",
        "Standard_D2s_v3",
        "--instance-id",
        "02aab8a4-74ef-476e-8182-f6d2ba4166a6",
        "--hostname",
        "web-1",
    ]);
    // Without the header the service refuses, as Azure's does.
    let bare = run(std::process::Command::new("curl").args([
        "-s",
        &format!("{url}/metadata/instance?api-version=2021-02-01"),
    ]));
    assert!(
        stdout(&bare).contains("Required metadata header"),
        "{}",
        stdout(&bare)
    );

    let found = cloud::detect(&endpoints(&closed(), &url)).expect("found on Azure");
    assert_eq!(found.provider, "azure");
    assert_eq!(found.hostname, "web-1");
    assert_eq!(found.region, "westeurope");
    assert_eq!(found.resource_group, "shop");
    assert_eq!(found.instance_type, "Standard_D2s_v3");
    let named = cloud::locate(
        Some(Provider::Azure),
        &Providers::default(),
        &endpoints(&closed(), &url),
    )
    .unwrap();
    assert_eq!(named, Some(found));
}

#[test]
fn a_machine_in_no_cloud_is_onprem_and_a_named_cloud_must_answer() {
    // Metadata addresses that accept connections and never answer (as a
    // firewall that drops them would): detection gives up, briefly.
    let (_a, aws) = imds(&["--stall"]);
    let (_b, azure) = imds(&["--stall"]);
    let begun = Instant::now();
    let found = cloud::locate(None, &Providers::default(), &endpoints(&aws, &azure)).unwrap();
    assert_eq!(found, None);
    // A guard against hanging, not a speed measure (see bench/).
    assert!(begun.elapsed() < Duration::from_secs(30));
    assert_eq!(
        cloud::locate(
            None,
            &Providers::default(),
            &endpoints(&closed(), &closed())
        )
        .unwrap(),
        None
    );
    // AWS_EC2_METADATA_DISABLED: not asked at all.
    let off = Endpoints {
        aws: None,
        azure: Some(closed()),
    };
    assert_eq!(cloud::detect(&off), None);

    // Named, the cloud's service must answer; the error says what to do.
    let e = cloud::locate(
        Some(Provider::Aws),
        &Providers::default(),
        &endpoints(&closed(), &closed()),
    )
    .unwrap_err();
    assert!(e.to_string().contains("--cloud-provider aws"), "{e}");
    assert!(
        e.hint().unwrap().contains("--cloud-provider onprem"),
        "{e:?}"
    );
    // onprem asks nothing.
    assert_eq!(
        cloud::locate(
            Some(Provider::Onprem),
            &Providers::default(),
            &endpoints(&aws, &azure)
        )
        .unwrap(),
        None
    );
}

#[test]
fn a_provider_the_manifest_disables_is_refused_with_the_reason() {
    let (_imds, url) = imds(&["--cloud", "aws"]);
    let no_aws = Providers {
        aws: Some(AwsProvider {
            disabled: true,
            ..AwsProvider::default()
        }),
        ..Providers::default()
    };
    let e = cloud::locate(None, &no_aws, &endpoints(&url, &closed())).unwrap_err();
    assert!(
        e.to_string().contains("this machine is on aws")
            && e.to_string().contains("providers.aws.disabled"),
        "{e}"
    );
    assert!(
        e.hint().unwrap().contains("--cloud-provider onprem"),
        "{e:?}"
    );
    // The admin may still install it without the cloud's integration.
    assert_eq!(
        cloud::locate(Some(Provider::Onprem), &no_aws, &endpoints(&url, &closed())).unwrap(),
        None
    );
    let no_generic = Providers {
        generic: Some(GenericProvider {
            disabled: true,
            ..GenericProvider::default()
        }),
        ..Providers::default()
    };
    let e = cloud::locate(None, &no_generic, &endpoints(&closed(), &closed())).unwrap_err();
    assert!(e.to_string().contains("providers.generic.disabled"), "{e}");
}

#[test]
fn install_with_a_cloud_that_does_not_answer_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = support::example::example_bundle(dir.path());
    let state = dir.path().join("state");
    let o = run(std::process::Command::new(bundle.join("install"))
        .arg("--state-dir")
        .arg(&state)
        .args(["--cloud-provider", "aws", "--bin-dir", "none"])
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", closed()));
    // Bad input (exit code 1), with what to do.
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stderr(&o).contains("--cloud-provider aws: aws's instance metadata service")
            && stderr(&o).contains("hint:"),
        "{}",
        stderr(&o)
    );
    assert!(!state.exists(), "the state directory was made");
    // A credentials file without the profile named.
    let keys = dir.path().join("aws-keys");
    std::fs::write(
        &keys,
        "[default]\naws_access_key_id = AKIAEXAMPLE\naws_secret_access_key = the-secret\n",
    )
    .unwrap();
    let o = run(std::process::Command::new(bundle.join("install"))
        .arg("--state-dir")
        .arg(&state)
        .arg("--aws-credentials-file")
        .arg(&keys)
        .args(["--aws-profile", "ops", "--cloud-provider", "aws"]));
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stderr(&o).contains("no profile `ops` with aws_access_key_id and aws_secret_access_key")
            && stderr(&o).contains("hint:")
            && !stderr(&o).contains("the-secret"),
        "{}",
        stderr(&o)
    );
    assert!(!state.exists(), "the state directory was made");
    let o = run(std::process::Command::new(bundle.join("install"))
        .arg("--state-dir")
        .arg(&state)
        .args(["--cloud-provider", "gcp"]));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("give aws, azure or onprem"),
        "{}",
        stderr(&o)
    );
}

/// The `cloud-permissions` check alone, for an AWS instance whose metadata
/// service hands out the key `role_key` as its role's, in an AWS whose
/// APIs are at `endpoint`.
fn aws_permissions(endpoint: &str, role_key: &str) -> tele_installer::preflight::CheckResult {
    aws_permissions_with(endpoint, role_key, None)
}

/// [`aws_permissions`] for an install that also makes machines.
fn aws_permissions_with(
    endpoint: &str,
    role_key: &str,
    provision: Option<cloud::ProvisionSettings>,
) -> tele_installer::preflight::CheckResult {
    let (_imds, url) = imds(&["--cloud", "aws", "--role-key", role_key]);
    let instance = cloud::detect(&endpoints(&url, &closed())).expect("found on AWS");
    let endpoints = ["ec2", "elasticloadbalancing"]
        .map(|s| (s.to_string(), endpoint.to_string()))
        .into();
    cloud_check(
        instance,
        cloud::Settings {
            cluster_id: "shop".into(),
            endpoints,
            imds_endpoint: Some(url),
            provision,
            ..Default::default()
        },
    )
}

/// Runs preflight's `cloud-permissions` check alone, for `instance`.
fn cloud_check(
    instance: cloud::Instance,
    settings: cloud::Settings,
) -> tele_installer::preflight::CheckResult {
    use tele_installer::preflight;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = preflight::PreflightConfig::new(dir.path());
    cfg.skip = preflight::check_names()
        .iter()
        .filter(|c| **c != "cloud-permissions")
        .map(|c| c.to_string())
        .collect();
    cfg.cloud = Some((instance, settings));
    preflight::run(&cfg)
        .unwrap()
        .into_iter()
        .find(|r| r.name == "cloud-permissions")
        .unwrap()
}

#[test]
fn preflight_names_each_aws_action_the_instance_role_lacks() {
    use tele_installer::preflight::Status;
    let (_moto, endpoint) = support::aws::moto("127.0.0.1", Some(6));
    let keys = support::aws::fixture(&[
        "iam-users",
        &endpoint,
        "ec2:CreateVolume",
        "elasticloadbalancing:CreateLoadBalancer",
        "ec2:RunInstances",
    ]);
    let secret = |user: &str| {
        keys[user]
            .as_str()
            .unwrap()
            .split_once(':')
            .unwrap()
            .1
            .to_string()
    };

    let restricted = aws_permissions(&endpoint, keys["nodes-restricted"].as_str().unwrap());
    assert_eq!(restricted.status, Status::Fail, "{restricted:?}");
    assert!(
        restricted.detail.contains("may not call 2 action(s)")
            && restricted.detail.contains("ec2:CreateVolume")
            && restricted
                .detail
                .contains("elasticloadbalancing:CreateLoadBalancer")
            && restricted
                .detail
                .contains("instance profile's role tele-node"),
        "{restricted:?}"
    );
    let fix = restricted.fix.clone().unwrap();
    assert!(
        fix.contains(r#"{"Effect": "Allow", "Action": ["ec2:CreateVolume", "elasticloadbalancing:CreateLoadBalancer"], "Resource": "*"}"#),
        "{fix}"
    );

    // With --provision, the machines' actions are tried too (with the
    // SDKs' chain, here the same role): RunInstances is named.
    let provisioning = aws_permissions_with(
        &endpoint,
        keys["nodes-restricted"].as_str().unwrap(),
        Some(cloud::ProvisionSettings::default()),
    );
    assert_eq!(provisioning.status, Status::Fail, "{provisioning:?}");
    assert!(
        provisioning
            .detail
            .contains("may not call 1 action(s) --provision needs: ec2:RunInstances"),
        "{provisioning:?}"
    );
    // The machines get this instance's profile: AWS refuses RunInstances
    // alike when iam:PassRole of its role is what is missing, so that is
    // named too, with a statement for it.
    // (the metadata stand-in's default)
    let profile = "arn:aws:iam::123456789012:instance-profile/tele-node";
    assert!(
        provisioning.detail.contains(&format!(
            "(or iam:PassRole of the role of the machines' instance profile {profile}"
        )),
        "{provisioning:?}"
    );
    let account = profile.split(':').nth(4).unwrap();
    assert!(
        provisioning.fix.as_deref().unwrap().contains(&format!(
            r#"{{"Effect": "Allow", "Action": ["iam:PassRole"], "Resource": "arn:aws:iam::{account}:role/*"}}"#
        )),
        "{provisioning:?}"
    );
    let full_provisioning = aws_permissions_with(
        &endpoint,
        keys["nodes-full"].as_str().unwrap(),
        Some(cloud::ProvisionSettings::default()),
    );
    assert!(
        full_provisioning
            .detail
            .contains("may call all 4 actions --provision needs"),
        "{full_provisioning:?}"
    );

    // A role allowed everything passes (or, where moto gives no clear
    // answer, warns); nothing is missing.
    let full = aws_permissions(&endpoint, keys["nodes-full"].as_str().unwrap());
    assert_ne!(full.status, Status::Fail, "{full:?}");
    assert!(!full.detail.contains("may not"), "{full:?}");

    // A key AWS does not know is refused as such, not blamed on actions.
    let unknown = aws_permissions(&endpoint, "AKIAUNKNOWNKEY000000:not-a-secret");
    assert_eq!(unknown.status, Status::Fail, "{unknown:?}");
    assert!(unknown.detail.contains("are refused by ec2"), "{unknown:?}");

    // No secret shows in what preflight says.
    for r in [&restricted, &full, &unknown] {
        let said = format!("{} {}", r.detail, r.fix.clone().unwrap_or_default());
        for user in ["nodes-full", "nodes-restricted"] {
            assert!(!said.contains(&secret(user)), "{said}");
        }
        assert!(!said.contains("not-a-secret"), "{said}");
    }
}

/// The `cloud-permissions` check alone on an Azure VM (the metadata
/// stand-in, whose managed identity is `identity`), signing in as `auth`
/// at the Azure stand-in `arm`.
fn azure_access(
    arm: &str,
    identity: &str,
    auth: cloud::azure::Auth,
) -> tele_installer::preflight::CheckResult {
    azure_access_with(arm, identity, auth, None)
}

/// [`azure_access`], for an install with `provision` (`--provision`).
fn azure_access_with(
    arm: &str,
    identity: &str,
    auth: cloud::azure::Auth,
    provision: Option<cloud::ProvisionSettings>,
) -> tele_installer::preflight::CheckResult {
    let (_imds, url) = imds(&["--cloud", "azure", "--identity", identity]);
    let instance = cloud::detect(&Endpoints {
        aws: None,
        azure: Some(url.clone()),
    })
    .expect("found on Azure");
    let environment = cloud::azure::Environment {
        name: "AzureStackCloud".into(),
        resource_manager_endpoint: format!("{arm}/"),
        active_directory_endpoint: format!("{arm}/"),
        service_management_endpoint: "https://management.core.windows.net/".into(),
        rest: Default::default(),
    };
    cloud_check(
        instance,
        cloud::Settings {
            cluster_id: "shop".into(),
            imds_endpoint: Some(url),
            azure: Some(cloud::azure::Auth {
                environment: Some(environment),
                ..auth
            }),
            provision,
            ..Default::default()
        },
    )
}

/// The service principal `id` of the Azure stand-in's tenant-1.
fn azure_sp(id: &str, secret: &str) -> cloud::azure::Auth {
    cloud::azure::Auth {
        tenant_id: Some("tenant-1".into()),
        client_id: Some(id.into()),
        client_secret: Some(cloud::Secret(secret.into())),
        environment: None,
    }
}

#[test]
fn preflight_names_each_action_provisioning_on_azure_lacks() {
    use tele_installer::preflight::Status;
    let (_arm, arm) = azure_arm(&[
        "--tenant",
        "tenant-1",
        "--subscription",
        "8d10da13-8125-4ba9-a717-bf7490507b3d",
        "--resource-group",
        "shop",
        "--vm",
        "ip-10-0-1-23",
        "--client",
        "app-ops:s3cret-ops",
        "--client",
        "app-vms:s3cret-vms",
        "--client",
        "app-reader:s3cret-reader",
        "--client",
        "app-contributor:s3cret-contributor",
        "--contributor",
        "app-ops",
        // This VM has no user-assigned identity: the machines' own are
        // given their roles, which Contributor may not do.
        "--role",
        "app-ops=Microsoft.Authorization/roleAssignments/write",
        "--contributor",
        "app-contributor",
        // Virtual machines and disks, but nothing of the network.
        "--role",
        "app-vms=Microsoft.Compute/virtualMachines/*,Microsoft.Compute/disks/*",
        "--reader",
        "app-reader",
    ]);
    let provision = Some(cloud::ProvisionSettings::default());
    let ops = azure_access_with(
        &arm,
        "vm-identity",
        azure_sp("app-ops", "s3cret-ops"),
        provision.clone(),
    );
    assert_eq!(ops.status, Status::Pass, "{ops:?}");
    assert!(
        ops.detail.contains("make and delete the flavor's machines"),
        "{ops:?}"
    );
    // Contributor alone may make the machines but not give their
    // identities a role: that is named, with the role that may.
    let contributor = azure_access_with(
        &arm,
        "vm-identity",
        azure_sp("app-contributor", "s3cret-contributor"),
        provision.clone(),
    );
    assert_eq!(contributor.status, Status::Fail, "{contributor:?}");
    assert!(
        contributor
            .detail
            .ends_with("it lacks Microsoft.Authorization/roleAssignments/write")
            || contributor
                .detail
                .contains("it lacks Microsoft.Authorization/roleAssignments/write;"),
        "{contributor:?}"
    );
    assert!(
        contributor
            .fix
            .as_deref()
            .unwrap()
            .contains("User Access Administrator"),
        "{contributor:?}"
    );
    // Without --provision, a reader passes; with it, every action is named.
    let reader = azure_access(&arm, "vm-identity", azure_sp("app-reader", "s3cret-reader"));
    assert_eq!(reader.status, Status::Pass, "{reader:?}");
    let reader = azure_access_with(
        &arm,
        "vm-identity",
        azure_sp("app-reader", "s3cret-reader"),
        provision.clone(),
    );
    assert_eq!(reader.status, Status::Fail, "{reader:?}");
    for action in cloud::azure::PROVISION_ACTIONS {
        assert!(reader.detail.contains(action), "{action}: {reader:?}");
    }
    // A role for the VMs only: exactly the network's actions are missing.
    let vms = azure_access_with(
        &arm,
        "vm-identity",
        azure_sp("app-vms", "s3cret-vms"),
        provision,
    );
    assert_eq!(vms.status, Status::Fail, "{vms:?}");
    let missing = vms
        .detail
        .split("it lacks ")
        .nth(1)
        .unwrap_or_else(|| panic!("{vms:?}"));
    assert_eq!(
        missing,
        "Microsoft.Network/networkInterfaces/write, \
         Microsoft.Network/virtualNetworks/subnets/join/action, \
         Microsoft.Network/networkSecurityGroups/join/action, \
         Microsoft.Network/networkInterfaces/delete, \
         Microsoft.Authorization/roleAssignments/write"
    );
    let fix = vms.fix.as_deref().unwrap();
    assert!(
        fix.contains("Network Contributor") && fix.contains("resource group shop"),
        "{fix}"
    );
    for r in [&ops, &reader, &vms] {
        let said = format!("{} {:?}", r.detail, r.fix);
        assert!(!said.contains("s3cret"), "{said}");
    }
}

#[test]
fn preflight_checks_that_the_azure_identity_may_read_its_group_and_vm() {
    use tele_installer::preflight::Status;
    // The metadata stand-in's VM: subscription 8d10da13-..., group shop,
    // computer name ip-10-0-1-23.
    let (_arm, arm) = azure_arm(&[
        "--tenant",
        "tenant-1",
        "--subscription",
        "8d10da13-8125-4ba9-a717-bf7490507b3d",
        "--resource-group",
        "shop",
        "--vm",
        "ip-10-0-1-23",
        "--client",
        "app-reader:s3cret-reader",
        "--client",
        "app-other:s3cret-other",
        "--reader",
        "app-reader",
        "--reader",
        "vm-identity",
    ]);
    let ok = azure_access(&arm, "vm-identity", azure_sp("app-reader", "s3cret-reader"));
    assert_eq!(ok.status, Status::Pass, "{ok:?}");
    assert!(
        ok.detail
            .contains("the service principal app-reader may read the resource group shop"),
        "{ok:?}"
    );
    // The managed identity, when no service principal is given.
    let mi = azure_access(&arm, "vm-identity", cloud::azure::Auth::default());
    assert_eq!(mi.status, Status::Pass, "{mi:?}");
    assert!(mi.detail.contains("the VM's managed identity"), "{mi:?}");
    let mi = azure_access(&arm, "other-identity", cloud::azure::Auth::default());
    assert_eq!(mi.status, Status::Fail, "{mi:?}");

    // A principal without the Reader role: named, with the actions and the
    // role to assign.
    let other = azure_access(&arm, "vm-identity", azure_sp("app-other", "s3cret-other"));
    assert_eq!(other.status, Status::Fail, "{other:?}");
    assert!(
        other
            .detail
            .contains("Microsoft.Resources/subscriptions/resourceGroups/read")
            && other.detail.contains("403")
            && other.detail.contains("AuthorizationFailed"),
        "{other:?}"
    );
    assert!(
        other.fix.as_deref().unwrap().contains("Reader role")
            && other
                .fix
                .as_deref()
                .unwrap()
                .contains("resource group shop"),
        "{other:?}"
    );
    // A wrong secret: the directory's reason, and no secret in it.
    let wrong = azure_access(
        &arm,
        "vm-identity",
        azure_sp("app-reader", "not-the-secret"),
    );
    assert_eq!(wrong.status, Status::Fail, "{wrong:?}");
    assert!(wrong.detail.contains("AADSTS7000215"), "{wrong:?}");
    for r in [&ok, &other, &wrong] {
        let said = format!("{} {:?}", r.detail, r.fix);
        assert!(
            !said.contains("s3cret") && !said.contains("not-the-secret"),
            "{said}"
        );
    }
}

#[test]
fn provisioning_makes_each_machine_once_and_deprovisioning_removes_only_those() {
    use tele_installer::cloud::{api, provision};
    let (_moto, endpoint) = support::aws::moto("127.0.0.1", None);
    let made = support::aws::fixture(&[
        &endpoint,
        "eu-west-1",
        "eu-west-1a",
        "10.50.1.0/24",
        "10.50.1.10",
        "shop",
    ]);
    let first_instance = made["instance_id"].as_str().unwrap().to_string();
    let client = api::Client::new(
        "eu-west-1",
        api::Credentials::new("AKIDTEST", "not-checked-by-moto", None, "the test"),
        &[("ec2".to_string(), endpoint.clone())].into(),
    )
    .unwrap();
    let target = provision::Target {
        cluster: "shop".into(),
        image_id: "ami-12c6146b".into(),
        subnet_id: made["subnet"].as_str().unwrap().into(),
        security_groups: vec![made["security_group"].as_str().unwrap().into()],
        instance_profile_arn: Some(made["instance_profile"].as_str().unwrap().into()),
    };
    let wanted = |n: usize| -> Vec<provision::Wanted> {
        (1..=n)
            .map(|i| provision::Wanted {
                name: format!("shop-node-{i}"),
                profile: "node".into(),
                instance_type: "c5.large".into(),
            })
            .collect()
    };
    let scripts = std::sync::Mutex::new(0);
    let user_data = |profile: &str| -> anyhow::Result<String> {
        *scripts.lock().unwrap() += 1;
        Ok(format!("#!/bin/sh\necho joining as {profile}\n"))
    };
    let state = tempfile::tempdir().unwrap();
    let ids = |m: &[provision::Machine]| -> Vec<String> {
        m.iter().map(|m| m.instance_id.clone()).collect()
    };
    let run = |target: &provision::Target, n: usize| {
        provision::provision(
            &client,
            target,
            &wanted(n),
            &user_data,
            state.path(),
            &|_| {},
        )
    };

    let two = run(&target, 2).unwrap();
    assert_eq!(two.len(), 2);
    assert_ne!(two[0].instance_id, two[1].instance_id);
    assert_eq!(*scripts.lock().unwrap(), 2);
    assert_eq!(provision::recorded(state.path()).unwrap(), two);

    // Killed after the machines were made, before they were recorded: the
    // next run finds them by their tag and makes none.
    std::fs::remove_file(provision::machines_file(state.path())).unwrap();
    let again = run(&target, 2).unwrap();
    assert_eq!(ids(&again), ids(&two));
    assert_eq!(*scripts.lock().unwrap(), 2, "a machine was made twice");
    // One more wanted: only that one is made.
    let three = run(&target, 3).unwrap();
    assert_eq!(three.len(), 3);
    assert_eq!(ids(&three[..2]), ids(&two));

    let all = support::aws::fixture(&["instances", &endpoint, "eu-west-1"]);
    let ours: Vec<&serde_json::Value> = all
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| ids(&three).contains(&i["id"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(ours.len(), 3, "{all}");
    for i in &ours {
        assert_eq!(i["type"], "c5.large", "{i}");
        assert_eq!(i["subnet"], made["subnet"], "{i}");
        assert_eq!(
            i["security_groups"],
            serde_json::json!([made["security_group"]]),
            "{i}"
        );
        assert_eq!(i["tags"]["kubernetes.io/cluster/shop"], "owned", "{i}");
        assert_eq!(i["tags"]["tele.gravitational.io/profile"], "node", "{i}");
        assert_eq!(
            i["tags"]["Name"], i["tags"]["tele.gravitational.io/machine"],
            "{i}"
        );
        assert_eq!(i["user_data"], "#!/bin/sh\necho joining as node\n", "{i}");
        assert_eq!(i["instance_profile"], made["instance_profile"], "{i}");
    }

    // Deprovisioning terminates exactly what was made, also when one of
    // them is long gone from EC2 (which then refuses the whole request).
    let mut record = provision::recorded(state.path()).unwrap();
    record.push(provision::Machine {
        name: "shop-node-9".into(),
        profile: "node".into(),
        instance_id: "i-0000000000000000f".into(),
        instance_type: "c5.large".into(),
    });
    std::fs::write(
        provision::machines_file(state.path()),
        serde_json::to_vec(&record).unwrap(),
    )
    .unwrap();
    let gone = provision::deprovision(&client, state.path()).unwrap();
    assert_eq!(gone[..3], ids(&three)[..]);
    let all = support::aws::fixture(&["instances", &endpoint, "eu-west-1"]);
    for i in all.as_array().unwrap() {
        let id = i["id"].as_str().unwrap().to_string();
        let want = if id == first_instance {
            "running"
        } else {
            "terminated"
        };
        assert_eq!(i["state"], want, "{i}");
    }
    assert!(!provision::machines_file(state.path()).exists());

    // A subnet that does not exist: EC2's answer and what to do.
    let wrong = provision::Target {
        subnet_id: "subnet-00000000000000000".into(),
        ..target
    };
    let e = run(&wrong, 1).unwrap_err().to_string();
    assert!(
        e.contains("making shop-node-1 (c5.large)") && e.contains("give --subnet-id"),
        "{e}"
    );
}

#[test]
fn azure_provisioning_makes_each_vm_once_and_deprovisioning_deletes_only_those() {
    use tele_installer::cloud::{azure, azure_provision, provision};
    let subscription = "8d10da13-8125-4ba9-a717-bf7490507b3d";
    let (_arm, arm) = azure_arm(&[
        "--tenant",
        "tenant-1",
        "--subscription",
        subscription,
        "--resource-group",
        "shop",
        "--vm",
        "ip-10-0-1-23",
        "--client",
        "app-ops:s3cret-ops",
        "--contributor",
        "app-ops",
        "--role",
        "app-ops=Microsoft.Authorization/roleAssignments/write",
        "--max-vms",
        "4",
    ]);
    let (_imds, url) = imds(&["--cloud", "azure"]);
    let vm = cloud::detect(&Endpoints {
        aws: None,
        azure: Some(url.clone()),
    })
    .expect("found on Azure");
    let auth = azure::Auth {
        tenant_id: Some("tenant-1".into()),
        client_id: Some("app-ops".into()),
        client_secret: Some(cloud::Secret("s3cret-ops".into())),
        environment: Some(azure::Environment {
            name: "AzureStackCloud".into(),
            resource_manager_endpoint: format!("{arm}/"),
            active_directory_endpoint: format!("{arm}/"),
            service_management_endpoint: "https://management.core.windows.net/".into(),
            rest: Default::default(),
        }),
    };
    let client = azure_provision::Arm::new(&auth, &url).unwrap();
    // Where the machines go: this VM's subnet, NSG, image and admin user.
    let target = azure_provision::target(&client, &vm, "shop").unwrap();
    assert!(
        target
            .subnet_id
            .ends_with("/virtualNetworks/shop-vnet/subnets/nodes"),
        "{target:?}"
    );
    assert!(target
        .nsg_id
        .as_deref()
        .unwrap()
        .ends_with("/networkSecurityGroups/shop-nsg"));
    assert_eq!(target.image["publisher"], "Debian");
    assert_eq!(target.admin_username, "azureuser");

    let wanted = |n: usize, size: &str| -> Vec<provision::Wanted> {
        (1..=n)
            .map(|i| provision::Wanted {
                name: format!("shop-node-{i}"),
                profile: "node".into(),
                instance_type: size.into(),
            })
            .collect()
    };
    let scripts = std::sync::Mutex::new(0);
    let user_data = |profile: &str| -> anyhow::Result<String> {
        *scripts.lock().unwrap() += 1;
        Ok(format!("#!/bin/sh\necho joining as {profile}\n"))
    };
    let state = tempfile::tempdir().unwrap();
    let run = |n: usize, size: &str| {
        azure_provision::provision(
            &client,
            &target,
            &wanted(n, size),
            &["master"],
            &user_data,
            state.path(),
            &|_| {},
        )
    };
    let ids = |m: &[provision::Machine]| -> Vec<String> {
        m.iter().map(|m| m.instance_id.clone()).collect()
    };
    let resources = || -> Vec<serde_json::Value> {
        let o =
            ok(std::process::Command::new("curl")
                .args(["-sf", &format!("{arm}/_standin/resources")]));
        serde_json::from_str(&stdout(&o)).unwrap()
    };

    let two = run(2, "Standard_D2s_v3").unwrap();
    assert_eq!(two.len(), 2);
    assert_eq!(*scripts.lock().unwrap(), 2);
    // Killed before the record was written: nothing is made twice.
    std::fs::remove_file(provision::machines_file(state.path())).unwrap();
    let again = run(2, "Standard_D2s_v3").unwrap();
    assert_eq!(ids(&again), ids(&two));
    assert_eq!(*scripts.lock().unwrap(), 2, "a VM was made twice");
    let three = run(3, "Standard_D2s_v3").unwrap();
    assert_eq!(ids(&three[..2]), ids(&two));

    let all = resources();
    let vms: Vec<&serde_json::Value> = all
        .iter()
        .filter(|r| r["type"] == "Microsoft.Compute/virtualMachines")
        .collect();
    assert_eq!(vms.len(), 4, "{all:?}");
    for m in &three {
        let vm = vms
            .iter()
            .find(|v| v["id"] == m.instance_id.as_str())
            .unwrap();
        let p = &vm["properties"];
        assert_eq!(p["hardwareProfile"]["vmSize"], "Standard_D2s_v3", "{vm}");
        assert_eq!(vm["tags"]["tele.cluster"], "shop", "{vm}");
        assert_eq!(vm["tags"]["tele.machine"], m.name.as_str(), "{vm}");
        assert_eq!(p["osProfile"]["computerName"], m.name.as_str(), "{vm}");
        assert_eq!(p["osProfile"]["adminUsername"], "azureuser", "{vm}");
        // This VM has no user-assigned identity: each machine has its own,
        // given Reader on the group (a node; a master would get Contributor).
        assert_eq!(vm["identity"]["type"], "SystemAssigned", "{vm}");
        let principal = vm["identity"]["principalId"].as_str().unwrap();
        let roles: Vec<&str> = all
            .iter()
            .filter(|r| {
                r["type"] == "Microsoft.Authorization/roleAssignments"
                    && r["properties"]["principalId"] == principal
            })
            .map(|r| r["properties"]["roleDefinitionId"].as_str().unwrap())
            .collect();
        assert_eq!(roles.len(), 1, "{principal}: {all:?}");
        assert!(
            roles[0].ends_with("/roleDefinitions/acdd72a7-3385-48ef-bd42-f606fba81ae7"),
            "{roles:?}"
        );
        assert_eq!(p["storageProfile"]["imageReference"], target.image, "{vm}");
        assert_eq!(
            vm["customDataText"], "#!/bin/sh\necho joining as node\n",
            "{vm}"
        );
        let nic_id = p["networkProfile"]["networkInterfaces"][0]["id"]
            .as_str()
            .unwrap();
        let nic = all.iter().find(|r| r["id"] == nic_id).unwrap();
        assert_eq!(
            nic["properties"]["ipConfigurations"][0]["properties"]["subnet"]["id"],
            target.subnet_id.as_str()
        );
    }

    // Deprovisioning deletes those VMs with their NICs and disks, nothing else.
    let gone = azure_provision::deprovision(&client, state.path()).unwrap();
    assert_eq!(gone, ids(&three));
    let left: Vec<String> = resources()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect();
    assert!(
        left.iter().all(|n| !n.starts_with("shop-node-")),
        "{left:?}"
    );
    assert!(
        left.contains(&"ip-10-0-1-23".to_string())
            && left.contains(&"ip-10-0-1-23-nic".to_string()),
        "{left:?}"
    );

    // Azure's refusals, with what to do.
    let e = run(1, "Standard_Z99").unwrap_err().to_string();
    assert!(
        e.contains("SkuNotAvailable") && e.contains("another --instance-type"),
        "{e}"
    );
    let e = run(4, "Standard_D2s_v3").unwrap_err().to_string();
    assert!(
        e.contains("OperationNotAllowed") && e.contains("quota of cores"),
        "{e}"
    );
}
