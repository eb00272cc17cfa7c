//! Where am I: the installer recognises AWS and Azure machines by their
//! instance metadata services, here the project's stand-ins
//! (tests/support/imds.py: IMDSv2 with its token and TTL header, Azure's
//! `Metadata: true` and `api-version`), falls back to onprem when neither
//! answers, takes `--cloud-provider` as given, and refuses a provider the
//! app's manifest disables.

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
