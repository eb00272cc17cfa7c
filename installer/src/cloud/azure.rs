//! Azure's instance metadata service: `GET /metadata/instance` with the
//! header `Metadata: true` and an `api-version` (the service refuses a
//! request without either); the answer is one JSON document.

use super::{body, client, Instance, Timeouts};
use crate::health::error_chain as chain;

/// The IMDS API version asked for (it has `compute.osProfile`).
pub const API_VERSION: &str = "2021-02-01";

/// The instance `endpoint` describes.
pub fn instance(endpoint: &str, t: Timeouts) -> Result<Instance, String> {
    let base = endpoint.trim_end_matches('/');
    let text = client(t)?
        .get(format!("{base}/metadata/instance"))
        .query(&[("api-version", API_VERSION)])
        .header("Metadata", "true")
        .send()
        .map_err(|e| chain(&e))
        .and_then(|r| body(r, "the instance's metadata"))?;
    parse(&text)
}

/// The instance an IMDS answer describes.
pub fn parse(text: &str) -> Result<Instance, String> {
    let doc: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("the instance's metadata: {e}"))?;
    let compute = &doc["compute"];
    let field = |path: &[&str]| -> String {
        let mut v = compute;
        for p in path {
            v = &v[*p];
        }
        v.as_str()
            .unwrap_or_default()
            .chars()
            .filter(|c| !c.is_control())
            .collect()
    };
    // The computer name is what the VM calls itself (and what Kubernetes'
    // Azure provider names its node); older answers have only the VM name.
    let hostname = Some(field(&["osProfile", "computerName"]))
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| field(&["name"]));
    let instance = Instance {
        provider: "azure".into(),
        region: field(&["location"]),
        zone: field(&["zone"]),
        instance_id: field(&["vmId"]),
        instance_type: field(&["vmSize"]),
        hostname,
        resource_group: field(&["resourceGroupName"]),
        subscription_id: field(&["subscriptionId"]),
    };
    if instance.instance_id.is_empty() || instance.region.is_empty() || instance.hostname.is_empty()
    {
        return Err("the metadata service left the VM id, location or name empty".into());
    }
    Ok(instance)
}

/// How the node's Kubernetes components sign in to Azure, kept in the
/// node's configuration. The client secret is not: it is held in memory at
/// install (from `AZURE_CLIENT_SECRET`) and written only into azure.json.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Auth {
    /// The service principal's tenant (None: the VM's managed identity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// The service principal's application (client) id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The service principal's secret, at install only.
    #[serde(skip)]
    pub client_secret: Option<super::Secret>,
    /// An Azure Stack environment (`--azure-environment`): its endpoints,
    /// as the file gave them (None: Azure's public cloud).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<Environment>,
}

/// An Azure cloud's endpoints, in the Azure Stack environment file's form
/// (the `AZURE_ENVIRONMENT_FILEPATH` file of Azure's Go SDK).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Environment {
    /// The environment's name.
    pub name: String,
    /// Azure Resource Manager.
    pub resource_manager_endpoint: String,
    /// Microsoft Entra ID (Azure Active Directory), where tokens are had.
    pub active_directory_endpoint: String,
    /// The audience tokens are asked for.
    pub service_management_endpoint: String,
    /// Every other field of the file, kept as given for the components.
    #[serde(flatten)]
    pub rest: serde_json::Map<String, serde_json::Value>,
}

impl Environment {
    /// Azure's public cloud.
    pub fn public() -> Environment {
        Environment {
            name: "AzurePublicCloud".into(),
            resource_manager_endpoint: "https://management.azure.com/".into(),
            active_directory_endpoint: "https://login.microsoftonline.com/".into(),
            service_management_endpoint: "https://management.core.windows.net/".into(),
            rest: Default::default(),
        }
    }

    /// Reads an environment file (at most 64 KiB); `Err` says what is wrong.
    pub fn from_file(path: &std::path::Path) -> Result<Environment, String> {
        use std::io::Read as _;
        let mut text = String::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(64 << 10).read_to_string(&mut text))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let env: Environment = serde_json::from_str(&text)
            .map_err(|e| format!("{}:{}:{}: {e}", path.display(), e.line(), e.column()))?;
        for (field, url) in [
            ("resourceManagerEndpoint", &env.resource_manager_endpoint),
            ("activeDirectoryEndpoint", &env.active_directory_endpoint),
        ] {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(format!(
                    "{}: {field} `{url}` is not an http(s) URL",
                    path.display()
                ));
            }
        }
        Ok(env)
    }
}

