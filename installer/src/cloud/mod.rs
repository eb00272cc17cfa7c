//! Where a node runs: on AWS, on Azure, or elsewhere ("onprem"). Each
//! cloud is recognised by its instance metadata service (IMDS), asked with
//! short timeouts and both at once, so a machine in no cloud waits about a
//! second ([`locate`]); `--cloud-provider` names the provider instead, and
//! the app's manifest may disable any of them (`providers.<name>.disabled`).
//! What was found is kept in the node's configuration
//! ([`crate::node::NodeConfig::cloud`]) and shown by `tele status`; on a
//! cloud the node is named as the cloud names the machine.

pub mod api;
pub mod aws;
pub mod aws_permissions;
pub mod azure;
pub mod azure_provision;
pub mod provision;

use std::fmt;
use std::io::Read as _;
use std::str::FromStr;
use std::time::Duration;

use crate::error::InstallError;

/// How long detection waits for a connection to a metadata service.
const DETECT_CONNECT: Duration = Duration::from_millis(700);
/// How long detection waits for a metadata service's whole answer.
const DETECT_TOTAL: Duration = Duration::from_millis(1500);
/// The same when the provider was named: the service must answer.
const NAMED_TOTAL: Duration = Duration::from_secs(10);
/// The largest answer read from a metadata service.
pub(crate) const MAX_ANSWER: u64 = 256 * 1024;

/// A place a cluster runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// Amazon Web Services.
    Aws,
    /// Microsoft Azure.
    Azure,
    /// Bare metal or any machine outside these clouds (the manifest's
    /// `generic` provider).
    Onprem,
}

impl Provider {
    /// The name used on the command line and in status.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Aws => "aws",
            Provider::Azure => "azure",
            Provider::Onprem => "onprem",
        }
    }

    /// Its section under the manifest's `providers`.
    pub fn manifest_key(self) -> &'static str {
        match self {
            Provider::Aws => "aws",
            Provider::Azure => "azure",
            Provider::Onprem => "generic",
        }
    }

    /// True when the manifest turns this provider off.
    pub fn disabled_by(self, p: &tele_manifests::Providers) -> bool {
        match self {
            Provider::Aws => p.aws.as_ref().is_some_and(|a| a.disabled),
            Provider::Azure => p.azure.as_ref().is_some_and(|a| a.disabled),
            Provider::Onprem => p.generic.as_ref().is_some_and(|g| g.disabled),
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Provider {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "aws" => Ok(Provider::Aws),
            "azure" => Ok(Provider::Azure),
            "onprem" => Ok(Provider::Onprem),
            other => Err(format!(
                "unknown cloud provider `{other}`: give aws, azure or onprem"
            )),
        }
    }
}

/// The cloud machine a node runs on, as its metadata service describes it.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Instance {
    /// `aws` or `azure`.
    pub provider: String,
    /// The region (AWS) or location (Azure).
    pub region: String,
    /// The availability zone, when the cloud names one.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub zone: String,
    /// The instance id (AWS) or VM id (Azure).
    pub instance_id: String,
    /// The instance type (AWS) or VM size (Azure).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub instance_type: String,
    /// The name the cloud knows the machine by: the private DNS name (AWS)
    /// or the computer name (Azure). Kubernetes' cloud providers expect the
    /// node to be named so.
    pub hostname: String,
    /// Azure: the VM's resource group.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub resource_group: String,
    /// Azure: the VM's subscription.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subscription_id: String,
}

impl fmt::Display for Instance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}, region {}", self.provider, self.region)?;
        if !self.zone.is_empty() {
            write!(f, " ({})", self.zone)?;
        }
        write!(f, ", instance {}", self.instance_id)?;
        if !self.instance_type.is_empty() {
            write!(f, " ({})", self.instance_type)?;
        }
        Ok(())
    }
}

