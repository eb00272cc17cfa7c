//! The wizard's AWS card: whether the keys an admin types work from this
//! machine (an EC2 instance in the target VPC), may make the flavor's other
//! machines, and which VPCs and subnets they see. A problem is reported on
//! the form field it concerns, with what to do (for a missing permission:
//! the actions, and the IAM statement that grants them).

use serde::Deserialize;

use crate::cloud::api::{self, CallError, Credentials, Service};
use crate::cloud::{
    aws, aws_permissions, Endpoints, ProvisionSettings, Secret, Settings, Timeouts,
};

/// The keys as the page posts them; the secret is never serialized or shown.
#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Keys {
    /// The access key's ID.
    #[serde(default)]
    pub access_key_id: String,
    /// The secret access key.
    #[serde(default, deserialize_with = "secret")]
    pub secret_access_key: Secret,
    /// The region (default: this instance's).
    #[serde(default)]
    pub region: Option<String>,
}

fn secret<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
    String::deserialize(d).map(Secret)
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &self.secret_access_key)
            .field("region", &self.region)
            .finish()
    }
}

impl Keys {
    /// The keys as credentials for the AWS APIs.
    pub fn credentials(&self) -> Credentials {
        Credentials::new(
            self.access_key_id.trim(),
            self.secret_access_key.0.trim(),
            None,
            "the keys given in the install wizard",
        )
    }
}

