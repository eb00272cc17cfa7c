//! Making the other machines of a flavor on Azure (`./install --provision`
//! on a VM): one VM per node of the flavor beyond this one, of the size
//! asked for (`--instance-type PROFILE=SIZE`), in this VM's subnet behind
//! its network security group, from its image, with its admin user and SSH
//! keys, tagged for the cluster, each with the start-up script as its
//! custom data (cloud-init runs it at first boot).
//!
//! Resource Manager's PUT creates or updates by name, and a machine that
//! exists already is not sent again (its custom data cannot change), so
//! running the phase again makes nothing twice. The NIC and OS disk are
//! made with `deleteOption: Delete`: deleting a VM removes them too.

use std::path::Path;

use super::azure::{Auth, Environment};
use super::provision::{recorded, Machine, Wanted};
use super::{Instance, Secret};

/// The API versions of the calls.
const COMPUTE_API: &str = "2022-03-01";
const NETWORK_API: &str = "2022-05-01";
const AUTHORIZATION_API: &str = "2022-04-01";

/// Azure's built-in roles given to a machine's own identity: Reader (what a
/// node's components read: its VM and the group) and, for a master,
/// Contributor (what the controller manager's provider makes: load
/// balancers, disks, routes).
const READER_ROLE: &str = "acdd72a7-3385-48ef-bd42-f606fba81ae7";
const CONTRIBUTOR_ROLE: &str = "b24988ac-6180-42a0-ab88-20f7382dd24c";
/// How long a new identity may take to be known to the role assignments.
const PRINCIPAL_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

/// A client of Resource Manager with a token.
pub struct Arm {
    http: reqwest::blocking::Client,
    base: String,
    token: Secret,
}

impl Arm {
    /// A client of the environment's Resource Manager, signed in as `auth`
    /// (the metadata service at `imds` gives a managed identity's token).
    pub fn new(auth: &Auth, imds: &str) -> Result<Arm, String> {
        let env = auth.environment.clone().unwrap_or_else(Environment::public);
        let token = super::azure::token(auth, imds)?;
        let http = reqwest::blocking::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(5))
            .timeout(std::time::Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Arm {
            http,
            base: env
                .resource_manager_endpoint
                .trim_end_matches('/')
                .to_string(),
            token,
        })
    }

    fn send(
        &self,
        method: reqwest::Method,
        id: &str,
        version: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<(u16, serde_json::Value), String> {
        let url = format!("{}{id}", self.base);
        let mut req = self
            .http
            .request(method.clone(), &url)
            .query(&[("api-version", version)])
            .bearer_auth(&self.token.0);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req
            .send()
            .map_err(|e| format!("{method} {id}: {}", crate::health::error_chain(&e)))?;
        let status = resp.status().as_u16();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::Read::take(resp, super::MAX_ANSWER), &mut text)
            .map_err(|e| format!("{method} {id}: {e}"))?;
        let doc = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
        Ok((status, doc))
    }

    /// GETs `id`: None when it does not exist.
    pub fn get(&self, id: &str, version: &str) -> Result<Option<serde_json::Value>, String> {
        match self.send(reqwest::Method::GET, id, version, None)? {
            (200, doc) => Ok(Some(doc)),
            (404, _) => Ok(None),
            (status, doc) => Err(arm_error(status, &doc, &format!("GET {id}"))),
        }
    }

    fn put(
        &self,
        id: &str,
        version: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, String> {
        match self.send(reqwest::Method::PUT, id, version, Some(body))? {
            (200 | 201, doc) => Ok(doc),
            (status, doc) => Err(arm_error(status, &doc, &format!("PUT {id}"))),
        }
    }

    fn delete(&self, id: &str, version: &str) -> Result<(), String> {
        match self.send(reqwest::Method::DELETE, id, version, None)? {
            (200 | 202 | 204 | 404, _) => Ok(()),
            (status, doc) => Err(arm_error(status, &doc, &format!("DELETE {id}"))),
        }
    }
}

/// Resource Manager's error, with what to do for the usual ones.
fn arm_error(status: u16, doc: &serde_json::Value, what: &str) -> String {
    let code = doc["error"]["code"].as_str().unwrap_or("");
    let message: String = doc["error"]["message"]
        .as_str()
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_control())
        .take(300)
        .collect();
    let hint = match code {
        "OperationNotAllowed" | "QuotaExceeded" => {
            "; the subscription's quota of cores in this region is used up: ask Azure for more, or choose a smaller flavor or size"
        }
        "SkuNotAvailable" | "AllocationFailed" | "ZonalAllocationFailed" => {
            "; Azure cannot place this VM size here now: try again later, or give another --instance-type"
        }
        "InvalidResourceReference" | "NotFound" | "ResourceNotFound" | "SubnetNotFound" => {
            "; a resource it names does not exist: check the subnet and network security group of this VM"
        }
        "AuthorizationFailed" => {
            "; the identity may not: give it the Virtual Machine Contributor and Network Contributor roles on the resource group"
        }
        _ => "",
    };
    format!("{what}: {status} {code}: {message}{hint}")
}

