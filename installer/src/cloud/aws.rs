//! AWS's instance metadata service, version 2 only: a session token first
//! (`PUT /latest/api/token` with its time to live in
//! `X-aws-ec2-metadata-token-ttl-seconds`), then each value with the token
//! in `X-aws-ec2-metadata-token`. Instances that require IMDSv2 refuse
//! anything else, and so does this client: no fallback to version 1.

use super::{body, client, Instance, Timeouts};
use crate::health::error_chain as chain;

/// The session token's life: this client asks a handful of values at once.
const TOKEN_TTL_SECS: u32 = 60;

/// A session with the metadata service: the token, then each value.
pub struct Imds {
    http: reqwest::blocking::Client,
    base: String,
    token: String,
}

impl Imds {
    /// Asks the service at `endpoint` for a session token.
    pub fn open(endpoint: &str, t: Timeouts) -> Result<Imds, String> {
        let base = endpoint.trim_end_matches('/').to_string();
        let http = client(t)?;
        let token = http
            .put(format!("{base}/latest/api/token"))
            .header("X-aws-ec2-metadata-token-ttl-seconds", TOKEN_TTL_SECS)
            .send()
            .map_err(|e| chain(&e))
            .and_then(|r| body(r, "the session token"))?;
        let token = token.trim().to_string();
        if token.is_empty() || token.len() > 4096 || token.chars().any(|c| c.is_control()) {
            return Err("the session token is not one".into());
        }
        Ok(Imds { http, base, token })
    }

    /// The text at `latest/meta-data/PATH`.
    pub fn text(&self, path: &str) -> Result<String, String> {
        self.http
            .get(format!("{}/latest/meta-data/{path}", self.base))
            .header("X-aws-ec2-metadata-token", &self.token)
            .send()
            .map_err(|e| chain(&e))
            .and_then(|r| body(r, path))
    }

    /// The single value at `latest/meta-data/PATH`.
    pub fn get(&self, path: &str) -> Result<String, String> {
        let value = self.text(path)?.trim().to_string();
        if value.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(format!("{path}: not a single value"));
        }
        Ok(value)
    }
}

/// The instance `endpoint` describes.
pub fn instance(endpoint: &str, t: Timeouts) -> Result<Instance, String> {
    let imds = Imds::open(endpoint, t)?;
    let instance = Instance {
        provider: "aws".into(),
        instance_id: imds.get("instance-id")?,
        region: imds.get("placement/region")?,
        zone: imds.get("placement/availability-zone").unwrap_or_default(),
        instance_type: imds.get("instance-type").unwrap_or_default(),
        hostname: imds.get("local-hostname")?,
        ..Instance::default()
    };
    if instance.instance_id.is_empty() || instance.region.is_empty() || instance.hostname.is_empty()
    {
        return Err("the metadata service left the instance id, region or hostname empty".into());
    }
    Ok(instance)
}

/// Where the instance is in its VPC: what machines made beside it take by
/// default.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Placement {
    /// The image it was started from.
    pub image_id: String,
    /// Its subnet.
    pub subnet_id: String,
    /// Its security groups.
    pub security_groups: Vec<String>,
    /// Its instance profile (None: it has none), which machines made
    /// beside it get too, so that their Kubernetes components have the
    /// same role.
    pub instance_profile_arn: Option<String>,
}

/// The instance's image, subnet and security groups (of its first network
/// interface).
pub fn placement(endpoint: &str) -> Result<Placement, String> {
    let imds = Imds::open(
        endpoint,
        Timeouts {
            connect: std::time::Duration::from_secs(2),
            total: std::time::Duration::from_secs(10),
        },
    )?;
    let mac = imds.get("mac")?;
    Ok(Placement {
        image_id: imds.get("ami-id")?,
        subnet_id: imds.get(&format!("network/interfaces/macs/{mac}/subnet-id"))?,
        security_groups: imds
            .text(&format!("network/interfaces/macs/{mac}/security-group-ids"))?
            .split_whitespace()
            .map(String::from)
            .collect(),
        instance_profile_arn: imds
            .text("iam/info")
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v["InstanceProfileArn"].as_str().map(String::from)),
    })
}