/// A problem, on the field it concerns: `accessKeyId`, `secretAccessKey`,
/// `region` or `provider`.
pub type Problem = (&'static str, String);

/// How long the metadata service may take here (the admin waits on it).
const IMDS: Timeouts = Timeouts {
    connect: std::time::Duration::from_secs(1),
    total: std::time::Duration::from_secs(3),
};

/// The items of `<SET><item>...</item></SET>` in an EC2 answer, each with
/// the texts of `fields` (its direct children; "" when absent).
fn items(xml: &str, set: &str, fields: &[&str]) -> Vec<Vec<String>> {
    let Ok(doc) = roxmltree::Document::parse(xml) else {
        return Vec::new();
    };
    doc.descendants()
        .filter(|n| n.tag_name().name() == set)
        .flat_map(|s| s.children().filter(|c| c.tag_name().name() == "item"))
        .map(|item| {
            fields
                .iter()
                .map(|f| {
                    item.children()
                        .find(|c| c.tag_name().name() == *f)
                        .and_then(|c| c.text())
                        .unwrap_or("")
                        .trim()
                        .to_string()
                })
                .collect()
        })
        .collect()
}

/// What a refused call says about the keys, on the field it concerns.
fn refused(action: &str, e: CallError) -> Problem {
    match e.code() {
        // EC2 says AuthFailure for an unknown key and a wrong secret alike.
        Some("AuthFailure") => (
            "accessKeyId",
            "AWS did not accept these keys: check the access key ID and its secret".into(),
        ),
        Some("InvalidClientTokenId" | "UnrecognizedClientException") => (
            "accessKeyId",
            "AWS does not know this access key ID (or it is not active): check it in the IAM console".into(),
        ),
        Some("SignatureDoesNotMatch" | "IncompleteSignature") => (
            "secretAccessKey",
            "the secret access key does not belong to this access key ID".into(),
        ),
        Some("UnauthorizedOperation" | "AccessDenied" | "AccessDeniedException") => (
            "accessKeyId",
            format!(
                "these keys may not call {action}: add this statement to their IAM policy: {{\"Effect\": \"Allow\", \"Action\": [\"{action}\"], \"Resource\": \"*\"}}"
            ),
        ),
        _ => ("provider", format!("AWS did not answer {action}: {e}")),
    }
}

/// Checks `keys` from this machine: the VPCs and subnets they see, and
/// every action making the flavor's machines needs (with `DryRun`).
pub fn check(keys: &Keys) -> Result<serde_json::Value, Problem> {
    if keys.access_key_id.trim().is_empty() {
        return Err(("accessKeyId", "give the access key ID".into()));
    }
    if keys.secret_access_key.0.trim().is_empty() {
        return Err(("secretAccessKey", "give the secret access key".into()));
    }
    let imds = Endpoints::from_env().aws.ok_or((
        "provider",
        "AWS's metadata service is disabled on this machine (AWS_EC2_METADATA_DISABLED)"
            .to_string(),
    ))?;
    let instance = aws::instance(&imds, IMDS).map_err(|e| {
        (
            "provider",
            format!("this machine is not an AWS instance (its metadata service did not answer: {e}): run the wizard on an EC2 instance in the VPC the cluster goes to"),
        )
    })?;
    let region = keys
        .region
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .unwrap_or(&instance.region)
        .to_string();
    if !region
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err((
            "region",
            format!("`{region}` is not a region name (like eu-west-1)"),
        ));
    }
    // The components' overrides (EC2, ELB), and STS's as the SDKs read it.
    let mut endpoints = Settings::aws_from_env("wizard").endpoints;
    let var = |n: &str| std::env::var(n).ok().filter(|v| !v.trim().is_empty());
    if let Some(url) = var("AWS_ENDPOINT_URL_STS").or_else(|| var("AWS_ENDPOINT_URL")) {
        endpoints.insert("sts".into(), url);
    }
    let client = api::Client::new(&region, keys.credentials(), &endpoints)
        .map_err(|e| ("provider", format!("cannot make an AWS client: {e}")))?;
    // STS tells an unknown key from a wrong secret (EC2 does not); it
    // needs no permission, so a refusal still means the keys are known.
    match client.call(Service::Sts, "GetCallerIdentity", &[]) {
        Ok(_) => {}
        Err(e) if matches!(e.code(), Some("AccessDenied" | "AccessDeniedException")) => {}
        Err(e) => return Err(refused("sts:GetCallerIdentity", e)),
    }
    let vpcs_xml = client
        .call(Service::Ec2, "DescribeVpcs", &[])
        .map_err(|e| refused("ec2:DescribeVpcs", e))?;
    let subnets_xml = client
        .call(Service::Ec2, "DescribeSubnets", &[])
        .map_err(|e| refused("ec2:DescribeSubnets", e))?;
    let vpcs: Vec<serde_json::Value> = items(&vpcs_xml, "vpcSet", &["vpcId", "cidrBlock"])
        .into_iter()
        .map(|v| serde_json::json!({"id": v[0], "cidr": v[1]}))
        .collect();
    let subnets: Vec<serde_json::Value> = items(
        &subnets_xml,
        "subnetSet",
        &["subnetId", "vpcId", "cidrBlock", "availabilityZone"],
    )
    .into_iter()
    .map(|s| serde_json::json!({"id": s[0], "vpc": s[1], "cidr": s[2], "zone": s[3]}))
    .collect();
    // What making the machines calls, as the install's preflight tries it.
    let here = crate::phase::provision::target("wizard", &ProvisionSettings::default(), &imds)
        .map_err(|e| ("provider", format!("{e:#}")))?;
    let report =
        aws_permissions::check_provisioning(&client, &here, &instance.instance_type, &instance)
            .map_err(|e| ("accessKeyId", e))?;
    if !report.missing.is_empty() {
        return Err((
            "accessKeyId",
            format!(
                "these keys may not call {}: add {} to their IAM policy: {}",
                report.missing_text(),
                if report.pass_role.is_some() {
                    "these statements"
                } else {
                    "this statement"
                },
                report.statement()
            ),
        ));
    }
    Ok(serde_json::json!({
        "region": region,
        "vpcs": vpcs,
        "subnets": subnets,
        "subnet": here.subnet_id,
        "instance": instance.instance_id,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vpcs_and_subnets_are_read_item_by_item() {
        let xml = r#"<DescribeSubnetsResponse><subnetSet>
            <item><subnetId>subnet-1</subnetId><vpcId>vpc-1</vpcId><cidrBlock>10.0.1.0/24</cidrBlock><availabilityZone>eu-west-1a</availabilityZone>
              <tagSet><item><key>Name</key><value>a</value></item></tagSet></item>
            <item><subnetId>subnet-2</subnetId><vpcId>vpc-1</vpcId><cidrBlock>10.0.2.0/24</cidrBlock></item>
        </subnetSet></DescribeSubnetsResponse>"#;
        assert_eq!(
            items(xml, "subnetSet", &["subnetId", "vpcId", "availabilityZone"]),
            vec![
                vec!["subnet-1".to_string(), "vpc-1".into(), "eu-west-1a".into()],
                vec!["subnet-2".to_string(), "vpc-1".into(), "".into()],
            ]
        );
    }

    #[test]
    fn keys_never_show_their_secret() {
        let k: Keys = serde_json::from_str(
            r#"{"accessKeyId": "AKIAX", "secretAccessKey": "hunter2", "region": "eu-west-1"}"#,
        )
        .unwrap();
        assert!(!format!("{k:?}").contains("hunter2"));
        assert_eq!(k.credentials().access_key_id, "AKIAX");
    }
}