/// Where the machines go and what they are made of: this VM's network,
/// image and admin user.
#[derive(Clone, Debug, PartialEq)]
pub struct AzureTarget {
    /// `/subscriptions/S/resourceGroups/G`.
    pub group_id: String,
    /// The location.
    pub location: String,
    /// The subnet's resource id.
    pub subnet_id: String,
    /// The network security group's resource id, if this VM's NIC has one.
    pub nsg_id: Option<String>,
    /// The image (`storageProfile.imageReference`).
    pub image: serde_json::Value,
    /// `osProfile.adminUsername`.
    pub admin_username: String,
    /// `osProfile.linuxConfiguration` (SSH keys, no passwords).
    pub linux_configuration: serde_json::Value,
    /// The identity the machines get: this VM's user-assigned identities
    /// (so the same roles), else a system-assigned one of their own.
    pub identity: serde_json::Value,
    /// The cluster's id.
    pub cluster: String,
}

/// This VM's network, image and admin user, from Resource Manager.
pub fn target(arm: &Arm, vm: &Instance, cluster: &str) -> Result<AzureTarget, String> {
    let (group_id, vm_id) = super::azure::resource_ids(vm);
    let doc = arm
        .get(&vm_id, COMPUTE_API)?
        .ok_or_else(|| format!("this VM {vm_id} is not in Resource Manager"))?;
    let props = &doc["properties"];
    let nic_id = props["networkProfile"]["networkInterfaces"][0]["id"]
        .as_str()
        .ok_or("this VM has no network interface")?
        .to_string();
    let nic = arm
        .get(&nic_id, NETWORK_API)?
        .ok_or_else(|| format!("this VM's network interface {nic_id} is not there"))?;
    let subnet_id = nic["properties"]["ipConfigurations"][0]["properties"]["subnet"]["id"]
        .as_str()
        .ok_or("this VM's network interface names no subnet")?
        .to_string();
    Ok(AzureTarget {
        group_id,
        location: doc["location"].as_str().unwrap_or(&vm.region).to_string(),
        subnet_id,
        nsg_id: nic["properties"]["networkSecurityGroup"]["id"]
            .as_str()
            .map(String::from),
        image: props["storageProfile"]["imageReference"].clone(),
        admin_username: props["osProfile"]["adminUsername"]
            .as_str()
            .unwrap_or("azureuser")
            .to_string(),
        linux_configuration: props["osProfile"]["linuxConfiguration"].clone(),
        identity: match doc["identity"]["userAssignedIdentities"].as_object() {
            Some(ids) if !ids.is_empty() => serde_json::json!({
                "type": "UserAssigned",
                "userAssignedIdentities": ids.keys().map(|k| (k.clone(), serde_json::json!({}))).collect::<serde_json::Map<_, _>>(),
            }),
            _ => serde_json::json!({"type": "SystemAssigned"}),
        },
        cluster: cluster.to_string(),
    })
}

