//! Making the other machines of a flavor on AWS (`./install --provision`):
//! from the first node, one EC2 instance per node of the flavor beyond this
//! one, of its profile's instance type, in this instance's subnet with its
//! security groups and image unless told otherwise, tagged for the cluster,
//! each with a start-up script (user data) that fetches tele from this node
//! over TLS with the cluster CA pinned and joins with a token of its
//! profile.
//!
//! Each machine has a name (`CLUSTER-PROFILE-N`) carried as a tag and in
//! the request's `ClientToken`: before it is made, EC2 is asked for a live
//! instance with that tag, so running the phase again (`--resume` after a
//! kill) neither loses nor makes twice a machine. What was made is recorded
//! in `STATE_DIR/cloud/machines.json` (written whole, durably) after each
//! machine, and `tele uninstall --deprovision` terminates exactly those.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::api::{texts, CallError, Client, Service};

/// The tag that names a machine tele made.
pub const MACHINE_TAG: &str = "tele.gravitational.io/machine";
/// The tag that names the node profile of a machine tele made.
pub const PROFILE_TAG: &str = "tele.gravitational.io/profile";

/// A machine tele made.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Machine {
    /// `CLUSTER-PROFILE-N`.
    pub name: String,
    /// Its node profile.
    pub profile: String,
    /// The EC2 instance.
    pub instance_id: String,
    /// Its instance type.
    pub instance_type: String,
}

/// A machine to make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wanted {
    /// `CLUSTER-PROFILE-N`.
    pub name: String,
    /// Its node profile.
    pub profile: String,
    /// Its instance type.
    pub instance_type: String,
}

/// The machines a flavor needs beyond this one (which is one of
/// `first_profile`): each profile's count, its instance type (VM size on
/// Azure) from `overrides` (`--instance-type PROFILE=TYPE`), else on AWS
/// the profile's `providers.aws.instanceTypes`. `Err` names a profile
/// without one.
pub fn wanted(
    cluster: &str,
    flavor: &tele_manifests::Flavor,
    profiles: &[tele_manifests::NodeProfile],
    first_profile: &str,
    overrides: &BTreeMap<String, String>,
    provider: &str,
) -> Result<Vec<Wanted>, String> {
    let mut out = Vec::new();
    for nodes in &flavor.nodes {
        let count = nodes.count as usize - usize::from(nodes.profile == first_profile);
        if count == 0 {
            continue;
        }
        let instance_type = overrides
            .get(&nodes.profile)
            .cloned()
            .or_else(|| {
                profiles
                    .iter()
                    .find(|p| p.name == nodes.profile && provider == "aws")
                    .and_then(|p| p.aws_instance_types.first().cloned())
            })
            .ok_or_else(|| match provider {
                "aws" => format!(
                    "the node profile `{}` names no instance type (providers.aws.instanceTypes): give --instance-type {}=TYPE",
                    nodes.profile, nodes.profile
                ),
                _ => format!(
                    "give the VM size of the node profile `{}`: --instance-type {}=SIZE",
                    nodes.profile, nodes.profile
                ),
            })?;
        for n in 1..=count {
            out.push(Wanted {
                name: format!("{cluster}-{}-{n}", nodes.profile),
                profile: nodes.profile.clone(),
                instance_type: instance_type.clone(),
            });
        }
    }
    Ok(out)
}

/// Where the machines go and what they start from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Target {
    /// The cluster's id (`kubernetes.io/cluster/ID`).
    pub cluster: String,
    /// The image.
    pub image_id: String,
    /// The subnet.
    pub subnet_id: String,
    /// The security groups.
    pub security_groups: Vec<String>,
    /// The instance profile (this instance's, by default).
    pub instance_profile_arn: Option<String>,
}

