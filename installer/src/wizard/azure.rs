//! The wizard's Azure card: whether the service principal an admin types
//! (tenant, client id, secret, subscription) signs in from this machine (a
//! VM in the target network), may read what the Azure provider reads, and
//! may make and delete the flavor's other machines in this VM's resource
//! group. A problem is reported on the form field it concerns, with what to
//! do (for a missing permission: the actions, and the roles that grant
//! them).

use serde::Deserialize;

use crate::cloud::azure::{self, Auth, Environment};
use crate::cloud::{Endpoints, Secret, Timeouts};

/// The service principal as the page posts it; the secret is never
/// serialized or shown.
#[derive(Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Principal {
    /// The directory (tenant) id.
    #[serde(default)]
    pub tenant_id: String,
    /// The application (client) id.
    #[serde(default)]
    pub client_id: String,
    /// The client secret.
    #[serde(default, deserialize_with = "secret")]
    pub client_secret: Secret,
    /// The subscription (default: this VM's).
    #[serde(default)]
    pub subscription_id: Option<String>,
}

fn secret<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
    String::deserialize(d).map(Secret)
}

impl std::fmt::Debug for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Principal")
            .field("tenant_id", &self.tenant_id)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret)
            .field("subscription_id", &self.subscription_id)
            .finish()
    }
}

impl Principal {
    /// How the components sign in with it, in `environment`'s cloud.
    pub fn auth(&self, environment: Option<Environment>) -> Auth {
        Auth {
            tenant_id: Some(self.tenant_id.trim().to_string()),
            client_id: Some(self.client_id.trim().to_string()),
            client_secret: Some(Secret(self.client_secret.0.trim().to_string())),
            environment,
        }
    }
}

/// A problem, on the field it concerns: `tenantId`, `clientId`,
/// `clientSecret`, `subscriptionId` or `provider`.
pub type Problem = (&'static str, String);

/// How long the metadata service may take here (the admin waits on it).
const IMDS: Timeouts = Timeouts {
    connect: std::time::Duration::from_secs(1),
    total: std::time::Duration::from_secs(3),
};

/// The field a sign-in refusal concerns, from the directory's AADSTS code.
fn sign_in_problem(e: &str) -> Problem {
    if e.contains("AADSTS90002") || e.contains("AADSTS900023") {
        (
            "tenantId",
            format!("the directory does not know this tenant: {e}"),
        )
    } else if e.contains("AADSTS700016") {
        (
            "clientId",
            format!("the directory has no application with this client id: {e}"),
        )
    } else if e.contains("AADSTS7000215") || e.contains("AADSTS7000222") {
        (
            "clientSecret",
            format!("the secret is not this application's (or has expired): {e}"),
        )
    } else {
        ("provider", format!("cannot sign in: {e}"))
    }
}

/// Checks `p` from this machine, in `environment`'s cloud (Azure's public
/// cloud when None): this VM, the sign-in, the reads of the Azure provider
/// and the writes of making the machines.
pub fn check(
    p: &Principal,
    environment: Option<Environment>,
) -> Result<serde_json::Value, Problem> {
    for (field, value, what) in [
        ("tenantId", &p.tenant_id, "the tenant (directory) id"),
        ("clientId", &p.client_id, "the application (client) id"),
        ("clientSecret", &p.client_secret.0, "the client secret"),
    ] {
        if value.trim().is_empty() {
            return Err((field, format!("give {what}")));
        }
    }
    let imds = Endpoints::from_env().azure.ok_or((
        "provider",
        "Azure's metadata service is disabled on this machine".to_string(),
    ))?;
    let vm = azure::instance(&imds, IMDS).map_err(|e| {
        (
            "provider",
            format!("this machine is not an Azure VM (its metadata service did not answer: {e}): run the wizard on a VM in the network the cluster goes to"),
        )
    })?;
    if let Some(s) = p
        .subscription_id
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        if !s.eq_ignore_ascii_case(&vm.subscription_id) {
            return Err((
                "subscriptionId",
                format!(
                    "this VM is in the subscription {}: the cluster's machines go there (leave the field empty, or give that one)",
                    vm.subscription_id
                ),
            ));
        }
    }
    let auth = p.auth(environment);
    let token = azure::token(&auth, &imds).map_err(|e| sign_in_problem(&e))?;
    azure::check_read_access(&vm, &auth, &token).map_err(|e| {
        (
            "clientId",
            format!(
                "this application may not read what the Azure provider reads ({e}): assign it the Reader role on the resource group {}",
                vm.resource_group
            ),
        )
    })?;
    let missing = azure::check_provision_access(&vm, &auth, &token).map_err(|e| ("clientId", e))?;
    if !missing.is_empty() {
        return Err((
            "clientId",
            format!(
                "this application may not make the flavor's machines: it lacks {}; assign it the Virtual Machine Contributor and Network Contributor roles (and Managed Identity Operator when this VM has user-assigned identities, else User Access Administrator, which gives the machines' own identities their roles) on the resource group {}",
                missing.join(", "),
                vm.resource_group
            ),
        ));
    }
    Ok(serde_json::json!({
        "subscription": vm.subscription_id,
        "resourceGroup": vm.resource_group,
        "vm": vm.hostname,
        "location": vm.region,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_principal_never_shows_its_secret() {
        let p: Principal = serde_json::from_str(
            r#"{"tenantId": "t", "clientId": "c", "clientSecret": "hunter2", "subscriptionId": null}"#,
        )
        .unwrap();
        assert!(!format!("{p:?}").contains("hunter2"));
        let auth = p.auth(None);
        assert_eq!(auth.client_id.as_deref(), Some("c"));
        assert_eq!(auth.client_secret.unwrap().0, "hunter2");
    }

    #[test]
    fn sign_in_refusals_land_on_their_field() {
        assert_eq!(
            sign_in_problem("AADSTS90002: Tenant 'x' not found.").0,
            "tenantId"
        );
        assert_eq!(sign_in_problem("AADSTS700016: Application").0, "clientId");
        assert_eq!(
            sign_in_problem("AADSTS7000215: Invalid client secret").0,
            "clientSecret"
        );
        assert_eq!(sign_in_problem("connection refused").0, "provider");
    }
}