/// The Kubernetes Azure provider's configuration (azure.json): the VM's
/// subscription, resource group and location from the metadata service,
/// the credentials (a service principal's, or the managed identity), and
/// instance metadata on, so that each kubelet learns its own VM from it.
pub fn cloud_config(instance: &Instance, auth: &Auth) -> String {
    let mut doc = serde_json::json!({
        "cloud": if auth.environment.is_some() { "AzureStackCloud" } else { "AzurePublicCloud" },
        "subscriptionId": instance.subscription_id,
        "resourceGroup": instance.resource_group,
        "location": instance.region,
        "vmType": "standard",
        "useInstanceMetadata": true,
        "loadBalancerSku": "basic",
        "cloudProviderBackoff": true,
    });
    match (&auth.client_id, &auth.client_secret) {
        (Some(id), Some(secret)) => {
            doc["tenantId"] = auth.tenant_id.clone().unwrap_or_default().into();
            doc["aadClientId"] = id.clone().into();
            doc["aadClientSecret"] = secret.0.clone().into();
        }
        _ => doc["useManagedIdentityExtension"] = true.into(),
    }
    serde_json::to_string_pretty(&doc).expect("JSON") + "\n"
}

/// An access token for Azure Resource Manager: the service principal's
/// (client credentials, from the environment's directory) or the managed
/// identity's (from the metadata service at `imds`).
pub fn token(auth: &Auth, imds: &str) -> Result<super::Secret, String> {
    let env = auth.environment.clone().unwrap_or_else(Environment::public);
    let http = client(Timeouts {
        connect: std::time::Duration::from_secs(5),
        total: std::time::Duration::from_secs(30),
    })?;
    let resp = match (&auth.client_id, &auth.client_secret) {
        (Some(id), Some(secret)) => {
            let tenant = auth.tenant_id.as_deref().unwrap_or_default();
            let url = format!(
                "{}/{tenant}/oauth2/token",
                env.active_directory_endpoint.trim_end_matches('/')
            );
            http.post(&url)
                .form(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", id.as_str()),
                    ("client_secret", secret.0.as_str()),
                    ("resource", env.service_management_endpoint.as_str()),
                ])
                .send()
                .map_err(|e| format!("the directory at {url}: {}", chain(&e)))?
        }
        _ => {
            let url = format!(
                "{}/metadata/identity/oauth2/token",
                imds.trim_end_matches('/')
            );
            http.get(&url)
                .query(&[
                    ("api-version", "2018-02-01"),
                    ("resource", env.service_management_endpoint.as_str()),
                ])
                .header("Metadata", "true")
                .send()
                .map_err(|e| format!("the managed identity at {url}: {}", chain(&e)))?
        }
    };
    let status = resp.status();
    let doc: serde_json::Value = answer(resp)?;
    if !status.is_success() {
        let said = doc["error_description"]
            .as_str()
            .or(doc["error"].as_str())
            .unwrap_or("no reason given");
        return Err(format!("no token ({status}): {}", clip(said)));
    }
    doc["access_token"]
        .as_str()
        .filter(|t| !t.is_empty())
        .map(|t| super::Secret(t.to_string()))
        .ok_or_else(|| "the token answer holds no access_token".into())
}

/// Reads Resource Manager as `token`, in `auth`'s cloud.
struct ArmReader<'a> {
    http: reqwest::blocking::Client,
    base: String,
    token: &'a super::Secret,
}

