//! Which AWS actions the node's credentials may call: each action the
//! Kubernetes 1.20 AWS provider calls with tele's settings (instances,
//! security groups, EBS volumes, classic load balancers; no routes, tele's
//! pod network routes itself) is tried in a way that changes nothing. EC2
//! actions are called with `DryRun` (the answer `DryRunOperation` means
//! allowed); ELB actions, which have no dry run, on a load balancer that
//! does not exist, and `CreateLoadBalancer` with no listener and a subnet
//! that does not exist, so that it cannot succeed. An access-denied answer
//! names an action missing from the credentials' policy; any other answer
//! from the API means the request got past authorization.

use super::api::{CallError, Client, Service};
use super::Instance;

/// Names no load balancer, volume, security group or subnet has: the
/// probes of actions on such things act on nothing.
const ABSENT_LB: &str = "tele-preflight-absent";
const ABSENT_VOLUME: &str = "vol-0000000000000000f";
const ABSENT_GROUP: &str = "sg-0000000000000000f";
const ABSENT_SUBNET: &str = "subnet-0000000000000000f";
const ABSENT_INSTANCE: &str = "i-0000000000000000f";

/// An action and the parameters of its harmless call.
type Probe = (
    Service,
    &'static str,
    &'static [(&'static str, &'static str)],
);

/// The actions, each with the parameters of its harmless call. `{instance}`
/// and `{zone}` are the node's own.
const NEEDED: &[Probe] = &[
    (
        Service::Ec2,
        "DescribeInstances",
        &[("InstanceId.1", "{instance}")],
    ),
    (Service::Ec2, "DescribeRegions", &[]),
    (Service::Ec2, "DescribeRouteTables", &[]),
    (Service::Ec2, "DescribeSecurityGroups", &[]),
    (Service::Ec2, "DescribeSubnets", &[]),
    (Service::Ec2, "DescribeVpcs", &[]),
    (Service::Ec2, "DescribeVolumes", &[]),
    (
        Service::Ec2,
        "CreateSecurityGroup",
        &[
            ("GroupName", "tele-preflight"),
            ("GroupDescription", "tele preflight"),
        ],
    ),
    (
        Service::Ec2,
        "DeleteSecurityGroup",
        &[("GroupId", ABSENT_GROUP)],
    ),
    (
        Service::Ec2,
        "AuthorizeSecurityGroupIngress",
        &[("GroupId", ABSENT_GROUP)],
    ),
    (
        Service::Ec2,
        "RevokeSecurityGroupIngress",
        &[("GroupId", ABSENT_GROUP)],
    ),
    (
        Service::Ec2,
        "CreateTags",
        &[
            ("ResourceId.1", "{instance}"),
            ("Tag.1.Key", "tele-preflight"),
            ("Tag.1.Value", "dry-run"),
        ],
    ),
    (
        Service::Ec2,
        "CreateVolume",
        &[("AvailabilityZone", "{zone}"), ("Size", "1")],
    ),
    (
        Service::Ec2,
        "AttachVolume",
        &[
            ("VolumeId", ABSENT_VOLUME),
            ("InstanceId", "{instance}"),
            ("Device", "/dev/xvdz"),
        ],
    ),
    (Service::Ec2, "DetachVolume", &[("VolumeId", ABSENT_VOLUME)]),
    (Service::Ec2, "DeleteVolume", &[("VolumeId", ABSENT_VOLUME)]),
    (
        Service::Ec2,
        "ModifyVolume",
        &[("VolumeId", ABSENT_VOLUME), ("Size", "2")],
    ),
    (
        Service::Elb,
        "DescribeLoadBalancers",
        &[("LoadBalancerNames.member.1", ABSENT_LB)],
    ),
    (
        Service::Elb,
        "DescribeLoadBalancerAttributes",
        &[("LoadBalancerName", ABSENT_LB)],
    ),
    (
        Service::Elb,
        "CreateLoadBalancer",
        &[
            ("LoadBalancerName", ABSENT_LB),
            ("Subnets.member.1", ABSENT_SUBNET),
        ],
    ),
    (
        Service::Elb,
        "DeleteLoadBalancer",
        &[("LoadBalancerName", ABSENT_LB)],
    ),
    (
        Service::Elb,
        "AddTags",
        &[
            ("LoadBalancerNames.member.1", ABSENT_LB),
            ("Tags.member.1.Key", "tele-preflight"),
            ("Tags.member.1.Value", "dry-run"),
        ],
    ),
    (
        Service::Elb,
        "ApplySecurityGroupsToLoadBalancer",
        &[
            ("LoadBalancerName", ABSENT_LB),
            ("SecurityGroups.member.1", ABSENT_GROUP),
        ],
    ),
    (
        Service::Elb,
        "AttachLoadBalancerToSubnets",
        &[
            ("LoadBalancerName", ABSENT_LB),
            ("Subnets.member.1", ABSENT_SUBNET),
        ],
    ),
    (
        Service::Elb,
        "DetachLoadBalancerFromSubnets",
        &[
            ("LoadBalancerName", ABSENT_LB),
            ("Subnets.member.1", ABSENT_SUBNET),
        ],
    ),
    (
        Service::Elb,
        "ConfigureHealthCheck",
        &[
            ("LoadBalancerName", ABSENT_LB),
            ("HealthCheck.Target", "TCP:1"),
            ("HealthCheck.Interval", "10"),
            ("HealthCheck.Timeout", "5"),
            ("HealthCheck.UnhealthyThreshold", "2"),
            ("HealthCheck.HealthyThreshold", "2"),
        ],
    ),
    (
        Service::Elb,
        "CreateLoadBalancerListeners",
        &[
            ("LoadBalancerName", ABSENT_LB),
            ("Listeners.member.1.Protocol", "TCP"),
            ("Listeners.member.1.LoadBalancerPort", "1"),
            ("Listeners.member.1.InstancePort", "1"),
        ],
    ),
    (
        Service::Elb,
        "DeleteLoadBalancerListeners",
        &[
            ("LoadBalancerName", ABSENT_LB),
            ("LoadBalancerPorts.member.1", "1"),
        ],
    ),
    (
        Service::Elb,
        "ModifyLoadBalancerAttributes",
        &[
            ("LoadBalancerName", ABSENT_LB),
            (
                "LoadBalancerAttributes.CrossZoneLoadBalancing.Enabled",
                "false",
            ),
        ],
    ),
    (
        Service::Elb,
        "RegisterInstancesWithLoadBalancer",
        &[
            ("LoadBalancerName", ABSENT_LB),
            ("Instances.member.1.InstanceId", ABSENT_INSTANCE),
        ],
    ),
    (
        Service::Elb,
        "DeregisterInstancesFromLoadBalancer",
        &[
            ("LoadBalancerName", ABSENT_LB),
            ("Instances.member.1.InstanceId", ABSENT_INSTANCE),
        ],
    ),
];