/// Makes each machine of `wanted` that does not exist yet, with the
/// start-up script `user_data(profile)`; the machines, made now or before.
/// Machines with identities of their own (this VM has no user-assigned
/// one) are given their role on the group: Contributor for the profiles in
/// `masters`, Reader for the others.
pub fn provision(
    arm: &Arm,
    target: &AzureTarget,
    wanted: &[Wanted],
    masters: &[&str],
    user_data: &dyn Fn(&str) -> anyhow::Result<String>,
    state_root: &Path,
    progress: &dyn Fn(&str),
) -> anyhow::Result<Vec<Machine>> {
    use base64::Engine as _;
    let mut machines = recorded(state_root)?;
    for w in wanted {
        let vm_id = format!(
            "{}/providers/Microsoft.Compute/virtualMachines/{}",
            target.group_id, w.name
        );
        let machine = Machine {
            name: w.name.clone(),
            profile: w.profile.clone(),
            instance_id: vm_id.clone(),
            instance_type: w.instance_type.clone(),
        };
        if arm
            .get(&vm_id, COMPUTE_API)
            .map_err(anyhow::Error::msg)?
            .is_some()
        {
            progress(&format!("{} exists (made before)", w.name));
        } else {
            let tags = serde_json::json!({
                "tele.cluster": target.cluster,
                "tele.machine": w.name,
                "tele.profile": w.profile,
            });
            let nic_id = format!(
                "{}/providers/Microsoft.Network/networkInterfaces/{}-nic",
                target.group_id, w.name
            );
            let mut nic = serde_json::json!({
                "location": target.location,
                "tags": tags,
                "properties": {"ipConfigurations": [{"name": "ipconfig1", "properties": {
                    "subnet": {"id": target.subnet_id},
                    "privateIPAllocationMethod": "Dynamic"}}]}
            });
            if let Some(nsg) = &target.nsg_id {
                nic["properties"]["networkSecurityGroup"] = serde_json::json!({ "id": nsg });
            }
            arm.put(&nic_id, NETWORK_API, &nic)
                .map_err(|e| anyhow::anyhow!("making {}: {e}", w.name))?;
            let script = user_data(&w.profile)?;
            let vm = serde_json::json!({
                "location": target.location,
                "tags": tags,
                "identity": target.identity,
                "properties": {
                    "hardwareProfile": {"vmSize": w.instance_type},
                    "storageProfile": {
                        "imageReference": target.image,
                        "osDisk": {"name": format!("{}-osdisk", w.name), "createOption": "FromImage",
                                   "deleteOption": "Delete"}
                    },
                    "osProfile": {
                        "computerName": w.name,
                        "adminUsername": target.admin_username,
                        "linuxConfiguration": target.linux_configuration,
                        "customData": base64::engine::general_purpose::STANDARD.encode(script)
                    },
                    "networkProfile": {"networkInterfaces": [
                        {"id": nic_id, "properties": {"primary": true, "deleteOption": "Delete"}}]}
                }
            });
            arm.put(&vm_id, COMPUTE_API, &vm)
                .map_err(|e| anyhow::anyhow!("making {} ({}): {e}", w.name, w.instance_type))?;
            progress(&format!("{} made ({})", w.name, w.instance_type));
        }
        if target.identity["type"] == "SystemAssigned" {
            let role = if masters.contains(&w.profile.as_str()) {
                CONTRIBUTOR_ROLE
            } else {
                READER_ROLE
            };
            give_role(arm, target, &vm_id, role)
                .map_err(|e| anyhow::anyhow!("giving {}'s identity its role: {e}", w.name))?;
        }
        if !machines.iter().any(|m| m.instance_id == vm_id) {
            machines.push(machine);
            super::provision::record(state_root, &machines)?;
        }
    }
    Ok(machines)
}

/// Gives the system-assigned identity of the VM `vm_id` the built-in role
/// `role` on the group: a role assignment named after the VM and the role
/// (so a second run finds it), asked again while Azure does not know the
/// new identity yet.
fn give_role(arm: &Arm, target: &AzureTarget, vm_id: &str, role: &str) -> Result<(), String> {
    use sha2::Digest as _;
    let vm = arm
        .get(vm_id, COMPUTE_API)?
        .ok_or_else(|| format!("{vm_id} is not there"))?;
    let principal = vm["identity"]["principalId"]
        .as_str()
        .ok_or("the VM has no identity of its own")?
        .to_string();
    let h = hex::encode(sha2::Sha256::digest(
        format!("{vm_id}|{role}").to_lowercase(),
    ));
    let name = format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    );
    let subscription = target
        .group_id
        .split('/')
        .nth(2)
        .ok_or("the resource group's id names no subscription")?;
    let id = format!(
        "{}/providers/Microsoft.Authorization/roleAssignments/{name}",
        target.group_id
    );
    let body = serde_json::json!({"properties": {
        "roleDefinitionId": format!("/subscriptions/{subscription}/providers/Microsoft.Authorization/roleDefinitions/{role}"),
        "principalId": principal,
        "principalType": "ServicePrincipal",
    }});
    let begun = std::time::Instant::now();
    loop {
        match arm.send(reqwest::Method::PUT, &id, AUTHORIZATION_API, Some(&body))? {
            (200 | 201, _) => return Ok(()),
            (409, doc) if doc["error"]["code"] == "RoleAssignmentExists" => return Ok(()),
            (400, doc)
                if doc["error"]["code"] == "PrincipalNotFound"
                    && begun.elapsed() < PRINCIPAL_WAIT =>
            {
                std::thread::sleep(std::time::Duration::from_secs(5));
            }
            (403, doc) if doc["error"]["code"] == "AuthorizationFailed" => {
                return Err(format!(
                    "{}; give this VM's identity the User Access Administrator role on the resource group (or this VM a user-assigned identity with the nodes' roles, which the machines then share)",
                    arm_error(403, &doc, &format!("PUT {id}"))
                ))
            }
            (status, doc) => return Err(arm_error(status, &doc, &format!("PUT {id}"))),
        }
    }
}

/// Deletes the VMs the record names (their NICs and disks go with them),
/// and only those; the record goes once all are gone. The VMs deleted.
pub fn deprovision(arm: &Arm, state_root: &Path) -> anyhow::Result<Vec<String>> {
    let machines = recorded(state_root)?;
    for m in &machines {
        arm.delete(&m.instance_id, COMPUTE_API)
            .map_err(|e| anyhow::anyhow!("deleting {}: {e}", m.name))?;
    }
    if !machines.is_empty() {
        std::fs::remove_file(super::provision::machines_file(state_root))?;
    }
    Ok(machines.into_iter().map(|m| m.instance_id).collect())
}
