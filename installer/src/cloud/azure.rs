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

#[cfg(test)]
mod tests {
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