/// How the node's Kubernetes components use the cloud, recorded at install.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Settings {
    /// The cluster's id: what the cloud provider may use and makes carries
    /// the tag `kubernetes.io/cluster/<id>`.
    pub cluster_id: String,
    /// Endpoint overrides, by the provider's service name (from the SDKs'
    /// `AWS_ENDPOINT_URL*` variables at install).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub endpoints: std::collections::BTreeMap<String, String>,
    /// The metadata service's endpoint at install: on AWS
    /// `AWS_EC2_METADATA_SERVICE_ENDPOINT`, passed on to the components
    /// (their SDK reads it); on Azure `TELE_AZURE_IMDS_ENDPOINT`, for
    /// preflight (the Azure provider always asks the link-local address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imds_endpoint: Option<String>,
    /// Azure: how the components sign in (a service principal, or the VM's
    /// managed identity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure: Option<azure::Auth>,
    /// AWS: the flavor's other machines are made by the install
    /// (`--provision`), so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provision: Option<ProvisionSettings>,
}

/// How `--provision` makes the flavor's other machines; what is not given
/// is taken from this instance.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProvisionSettings {
    /// Instance types by node profile (`--instance-type PROFILE=TYPE`).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub instance_types: std::collections::BTreeMap<String, String>,
    /// `--subnet-id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet_id: Option<String>,
    /// `--security-group-id` (each).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub security_groups: Vec<String>,
    /// `--image-id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_id: Option<String>,
}

impl Settings {
    /// For an AWS node of cluster `cluster_id`, from the environment.
    pub fn aws_from_env(cluster_id: &str) -> Settings {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        Settings {
            cluster_id: cluster_id.to_string(),
            endpoints: aws::endpoint_overrides(var),
            imds_endpoint: var("AWS_EC2_METADATA_SERVICE_ENDPOINT"),
            azure: None,
            provision: None,
        }
    }
}

/// A secret held in memory: never serialized, never shown by `Debug`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Where the metadata services are: the clouds' link-local address unless
/// the environment says otherwise (AWS SDKs' `AWS_EC2_METADATA_SERVICE_ENDPOINT`
/// and `AWS_EC2_METADATA_DISABLED`; `TELE_AZURE_IMDS_ENDPOINT`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoints {
    /// AWS's IMDS base URL; None when disabled.
    pub aws: Option<String>,
    /// Azure's IMDS base URL.
    pub azure: Option<String>,
}

/// Both clouds' metadata services listen here.
pub const LINK_LOCAL: &str = "http://169.254.169.254";