/// The AWS services whose endpoints the Kubernetes AWS provider may be
/// pointed elsewhere for (VPC endpoints, or a test's stand-in): the SDKs'
/// `AWS_ENDPOINT_URL_<SERVICE>` variable, then `AWS_ENDPOINT_URL`, and the
/// provider's name for the service.
const SERVICES: [(&str, &str); 3] = [
    ("AWS_ENDPOINT_URL_EC2", "ec2"),
    (
        "AWS_ENDPOINT_URL_ELASTIC_LOAD_BALANCING",
        "elasticloadbalancing",
    ),
    ("AWS_ENDPOINT_URL_AUTO_SCALING", "autoscaling"),
];

/// Endpoint overrides from the environment, by the provider's service name.
pub fn endpoint_overrides(
    var: impl Fn(&str) -> Option<String>,
) -> std::collections::BTreeMap<String, String> {
    let all = var("AWS_ENDPOINT_URL");
    SERVICES
        .iter()
        .filter_map(|(env, service)| {
            var(env)
                .or_else(|| all.clone())
                .map(|url| (service.to_string(), url))
        })
        .collect()
}

/// The Kubernetes AWS provider's cloud config (gcfg): the zone (so the
/// provider need not ask), the cluster's id (the `kubernetes.io/cluster/ID`
/// tag of what it may use and makes), and any endpoint overrides.
pub fn cloud_config(
    instance: &Instance,
    cluster: &str,
    overrides: &std::collections::BTreeMap<String, String>,
) -> String {
    let mut text = format!(
        "# Written by tele: the Kubernetes AWS provider's settings (no credentials).\n[Global]\nZone = {}\nKubernetesClusterID = {cluster}\n",
        instance.zone
    );
    for (n, (service, url)) in overrides.iter().enumerate() {
        text.push_str(&format!(
            "\n[ServiceOverride \"{}\"]\nService = {service}\nRegion = {region}\nURL = {url}\nSigningRegion = {region}\n",
            n + 1,
            region = instance.region
        ));
    }
    text
}

/// The StorageClass of the AWS provider's EBS volumes, beside the default
/// local one: a claim that names it gets an EBS volume in the zone of the
/// node its pod lands on.
pub const EBS_STORAGE_CLASS: &str = "apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: aws-ebs
  labels: {app.kubernetes.io/managed-by: tele}
provisioner: kubernetes.io/aws-ebs
parameters:
  type: gp2
reclaimPolicy: Delete
volumeBindingMode: WaitForFirstConsumer
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cloud_config_names_the_cluster_and_each_endpoint_override() {
        let env = |name: &str| match name {
            "AWS_ENDPOINT_URL" => Some("http://10.0.0.1:5000".to_string()),
            "AWS_ENDPOINT_URL_EC2" => Some("https://ec2.vpce.example".to_string()),
            _ => None,
        };
        let overrides = endpoint_overrides(env);
        assert_eq!(overrides["ec2"], "https://ec2.vpce.example");
        assert_eq!(overrides["elasticloadbalancing"], "http://10.0.0.1:5000");
        let instance = Instance {
            provider: "aws".into(),
            region: "eu-west-1".into(),
            zone: "eu-west-1b".into(),
            ..Instance::default()
        };
        let text = cloud_config(&instance, "shop", &overrides);
        assert!(
            text.contains("[Global]\nZone = eu-west-1b\nKubernetesClusterID = shop\n"),
            "{text}"
        );
        assert!(text.contains("Service = ec2\nRegion = eu-west-1\nURL = https://ec2.vpce.example\nSigningRegion = eu-west-1\n"), "{text}");
        assert_eq!(text.matches("[ServiceOverride").count(), 3, "{text}");
        assert!(endpoint_overrides(|_| None).is_empty());
        assert!(!cloud_config(&instance, "shop", &Default::default()).contains("ServiceOverride"));
    }
}
