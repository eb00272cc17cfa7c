//! Where alerts go: `kind: smtp` and `kind: alerttarget` resources, given at
//! install (`./install --config FILE`) or later (`tele resource create FILE`).
//! They are kept in the state directory (0600: they may name a password
//! file) and set in Kapacitor through its config API whenever it runs.

use std::path::Path;

use crate::durable::write_durably;
use crate::monitoring::{AlertTarget, Smtp};

/// The alerting resources of an install.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AlertingConfig {
    /// The `spec` of the `kind: smtp` resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp: Option<serde_json::Value>,
    /// The `spec` of the `kind: alerttarget` resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alerttarget: Option<serde_json::Value>,
}

fn file(state_dir: &Path) -> std::path::PathBuf {
    crate::state_dir::StateDir::new(state_dir)
        .monitoring_dir()
        .join("alerting.json")
}

/// Reads resources from a YAML file: each document `kind: smtp` or
/// `kind: alerttarget` with a `spec`; anything else is an error naming where.
pub fn parse(path: &Path) -> anyhow::Result<AlertingConfig> {
    let mut cfg = AlertingConfig::default();
    for doc in tele_manifests::load_documents(path)? {
        let at = &doc.location;
        let kind = doc.value["kind"]
            .as_str()
            .unwrap_or_default()
            .to_lowercase();
        let spec = doc
            .value
            .get("spec")
            .cloned()
            .unwrap_or(serde_json::Value::Null);
        match kind.as_str() {
            "smtp" => {
                Smtp::from_spec(&spec).map_err(|e| anyhow::anyhow!("{at}: {e:#}"))?;
                cfg.smtp = Some(spec);
            }
            "alerttarget" => {
                AlertTarget::from_spec(&spec).map_err(|e| anyhow::anyhow!("{at}: {e:#}"))?;
                cfg.alerttarget = Some(spec);
            }
            "" => anyhow::bail!(
                "{at}: the resource has no `kind`\nhint: use kind: smtp or kind: alerttarget"
            ),
            other => anyhow::bail!(
                "{at}: unknown resource kind `{other}`\nhint: use kind: smtp or kind: alerttarget"
            ),
        }
    }
    Ok(cfg)
}

/// The saved resources of the install in `state_dir`.
pub fn load(state_dir: &Path) -> anyhow::Result<AlertingConfig> {
    match std::fs::read(file(state_dir)) {
        Ok(b) => Ok(serde_json::from_slice(&b)?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(AlertingConfig::default()),
        Err(e) => Err(e.into()),
    }
}

/// Merges `new` into the saved resources (a new resource of a kind replaces the old one).
pub fn save(state_dir: &Path, new: &AlertingConfig) -> anyhow::Result<AlertingConfig> {
    let mut cfg = load(state_dir)?;
    if new.smtp.is_some() {
        cfg.smtp = new.smtp.clone();
    }
    if new.alerttarget.is_some() {
        cfg.alerttarget = new.alerttarget.clone();
    }
    let mut bytes = serde_json::to_vec_pretty(&cfg)?;
    bytes.push(b'\n');
    write_durably(&file(state_dir), &bytes, 0o600)?;
    Ok(cfg)
}

/// Sets the saved handlers in the Kapacitor of `api`.
pub fn apply(cfg: &AlertingConfig, api: &crate::monitoring::KapacitorApi) -> anyhow::Result<()> {
    let smtp = cfg.smtp.as_ref().map(Smtp::from_spec).transpose()?;
    let target = cfg
        .alerttarget
        .as_ref()
        .map(AlertTarget::from_spec)
        .transpose()?;
    crate::monitoring::configure_alert_handlers(api, smtp.as_ref(), target.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_are_checked_saved_0600_and_merged() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("alerts.yaml");
        std::fs::write(
            &p,
            "kind: smtp\nversion: v1\nspec:\n  host: mail.example.com\n  port: 587\n  from: k8s@example.com\n  to: [ops@example.com]\n---\nkind: alerttarget\nspec:\n  url: https://hooks.example.com/x\n",
        )
        .unwrap();
        let cfg = parse(&p).unwrap();
        assert!(cfg.smtp.is_some() && cfg.alerttarget.is_some());
        let state = dir.path().join("state");
        save(&state, &cfg).unwrap();
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(file(&state)).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(
            &p,
            "kind: alerttarget\nspec:\n  url: https://hooks.example.com/y\n",
        )
        .unwrap();
        let merged = save(&state, &parse(&p).unwrap()).unwrap();
        assert_eq!(
            merged.alerttarget.unwrap()["url"],
            "https://hooks.example.com/y"
        );
        assert!(
            merged.smtp.is_some(),
            "an smtp resource given earlier is kept"
        );
    }

    #[test]
    fn bad_resources_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.yaml");
        std::fs::write(
            &p,
            "kind: alerttarget\nspec:\n  url: https://ok\n---\nkind: pager\nspec: {}\n",
        )
        .unwrap();
        let e = parse(&p).unwrap_err().to_string();
        assert!(e.contains("bad.yaml:5:1") && e.contains("pager"), "{e}");
        std::fs::write(&p, "kind: alerttarget\nspec:\n  url: ftp://nope\n").unwrap();
        let e = parse(&p).unwrap_err().to_string();
        assert!(e.contains("bad.yaml:1:1") && e.contains("http"), "{e}");
    }
}