impl<'a> ArmReader<'a> {
    fn new(auth: &Auth, token: &'a super::Secret) -> Result<ArmReader<'a>, String> {
        let env = auth.environment.clone().unwrap_or_else(Environment::public);
        Ok(ArmReader {
            http: client(Timeouts {
                connect: std::time::Duration::from_secs(5),
                total: std::time::Duration::from_secs(30),
            })?,
            base: env
                .resource_manager_endpoint
                .trim_end_matches('/')
                .to_string(),
            token,
        })
    }

    /// `GET path?api-version=version`: the document, or Resource Manager's
    /// refusal as `STATUS CODE: message`.
    fn get(&self, path: &str, version: &str) -> Result<serde_json::Value, String> {
        let url = format!("{}{path}", self.base);
        let resp = self
            .http
            .get(&url)
            .query(&[("api-version", version)])
            .bearer_auth(&self.token.0)
            .send()
            .map_err(|e| format!("Resource Manager at {url}: {}", chain(&e)))?;
        let status = resp.status();
        let doc = answer(resp);
        if status.is_success() {
            return doc;
        }
        let doc = doc.unwrap_or_default();
        let code = doc["error"]["code"].as_str().unwrap_or("");
        let message = clip(doc["error"]["message"].as_str().unwrap_or(""));
        Err(format!(
            "{status} {code}{}{message}",
            if message.is_empty() { "" } else { ": " }
        ))
    }
}

/// What Resource Manager says about reading the VM's resource group and the
/// VM itself with `token`: `Err` names what may not be read, and why.
pub fn check_read_access(
    instance: &Instance,
    auth: &Auth,
    token: &super::Secret,
) -> Result<(), String> {
    let arm = ArmReader::new(auth, token)?;
    let (group, vm) = resource_ids(instance);
    for (path, version, action) in [
        (
            group.as_str(),
            "2021-04-01",
            "Microsoft.Resources/subscriptions/resourceGroups/read",
        ),
        (
            vm.as_str(),
            "2021-07-01",
            "Microsoft.Compute/virtualMachines/read",
        ),
    ] {
        arm.get(path, version)
            .map_err(|e| format!("{action} on {path}: {e}"))?;
    }
    Ok(())
}

/// What `./install --provision` does on Azure, as Resource Manager names
/// the actions: a NIC in this VM's subnet and network security group and a
/// VM on it for each machine; `tele uninstall --deprovision` deletes the
/// VMs, whose NICs and OS disks go with them.
pub const PROVISION_ACTIONS: [&str; 7] = [
    "Microsoft.Network/networkInterfaces/write",
    "Microsoft.Network/virtualNetworks/subnets/join/action",
    "Microsoft.Network/networkSecurityGroups/join/action",
    "Microsoft.Compute/virtualMachines/write",
    "Microsoft.Compute/virtualMachines/delete",
    "Microsoft.Network/networkInterfaces/delete",
    "Microsoft.Compute/disks/delete",
];

/// Giving the machines this VM's user-assigned identities (when it has any).
pub const ASSIGN_IDENTITY_ACTION: &str =
    "Microsoft.ManagedIdentity/userAssignedIdentities/assign/action";

/// What `--provision` also needs when this VM has no user-assigned identity:
/// each machine's own (system-assigned) identity is given its roles.
pub const ASSIGN_ROLE_ACTION: &str = "Microsoft.Authorization/roleAssignments/write";

/// Whether the action pattern of a role definition (`*` stands for any
/// text, `/` included) covers `action`; Azure compares them ignoring case.
fn covers(pattern: &str, action: &str) -> bool {
    let (pattern, action) = (pattern.to_ascii_lowercase(), action.to_ascii_lowercase());
    let parts: Vec<&str> = pattern.split('*').collect();
    let [first, middle @ .., last] = parts.as_slice() else {
        return pattern == action;
    };
    let Some(mut rest) = action.strip_prefix(first) else {
        return false;
    };
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// The actions of `wanted` that the caller's permissions at a scope (the
/// answer of `.../providers/Microsoft.Authorization/permissions`) do not
/// grant: an action is granted when one entry's `actions` cover it and the
/// same entry's `notActions` do not.
pub fn missing_actions(permissions: &serde_json::Value, wanted: &[&str]) -> Vec<String> {
    let list = |entry: &serde_json::Value, key: &str| -> Vec<String> {
        entry[key]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let entries = permissions["value"].as_array().cloned().unwrap_or_default();
    wanted
        .iter()
        .filter(|action| {
            !entries.iter().any(|e| {
                list(e, "actions").iter().any(|p| covers(p, action))
                    && !list(e, "notActions").iter().any(|p| covers(p, action))
            })
        })
        .map(|a| a.to_string())
        .collect()
}

/// The actions `--provision` needs (the identity's assignment when this VM
/// has user-assigned identities, which the machines get) that `token` may
/// not take on the VM's resource group, as Resource Manager lists the
/// caller's permissions there (it has no dry run for writes).
pub fn check_provision_access(
    instance: &Instance,
    auth: &Auth,
    token: &super::Secret,
) -> Result<Vec<String>, String> {
    let arm = ArmReader::new(auth, token)?;
    let (group, vm) = resource_ids(instance);
    let get = |path: &str, version: &str| {
        arm.get(path, version)
            .map_err(|e| format!("reading {path}: {e}"))
    };
    let permissions = get(
        &format!("{group}/providers/Microsoft.Authorization/permissions"),
        "2022-04-01",
    )?;
    let mut wanted: Vec<&str> = PROVISION_ACTIONS.to_vec();
    let this_vm = get(&vm, "2023-03-01")?;
    if this_vm["identity"]["userAssignedIdentities"]
        .as_object()
        .is_some_and(|ids| !ids.is_empty())
    {
        wanted.push(ASSIGN_IDENTITY_ACTION);
    } else {
        // The machines get identities of their own, which are given their
        // roles on the group.
        wanted.push(ASSIGN_ROLE_ACTION);
    }
    Ok(missing_actions(&permissions, &wanted))
}

/// The resource ids of a VM's resource group and of the VM itself (asked
/// for by its name, which the node is named by, as the provider does).
pub fn resource_ids(vm: &Instance) -> (String, String) {
    let group = format!(
        "/subscriptions/{}/resourceGroups/{}",
        vm.subscription_id, vm.resource_group
    );
    let id = format!(
        "{group}/providers/Microsoft.Compute/virtualMachines/{}",
        vm.hostname
    );
    (group, id)
}

/// A JSON answer, read up to the metadata bound.
fn answer(resp: reqwest::blocking::Response) -> Result<serde_json::Value, String> {
    use std::io::Read as _;
    let mut text = String::new();
    resp.take(super::MAX_ANSWER)
        .read_to_string(&mut text)
        .map_err(|e| e.to_string())?;
    serde_json::from_str(&text).map_err(|_| "an answer that is not JSON".to_string())
}

/// Text from a remote service, without control characters, cut short.
fn clip(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(300).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn actions_are_granted_as_role_definitions_say() {
        use super::{covers, missing_actions, PROVISION_ACTIONS};
        assert!(covers("*", "Microsoft.Compute/virtualMachines/write"));
        assert!(covers("*/read", "Microsoft.Compute/virtualMachines/read"));
        assert!(!covers("*/read", "Microsoft.Compute/virtualMachines/write"));
        assert!(covers(
            "microsoft.compute/virtualMachines/*",
            "Microsoft.Compute/virtualMachines/delete"
        ));
        assert!(covers(
            "Microsoft.Network/*/join/action",
            "Microsoft.Network/virtualNetworks/subnets/join/action"
        ));
        assert!(!covers(
            "Microsoft.Network/*/join/action",
            "Microsoft.Network/networkInterfaces/write"
        ));
        assert!(!covers(
            "Microsoft.Compute/disks/delete",
            "Microsoft.Compute/disks/deleteX"
        ));
        // Azure's built-in roles, as their definitions read.
        let reader = serde_json::json!({"value": [{"actions": ["*/read"], "notActions": []}]});
        let contributor = serde_json::json!({"value": [{"actions": ["*"], "notActions": [
            "Microsoft.Authorization/*/Delete", "Microsoft.Authorization/*/Write",
            "Microsoft.Authorization/elevateAccess/Action"]}]});
        let vm_contributor_only = serde_json::json!({"value": [
            {"actions": ["*/read"], "notActions": []},
            {"actions": ["Microsoft.Compute/virtualMachines/*", "Microsoft.Compute/disks/*",
                         "Microsoft.Network/virtualNetworks/subnets/join/action"],
             "notActions": ["Microsoft.Compute/disks/delete"]}]});
        assert_eq!(missing_actions(&reader, &PROVISION_ACTIONS).len(), 7);
        assert!(missing_actions(&contributor, &PROVISION_ACTIONS).is_empty());
        assert!(!missing_actions(
            &contributor,
            &["Microsoft.Authorization/roleAssignments/write"]
        )
        .is_empty());
        assert_eq!(
            missing_actions(&vm_contributor_only, &PROVISION_ACTIONS),
            [
                "Microsoft.Network/networkInterfaces/write",
                "Microsoft.Network/networkSecurityGroups/join/action",
                "Microsoft.Network/networkInterfaces/delete",
                "Microsoft.Compute/disks/delete",
            ]
        );
        assert_eq!(missing_actions(&serde_json::json!({}), &["a/b"]), ["a/b"]);
    }

    #[test]
    fn an_imds_answer_names_the_vm() {
        let text = r#"{"compute":{"location":"westeurope","name":"vm-1","osProfile":{"computerName":"web-1"},
            "vmId":"02aab8a4-74ef-476e-8182-f6d2ba4166a6","vmSize":"Standard_D2s_v3","zone":"2",
            "resourceGroupName":"shop","subscriptionId":"8d10da13-8125-4ba9-a717-bf7490507b3d"},"network":{}}"#;
        let i = super::parse(text).unwrap();
        assert_eq!(i.hostname, "web-1");
        assert_eq!(i.region, "westeurope");
        assert_eq!(i.resource_group, "shop");
        assert_eq!(
            i.to_string(),
            "azure, region westeurope (2), instance 02aab8a4-74ef-476e-8182-f6d2ba4166a6 (Standard_D2s_v3)"
        );
        let no_os = text.replace(r#""osProfile":{"computerName":"web-1"},"#, "");
        assert_eq!(super::parse(&no_os).unwrap().hostname, "vm-1");
        assert!(super::parse(r#"{"compute":{}}"#).is_err());
        assert!(super::parse("<html>").is_err());
    }
}

#[cfg(test)]
mod config_tests {
    use super::*;

    #[test]
    fn azure_json_holds_the_service_principal_or_names_the_managed_identity() {
        let vm = Instance {
            provider: "azure".into(),
            region: "westeurope".into(),
            resource_group: "shop".into(),
            subscription_id: "sub-1".into(),
            hostname: "web-1".into(),
            instance_id: "id".into(),
            ..Instance::default()
        };
        let sp = Auth {
            tenant_id: Some("tenant-1".into()),
            client_id: Some("client-1".into()),
            client_secret: Some(crate::cloud::Secret("s3cret".into())),
            environment: None,
        };
        let doc: serde_json::Value = serde_json::from_str(&cloud_config(&vm, &sp)).unwrap();
        assert_eq!(doc["cloud"], "AzurePublicCloud");
        assert_eq!(doc["aadClientSecret"], "s3cret");
        assert_eq!(doc["tenantId"], "tenant-1");
        assert_eq!(doc["resourceGroup"], "shop");
        assert_eq!(doc["useInstanceMetadata"], true);
        assert!(doc.get("useManagedIdentityExtension").is_none());
        // The secret is never kept in the node's configuration or shown.
        let kept = serde_json::to_string(&sp).unwrap();
        assert!(
            !kept.contains("s3cret") && !format!("{sp:?}").contains("s3cret"),
            "{kept}"
        );
        let mi = Auth::default();
        let doc: serde_json::Value = serde_json::from_str(&cloud_config(&vm, &mi)).unwrap();
        assert_eq!(doc["useManagedIdentityExtension"], true);
        assert!(doc.get("aadClientSecret").is_none());
    }

    #[test]
    fn an_environment_file_is_read_with_its_line_and_column_on_error() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("env.json");
        std::fs::write(&f, r#"{"name": "AzureStackCloud", "resourceManagerEndpoint": "https://arm.local/", "activeDirectoryEndpoint": "https://login.local/", "serviceManagementEndpoint": "https://management.local/", "storageEndpointSuffix": "local"}"#).unwrap();
        let env = Environment::from_file(&f).unwrap();
        assert_eq!(env.resource_manager_endpoint, "https://arm.local/");
        assert_eq!(env.rest["storageEndpointSuffix"], "local");
        std::fs::write(&f, "{\n  \"name\": 1\n}").unwrap();
        let e = Environment::from_file(&f).unwrap_err();
        assert!(e.contains("env.json:2:"), "{e}");
        std::fs::write(&f, r#"{"name": "x", "resourceManagerEndpoint": "arm.local", "activeDirectoryEndpoint": "https://l/", "serviceManagementEndpoint": "https://m/"}"#).unwrap();
        assert!(Environment::from_file(&f)
            .unwrap_err()
            .contains("not an http(s) URL"));
    }
}