impl Target {
    /// The RunInstances parameters of a machine of `instance_type`.
    pub fn run_params(&self, instance_type: &str) -> Vec<(String, String)> {
        let mut params: Vec<(String, String)> = vec![
            ("ImageId".into(), self.image_id.clone()),
            ("InstanceType".into(), instance_type.to_string()),
            ("MinCount".into(), "1".into()),
            ("MaxCount".into(), "1".into()),
            ("SubnetId".into(), self.subnet_id.clone()),
            ("MetadataOptions.HttpTokens".into(), "required".into()),
        ];
        for (n, sg) in self.security_groups.iter().enumerate() {
            params.push((format!("SecurityGroupId.{}", n + 1), sg.clone()));
        }
        if let Some(arn) = &self.instance_profile_arn {
            params.push(("IamInstanceProfile.Arn".into(), arn.clone()));
        }
        params
    }
}

/// The record of what was made.
pub fn machines_file(state_root: &Path) -> PathBuf {
    state_root.join("cloud").join("machines.json")
}

/// What the record holds (nothing when there is none).
pub fn recorded(state_root: &Path) -> anyhow::Result<Vec<Machine>> {
    match std::fs::read(machines_file(state_root)) {
        Ok(bytes) => Ok(serde_json::from_slice(&bytes)?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}

/// Records `machines` (the whole list, durably).
pub(crate) fn record(state_root: &Path, machines: &[Machine]) -> anyhow::Result<()> {
    let file = machines_file(state_root);
    std::fs::create_dir_all(file.parent().expect("a parent"))?;
    crate::durable::write_durably(&file, &serde_json::to_vec_pretty(machines)?, 0o600)?;
    Ok(())
}

/// Makes each machine of `wanted` that does not exist yet, with the
/// start-up script `user_data(profile)`; `progress` hears of each. The
/// machines, made now or before.
pub fn provision(
    client: &Client,
    target: &Target,
    wanted: &[Wanted],
    user_data: &dyn Fn(&str) -> anyhow::Result<String>,
    state_root: &Path,
    progress: &dyn Fn(&str),
) -> anyhow::Result<Vec<Machine>> {
    let mut machines = recorded(state_root)?;
    for w in wanted {
        if let Some(m) = live_machine(client, &w.name)? {
            if !machines.iter().any(|r| r.instance_id == m.instance_id) {
                machines.push(m.clone());
                record(state_root, &machines)?;
            }
            progress(&format!("{} is {} (made before)", w.name, m.instance_id));
            continue;
        }
        let script = user_data(&w.profile)?;
        let made = run_instance(client, target, w, &script).map_err(|e| {
            anyhow::anyhow!("making {} ({}): {}", w.name, w.instance_type, explain(&e))
        })?;
        progress(&format!(
            "{} is {} ({})",
            w.name, made.instance_id, w.instance_type
        ));
        machines.push(made);
        record(state_root, &machines)?;
    }
    Ok(machines)
}

/// The live instance tagged as machine `name`, if there is one.
fn live_machine(client: &Client, name: &str) -> anyhow::Result<Option<Machine>> {
    let xml = client
        .call(
            Service::Ec2,
            "DescribeInstances",
            &[
                ("Filter.1.Name", &format!("tag:{MACHINE_TAG}")),
                ("Filter.1.Value.1", name),
                ("Filter.2.Name", "instance-state-name"),
                ("Filter.2.Value.1", "pending"),
                ("Filter.2.Value.2", "running"),
                ("Filter.2.Value.3", "stopping"),
                ("Filter.2.Value.4", "stopped"),
            ],
        )
        .map_err(|e| anyhow::anyhow!("looking for {name}: {}", explain(&e)))?;
    Ok(instances(&xml)
        .into_iter()
        .next()
        .map(|(id, instance_type, profile)| Machine {
            name: name.to_string(),
            profile,
            instance_id: id,
            instance_type,
        }))
}

/// Each instance of a DescribeInstances or RunInstances answer: its id,
/// type and profile tag.
fn instances(xml: &str) -> Vec<(String, String, String)> {
    let Ok(doc) = roxmltree::Document::parse(xml) else {
        return Vec::new();
    };
    doc.descendants()
        .filter(|n| {
            n.tag_name().name() == "item"
                && n.children().any(|c| c.tag_name().name() == "instanceId")
        })
        .map(|item| {
            let child = |tag: &str| {
                item.children()
                    .find(|c| c.tag_name().name() == tag)
                    .and_then(|c| c.text())
                    .unwrap_or_default()
                    .trim()
                    .to_string()
            };
            let profile = item
                .descendants()
                .filter(|n| n.tag_name().name() == "item")
                .find(|t| {
                    t.children()
                        .any(|c| c.tag_name().name() == "key" && c.text() == Some(PROFILE_TAG))
                })
                .and_then(|t| t.children().find(|c| c.tag_name().name() == "value"))
                .and_then(|v| v.text())
                .unwrap_or_default()
                .to_string();
            (child("instanceId"), child("instanceType"), profile)
        })
        .collect()
}

fn run_instance(
    client: &Client,
    target: &Target,
    w: &Wanted,
    script: &str,
) -> Result<Machine, CallError> {
    use base64::Engine as _;
    let user_data = base64::engine::general_purpose::STANDARD.encode(script);
    // AWS returns the same instance for the same token (on a retry after
    // an answer was lost); it must be unique per cluster and machine.
    let client_token =
        crate::token::sha256_hex(&format!("{}/{}", target.cluster, w.name))[..64].to_string();
    let cluster_tag = format!("kubernetes.io/cluster/{}", target.cluster);
    let mut params = target.run_params(&w.instance_type);
    params.push(("UserData".into(), user_data));
    params.push(("ClientToken".into(), client_token));
    for (resource, spec) in [("instance", 1), ("volume", 2)] {
        params.push((
            format!("TagSpecification.{spec}.ResourceType"),
            resource.into(),
        ));
        for (n, (k, v)) in [
            ("Name", w.name.as_str()),
            (cluster_tag.as_str(), "owned"),
            (MACHINE_TAG, w.name.as_str()),
            (PROFILE_TAG, w.profile.as_str()),
        ]
        .into_iter()
        .enumerate()
        {
            params.push((
                format!("TagSpecification.{spec}.Tag.{}.Key", n + 1),
                k.into(),
            ));
            params.push((
                format!("TagSpecification.{spec}.Tag.{}.Value", n + 1),
                v.into(),
            ));
        }
    }
    let params: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let xml = client.call(Service::Ec2, "RunInstances", &params)?;
    let id = texts(&xml, "instanceId")
        .into_iter()
        .next()
        .unwrap_or_default();
    if id.is_empty() {
        return Err(CallError::Transport(
            "RunInstances named no instance".into(),
        ));
    }
    Ok(Machine {
        name: w.name.clone(),
        profile: w.profile.clone(),
        instance_id: id,
        instance_type: w.instance_type.clone(),
    })
}

/// Terminates the machines the record names, and only those; the record
/// goes once EC2 has taken them all. The instances terminated.
pub fn deprovision(client: &Client, state_root: &Path) -> anyhow::Result<Vec<String>> {
    let machines = recorded(state_root)?;
    if machines.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<String> = machines.iter().map(|m| m.instance_id.clone()).collect();
    let names: Vec<String> = (1..=ids.len()).map(|n| format!("InstanceId.{n}")).collect();
    let params: Vec<(&str, &str)> = names
        .iter()
        .zip(&ids)
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let gone = |e: &CallError| e.code() == Some("InvalidInstanceID.NotFound");
    match client.call(Service::Ec2, "TerminateInstances", &params) {
        Ok(_) => {}
        // One is gone already (EC2 then terminates none): each alone, the
        // gone ones skipped.
        Err(e) if gone(&e) => {
            for id in &ids {
                match client.call(Service::Ec2, "TerminateInstances", &[("InstanceId.1", id)]) {
                    Err(e) if !gone(&e) => {
                        anyhow::bail!("terminating {id}: {}", explain(&e))
                    }
                    _ => {}
                }
            }
        }
        Err(e) => anyhow::bail!("terminating {}: {}", ids.join(", "), explain(&e)),
    }
    std::fs::remove_file(machines_file(state_root))?;
    Ok(ids)
}

/// `tele uninstall --deprovision`: the machines the install at
/// `state_root` made are terminated, with the credentials the install had
/// (the SDKs' chain, else the instance profile). The instances terminated.
pub fn deprovision_node(state_root: &Path) -> anyhow::Result<Vec<String>> {
    if recorded(state_root)?.is_empty() {
        return Ok(Vec::new());
    }
    let state = crate::state_dir::StateDir::new(state_root);
    let cfg = crate::node::NodeConfig::load(&state)?;
    let (Some(instance), Some(settings)) = (&cfg.cloud, &cfg.cloud_settings) else {
        anyhow::bail!(
            "{} records machines but the node is not on a cloud",
            machines_file(state_root).display()
        );
    };
    let imds = settings
        .imds_endpoint
        .clone()
        .unwrap_or_else(|| super::LINK_LOCAL.to_string());
    if instance.provider == "azure" {
        let auth = settings.azure.clone().unwrap_or_default();
        let arm = super::azure_provision::Arm::new(&auth, &imds).map_err(anyhow::Error::msg)?;
        return super::azure_provision::deprovision(&arm, state_root);
    }
    let var = |n: &str| std::env::var(n).ok().filter(|v| !v.trim().is_empty());
    let credentials =
        super::api::Credentials::from_chain(&var, Some(&imds)).map_err(|e| anyhow::anyhow!(e))?;
    let client = Client::new(&instance.region, credentials, &settings.endpoints)
        .map_err(|e| anyhow::anyhow!(e))?;
    deprovision(&client, state_root)
}

/// An EC2 error in words an admin can act on.
pub fn explain(e: &CallError) -> String {
    let what = match e.code() {
        Some("InstanceLimitExceeded" | "VcpuLimitExceeded") => {
            "the account's quota of instances or vCPUs in this region is used up: ask AWS for more (Service Quotas), or choose a smaller flavor or instance type"
        }
        Some("InsufficientInstanceCapacity") => {
            "AWS has no capacity for this instance type in this zone now: try again later, or give another --instance-type"
        }
        Some("InvalidSubnetID.NotFound" | "InvalidSubnet") => {
            "the subnet does not exist in this region: give --subnet-id of a subnet in this instance's VPC"
        }
        Some("InvalidGroup.NotFound") => {
            "a security group does not exist: give --security-group-id of one in this instance's VPC"
        }
        Some("InvalidAMIID.NotFound" | "InvalidAMIID.Malformed") => {
            "the image does not exist in this region: give --image-id"
        }
        Some("UnauthorizedOperation" | "AccessDenied") => {
            "the credentials may not: grant ec2:RunInstances, ec2:CreateTags, ec2:DescribeInstances and ec2:TerminateInstances"
        }
        _ => "",
    };
    if what.is_empty() {
        e.to_string()
    } else {
        format!("{e}; {what}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flavor_wants_its_machines_beyond_this_one_with_their_types() {
        let flavor = tele_manifests::Flavor {
            name: "ha".into(),
            description: None,
            nodes: vec![
                tele_manifests::FlavorNodes {
                    profile: "master".into(),
                    count: 3,
                },
                tele_manifests::FlavorNodes {
                    profile: "node".into(),
                    count: 2,
                },
            ],
        };
        let profiles = vec![
            tele_manifests::NodeProfile {
                name: "master".into(),
                aws_instance_types: vec!["m5.xlarge".into(), "m5.2xlarge".into()],
                ..Default::default()
            },
            tele_manifests::NodeProfile {
                name: "node".into(),
                ..Default::default()
            },
        ];
        let e = wanted(
            "shop",
            &flavor,
            &profiles,
            "master",
            &BTreeMap::new(),
            "aws",
        )
        .unwrap_err();
        assert!(e.contains("--instance-type node=TYPE"), "{e}");
        let overrides = BTreeMap::from([("node".to_string(), "c5.large".to_string())]);
        let w = wanted("shop", &flavor, &profiles, "master", &overrides, "aws").unwrap();
        // Azure has no sizes in the manifest: each must be given.
        let e = wanted("shop", &flavor, &profiles, "master", &overrides, "azure").unwrap_err();
        assert!(e.contains("--instance-type master=SIZE"), "{e}");
        let names: Vec<_> = w
            .iter()
            .map(|w| format!("{} {}", w.name, w.instance_type))
            .collect();
        assert_eq!(
            names,
            [
                "shop-master-1 m5.xlarge",
                "shop-master-2 m5.xlarge",
                "shop-node-1 c5.large",
                "shop-node-2 c5.large"
            ]
        );
    }
}
