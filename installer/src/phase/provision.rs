//! `/provision`: with `--provision`, the flavor's other machines are made
//! (on AWS [`crate::cloud::provision`], on Azure
//! [`crate::cloud::azure_provision`]), each with a start-up script that
//! fetches tele from this node and joins with a token of its profile. Made
//! before the app is installed, so that the machines boot meanwhile.

use super::{Phase, PhaseContext};
use crate::cloud::{api, aws, azure_provision, provision};

/// Makes the flavor's other machines.
pub struct Provision;

impl Phase for Provision {
    fn id(&self) -> String {
        "/provision".into()
    }
    fn description(&self) -> String {
        "make the flavor's other machines".into()
    }
    fn execute(&self, ctx: &PhaseContext) -> anyhow::Result<()> {
        let (Some(instance), Some(settings)) = (&ctx.cfg.cloud, &ctx.cfg.cloud_settings) else {
            anyhow::bail!("--provision needs a node on AWS or Azure");
        };
        let Some(wanted_settings) = &settings.provision else {
            return Ok(());
        };
        let imds = settings
            .imds_endpoint
            .clone()
            .unwrap_or_else(|| crate::cloud::LINK_LOCAL.to_string());
        let flavor = ctx
            .flavor()
            .ok_or_else(|| anyhow::anyhow!("--provision needs the app's flavor"))?;
        let first = ctx.cfg.profile.clone().unwrap_or_default();
        let wanted = provision::wanted(
            &settings.cluster_id,
            &flavor,
            &ctx.manifest.node_profiles,
            &first,
            &wanted_settings.instance_types,
            &instance.provider,
        )
        .map_err(|e| anyhow::anyhow!(e))?;
        let ca = std::fs::read_to_string(ctx.state.pki().ca_cert())?;
        let pin = crate::pki::ca_pin(&ctx.state.pki())?;
        let store = crate::token::TokenStore::new(ctx.state);
        // An Azure cloud other than the public one (Azure Stack): the
        // machines sign in where this one does.
        let environment = (instance.provider == "azure")
            .then(|| std::fs::read_to_string(ctx.state.azure_environment()).ok())
            .flatten();
        let user_data = |profile: &str| -> anyhow::Result<String> {
            let (token, _) = store.create(Some(profile), crate::token::DEFAULT_TTL, &pin)?;
            Ok(start_up_script(
                ctx.cfg,
                &settings.cluster_id,
                profile,
                &ca,
                &token,
                environment.as_deref(),
            ))
        };
        let progress = |line: &str| ctx.reporter.note(line);
        let made = if instance.provider == "azure" {
            let auth = settings.azure.clone().unwrap_or_default();
            let arm = azure_provision::Arm::new(&auth, &imds).map_err(anyhow::Error::msg)?;
            let target = azure_provision::target(&arm, instance, &settings.cluster_id)
                .map_err(anyhow::Error::msg)?;
            let masters: Vec<&str> = ctx
                .manifest
                .node_profiles
                .iter()
                .filter(|p| p.service_role.as_deref() == Some("master"))
                .map(|p| p.name.as_str())
                .collect();
            azure_provision::provision(
                &arm,
                &target,
                &wanted,
                &masters,
                &user_data,
                ctx.state.root(),
                &progress,
            )?
        } else {
            let target = target(&settings.cluster_id, wanted_settings, &imds)?;
            let var = |n: &str| std::env::var(n).ok().filter(|v| !v.trim().is_empty());
            let credentials =
                api::Credentials::from_chain(&var, Some(&imds)).map_err(|e| anyhow::anyhow!(e))?;
            let client = api::Client::new(&instance.region, credentials, &settings.endpoints)
                .map_err(|e| anyhow::anyhow!(e))?;
            provision::provision(
                &client,
                &target,
                &wanted,
                &user_data,
                ctx.state.root(),
                &progress,
            )?
        };
        ctx.reporter.note(&format!(
            "{} machine(s) made for the flavor {}; each joins when it has started",
            made.len(),
            flavor.name
        ));
        Ok(())
    }
    fn check(&self, ctx: &PhaseContext) -> anyhow::Result<bool> {
        // Done when every machine is recorded; running again makes only
        // what is missing.
        Ok(ctx
            .cfg
            .cloud_settings
            .as_ref()
            .is_none_or(|s| s.provision.is_none()))
    }
}

/// Where the machines go: what `settings` names, else this instance's
/// (from the metadata service at `imds`).
pub fn target(
    cluster: &str,
    settings: &crate::cloud::ProvisionSettings,
    imds: &str,
) -> anyhow::Result<provision::Target> {
    let here = aws::placement(imds)
        .map_err(|e| anyhow::anyhow!("this instance's subnet and image: {e}"))?;
    Ok(provision::Target {
        cluster: cluster.to_string(),
        image_id: settings.image_id.clone().unwrap_or(here.image_id),
        subnet_id: settings.subnet_id.clone().unwrap_or(here.subnet_id),
        security_groups: if settings.security_groups.is_empty() {
            here.security_groups
        } else {
            settings.security_groups.clone()
        },
        instance_profile_arn: here.instance_profile_arn,
    })
}

/// The start-up script (EC2 user data) of a machine of `profile`: fetch
/// tele from this master over TLS trusting only the cluster CA (showing the
/// token's credential), then join with `token` (whose pin the join checks
/// the CA against; `--autofix` sets the kernel settings preflight would
/// otherwise stop at, as no admin is there), as a node of the cluster
/// `cluster` (the cloud's tag) and, given `azure_environment` (the text of
/// the cluster's `--azure-environment` file), in that Azure cloud. Retries
/// until the master answers.
pub fn start_up_script(
    cfg: &crate::node::NodeConfig,
    cluster: &str,
    profile: &str,
    ca_pem: &str,
    token: &crate::token::Token,
    azure_environment: Option<&str>,
) -> String {
    let addr = format!("{}:{}", crate::node::fmt_host(cfg.node_ip), cfg.ports.join);
    let (environment_file, environment_flag) = match azure_environment {
        Some(text) => (
            format!(
                "cat > azure-environment.json <<'TELE_AZURE_ENVIRONMENT'\n{}\nTELE_AZURE_ENVIRONMENT\n",
                text.trim_end()
            ),
            " --azure-environment azure-environment.json",
        ),
        None => (String::new(), ""),
    };
    format!(
        r#"#!/bin/sh
# Written by tele: joins this machine to the cluster {cluster} as a {profile} node.
set -eu
umask 077
mkdir -p /var/lib/tele-provision
cd /var/lib/tele-provision
cat > ca.pem <<'TELE_CLUSTER_CA'
{ca}
TELE_CLUSTER_CA
{environment_file}until curl -fsS --max-time 600 --cacert ca.pem -H 'Authorization: Bearer {credential}' -o tele.part https://{addr}/v1/tele; do
  sleep 10
done
chmod 0755 tele.part
mv tele.part tele
exec ./tele join {addr} --token {token} --role {profile} --cluster-name {cluster} --autofix{environment_flag}
"#,
        ca = ca_pem.trim_end(),
        credential = token.credential(),
    )
}