impl Endpoints {
    /// From the environment.
    pub fn from_env() -> Endpoints {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let aws_disabled =
            var("AWS_EC2_METADATA_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
        Endpoints {
            aws: (!aws_disabled).then(|| {
                var("AWS_EC2_METADATA_SERVICE_ENDPOINT").unwrap_or_else(|| LINK_LOCAL.into())
            }),
            azure: Some(var("TELE_AZURE_IMDS_ENDPOINT").unwrap_or_else(|| LINK_LOCAL.into())),
        }
    }
}

/// Finds where this node runs. With `asked` the provider is taken as given
/// (and a cloud's metadata service must answer); without it both clouds'
/// services are asked at once, briefly, and a machine neither answers for
/// is `onprem`. A provider the manifest disables is refused with the
/// reason. None means onprem.
pub fn locate(
    asked: Option<Provider>,
    providers: &tele_manifests::Providers,
    endpoints: &Endpoints,
) -> Result<Option<Instance>, InstallError> {
    let refuse = |p: Provider, found: Option<&Instance>| {
        let place = match found {
            Some(i) => format!("this machine is on {} ({i}); ", p.as_str()),
            None => String::new(),
        };
        let hint = match p {
            Provider::Onprem => "install it on a cloud the app supports, with --cloud-provider aws or azure".to_string(),
            _ => format!(
                "ask the vendor for a bundle that supports {p}, or install without the cloud's integration with --cloud-provider onprem"
            ),
        };
        Err(InstallError::bad_input(
            format!(
                "{place}the app's manifest disables the {} provider (providers.{}.disabled)",
                p.as_str(),
                p.manifest_key()
            ),
            hint,
        ))
    };
    match asked {
        Some(Provider::Onprem) => {
            if Provider::Onprem.disabled_by(providers) {
                return refuse(Provider::Onprem, None);
            }
            Ok(None)
        }
        Some(p) => {
            if p.disabled_by(providers) {
                return refuse(p, None);
            }
            let timeouts = Timeouts {
                connect: NAMED_TOTAL,
                total: NAMED_TOTAL,
            };
            let (endpoint, found) = match p {
                Provider::Aws => (
                    endpoints.aws.clone(),
                    endpoints.aws.as_deref().map(|e| aws::instance(e, timeouts)),
                ),
                _ => (
                    endpoints.azure.clone(),
                    endpoints
                        .azure
                        .as_deref()
                        .map(|e| azure::instance(e, timeouts)),
                ),
            };
            match found {
                Some(Ok(i)) => Ok(Some(i)),
                Some(Err(e)) => Err(InstallError::bad_input(
                    format!(
                        "--cloud-provider {p}: {}'s instance metadata service at {} did not answer: {e}",
                        p.as_str(),
                        endpoint.unwrap_or_default()
                    ),
                    "run the install on a machine of that cloud (the metadata service must be reachable), or give --cloud-provider onprem",
                )),
                None => Err(InstallError::bad_input(
                    format!("--cloud-provider {p}: AWS_EC2_METADATA_DISABLED is set"),
                    "unset AWS_EC2_METADATA_DISABLED, or give --cloud-provider onprem",
                )),
            }
        }
        None => {
            let found = detect(endpoints);
            let provider = match &found {
                Some(i) if i.provider == "aws" => Provider::Aws,
                Some(_) => Provider::Azure,
                None => Provider::Onprem,
            };
            if provider.disabled_by(providers) {
                return refuse(provider, found.as_ref());
            }
            Ok(found)
        }
    }
}

/// Asks both clouds' metadata services at once with short timeouts; the
/// first that describes an instance wins (AWS before Azure).
pub fn detect(endpoints: &Endpoints) -> Option<Instance> {
    let timeouts = Timeouts {
        connect: DETECT_CONNECT,
        total: DETECT_TOTAL,
    };
    std::thread::scope(|s| {
        let aws = endpoints
            .aws
            .as_deref()
            .map(|e| s.spawn(move || aws::instance(e, timeouts).ok()));
        let azure = endpoints
            .azure
            .as_deref()
            .map(|e| s.spawn(move || azure::instance(e, timeouts).ok()));
        let aws = aws.and_then(|h| h.join().ok().flatten());
        let azure = azure.and_then(|h| h.join().ok().flatten());
        aws.or(azure)
    })
}

/// How long a metadata request may take.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// To connect.
    pub connect: Duration,
    /// For the whole request, answer included.
    pub total: Duration,
}

/// An HTTP client for a metadata service: no proxy (the service is
/// link-local), no redirects, the given timeouts.
fn client(t: Timeouts) -> Result<reqwest::blocking::Client, String> {
    reqwest::blocking::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(t.connect)
        .timeout(t.total)
        .build()
        .map_err(|e| e.to_string())
}

/// The answer's body when the status is 200, read up to [`MAX_ANSWER`].
fn body(resp: reqwest::blocking::Response, what: &str) -> Result<String, String> {
    let status = resp.status();
    let mut text = String::new();
    resp.take(MAX_ANSWER + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("{what}: {e}"))?;
    if text.len() as u64 > MAX_ANSWER {
        return Err(format!("{what}: an answer over {MAX_ANSWER} bytes"));
    }
    if status != reqwest::StatusCode::OK {
        let first: String = text.chars().take(200).filter(|c| !c.is_control()).collect();
        return Err(format!("{what}: {status} {first}"));
    }
    Ok(text)
}
