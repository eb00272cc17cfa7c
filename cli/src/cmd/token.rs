//! `tele token create|list|revoke`: the tokens that let nodes join.

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use tele_installer::state_dir::StateDir;
use tele_installer::token::TokenStore;

use crate::args::TokenCommand;
use crate::output::Printer;

pub fn run(c: TokenCommand, p: &Printer) -> anyhow::Result<ExitCode> {
    match c {
        TokenCommand::Create(a) => {
            let state = StateDir::new(&a.state.state_dir);
            let cfg = tele_installer::node::NodeConfig::load(&state)?;
            anyhow::ensure!(
                cfg.joined.is_none() && state.pki().key("ca").is_file(),
                "{} is not a master: tokens are made where the cluster CA is\nhint: run `tele token create` on the cluster's first node",
                state.root().display()
            );
            if let Some(role) = &a.role {
                let manifest = tele_manifests::load_manifest(&state.manifest_file())?;
                let names: Vec<&str> = manifest
                    .node_profiles
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect();
                anyhow::ensure!(
                    names.contains(&role.as_str()),
                    "the app has no node profile `{role}`\nhint: give --role one of: {}",
                    names.join(", ")
                );
            }
            let pin = tele_installer::pki::ca_pin(&state.pki())?;
            let (token, record) = TokenStore::new(&state).create(a.role.as_deref(), a.ttl, &pin)?;
            let command =
                tele_installer::install::join_command_text(&cfg, &token, a.role.as_deref());
            p.out(format!(
                "token {} made, valid until {} (unix time); join a node with:\n  {command}",
                record.id, record.expires
            ));
            p.json(&serde_json::json!({
                "token": token.to_string(),
                "id": record.id,
                "role": record.role,
                "expires": record.expires,
                "joinCommand": command,
            }));
        }
        TokenCommand::List(a) => {
            let tokens = TokenStore::new(&StateDir::new(&a.state_dir)).list()?;
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            p.out(format!(
                "{:<8} {:<12} {:<8} {:>12}  USED BY",
                "ID", "ROLE", "STATE", "EXPIRES IN"
            ));
            for t in &tokens {
                let left = t.expires.saturating_sub(now);
                p.out(format!(
                    "{:<8} {:<12} {:<8} {:>12}  {}",
                    t.id,
                    t.role.as_deref().unwrap_or("any"),
                    t.state(now),
                    format!("{}h{:02}m", left / 3600, (left % 3600) / 60),
                    t.used_by.join(", ")
                ));
            }
            p.json(&tokens);
        }
        TokenCommand::Revoke(a) => {
            let t = TokenStore::new(&StateDir::new(&a.state.state_dir)).revoke(&a.id)?;
            p.out(format!("token {} revoked: no node can join with it", t.id));
            p.json(&t);
        }
    }
    Ok(ExitCode::SUCCESS)
}