/// Answers that mean the credentials are not allowed the action.
const DENIED: &[&str] = &[
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "UnauthorizedAccess",
];

/// Answers that mean the credentials themselves are refused.
const REFUSED: &[&str] = &[
    "AuthFailure",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "RequestExpired",
    "InvalidAccessKeyId",
];

/// What the probes found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// `service:Action` of each action the credentials may call.
    pub allowed: Vec<String>,
    /// `service:Action` of each action refused to them.
    pub missing: Vec<String>,
    /// Actions whose probe got no clear answer, with the answer.
    pub unknown: Vec<(String, String)>,
    /// When `RunInstances` was refused for machines that get an instance
    /// profile (its ARN here): AWS refuses it alike when `iam:PassRole` of
    /// that profile's role is what is missing, and does not say which.
    pub pass_role: Option<String>,
}

impl Report {
    /// The actions without a clear answer, grouped by the answer.
    pub fn unclear(&self) -> String {
        let mut by_answer: Vec<(&str, Vec<&str>)> = Vec::new();
        for (action, answer) in &self.unknown {
            match by_answer.iter_mut().find(|(a, _)| a == answer) {
                Some((_, actions)) => actions.push(action),
                None => by_answer.push((answer, vec![action])),
            }
        }
        by_answer
            .iter()
            .map(|(answer, actions)| format!("{} ({answer})", actions.join(", ")))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// The IAM policy statement that grants the missing actions.
    pub fn statement(&self) -> String {
        let actions = self
            .missing
            .iter()
            .map(|a| format!("\"{a}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let mut statement =
            format!("{{\"Effect\": \"Allow\", \"Action\": [{actions}], \"Resource\": \"*\"}}");
        if let Some(account) = self
            .pass_role
            .as_deref()
            .and_then(|arn| arn.split(':').nth(4))
        {
            statement.push_str(&format!(
                ", {{\"Effect\": \"Allow\", \"Action\": [\"iam:PassRole\"], \"Resource\": \"arn:aws:iam::{account}:role/*\"}}"
            ));
        }
        statement
    }

    /// What the missing actions are, for the check's detail: the actions,
    /// and `iam:PassRole` as the other possible cause of a refused
    /// `RunInstances`.
    pub fn missing_text(&self) -> String {
        let mut text = self.missing.join(", ");
        if let Some(arn) = &self.pass_role {
            text.push_str(&format!(
                " (or iam:PassRole of the role of the machines' instance profile {arn}: AWS refuses RunInstances alike for either)"
            ));
        }
        text
    }
}

/// Tries every action the provider needs, for the node `instance`.
/// `Err` when the credentials themselves are refused or the APIs do not
/// answer at all.
pub fn check(client: &Client, instance: &Instance) -> Result<Report, String> {
    let probes = NEEDED
        .iter()
        .map(|(service, action, params)| {
            let params = params
                .iter()
                .map(|(k, v)| {
                    let v = v
                        .replace("{instance}", &instance.instance_id)
                        .replace("{zone}", &instance.zone);
                    (k.to_string(), v)
                })
                .collect();
            (*service, *action, params)
        })
        .collect();
    probe(client, probes)
}

/// Tries the actions `--provision` calls, with its credentials `client`:
/// `RunInstances` with `DryRun` and a machine's own parameters (so AWS also
/// checks `iam:PassRole` of the instance profile the machines get),
/// `TerminateInstances` of an instance that does not exist,
/// `DescribeInstances` and `CreateTags`.
pub fn check_provisioning(
    client: &Client,
    target: &super::provision::Target,
    instance_type: &str,
    instance: &Instance,
) -> Result<Report, String> {
    let own = |k: &str, v: &str| (k.to_string(), v.to_string());
    let mut report = probe(
        client,
        vec![
            (
                Service::Ec2,
                "RunInstances",
                target.run_params(instance_type),
            ),
            (
                Service::Ec2,
                "TerminateInstances",
                vec![own("InstanceId.1", ABSENT_INSTANCE)],
            ),
            (
                Service::Ec2,
                "DescribeInstances",
                vec![own("InstanceId.1", &instance.instance_id)],
            ),
            (
                Service::Ec2,
                "CreateTags",
                vec![
                    own("ResourceId.1", &instance.instance_id),
                    own("Tag.1.Key", "tele-preflight"),
                    own("Tag.1.Value", "dry-run"),
                ],
            ),
        ],
    )?;
    if report.missing.iter().any(|a| a == "ec2:RunInstances") {
        report.pass_role = target.instance_profile_arn.clone();
    }
    Ok(report)
}

/// An action and the parameters of its harmless call, made for one node.
type OwnedProbe = (Service, &'static str, Vec<(String, String)>);

/// Calls each probe (EC2's with `DryRun`) and sorts the actions by the
/// answers.
fn probe(client: &Client, probes: Vec<OwnedProbe>) -> Result<Report, String> {
    let mut report = Report::default();
    for (service, action, mut params) in probes {
        if service == Service::Ec2 {
            params.push(("DryRun".into(), "true".into()));
        }
        let params: Vec<(&str, &str)> = params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let name = format!("{}:{action}", service.signing_name());
        match client.call(service, action, &params) {
            Ok(_) => report.allowed.push(name),
            Err(CallError::Api { code, .. }) if DENIED.contains(&code.as_str()) => {
                report.missing.push(name)
            }
            Err(e @ CallError::Api { .. }) if REFUSED.contains(&e.code().unwrap_or("")) => {
                return Err(format!(
                    "the credentials from {} are refused by {} at {}: {e}",
                    client.credentials_source(),
                    service.signing_name(),
                    client.endpoint(service)
                ));
            }
            Err(CallError::Api { status, .. }) if status < 500 => report.allowed.push(name),
            Err(e @ CallError::Api { .. }) => report.unknown.push((name, e.to_string())),
            Err(CallError::Transport(e)) => {
                return Err(format!(
                    "{} does not answer at {}: {e}",
                    service.signing_name(),
                    client.endpoint(service)
                ))
            }
        }
    }
    Ok(report)
}
