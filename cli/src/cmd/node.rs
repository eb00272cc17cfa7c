//! Commands about an installed node: `plan`, `status`, `uninstall`, and the
//! node's image registry.

use std::io::IsTerminal;
use std::process::ExitCode;

use tele_installer::plan::Plan;
use tele_installer::uninstall::Target;

use crate::args::{RegistryServeArgs, ResourceCreateArgs, StateDirArg, UninstallArgs};
use crate::output::{colour_verdicts, paint, style, Printer, EXIT_INPUT};

pub fn plan(a: StateDirArg, p: &Printer) -> anyhow::Result<ExitCode> {
    let Some(plan) = Plan::load(&a.state_dir)? else {
        anyhow::bail!(
            "no operation plan in {}\nhint: give the install's --state-dir",
            a.state_dir.display()
        );
    };
    p.out(format!(
        "{} plan ({})",
        plan.operation,
        a.state_dir.display()
    ));
    p.out(format!(
        "{:<22} {:<11} {:>9}  ERROR",
        "PHASE", "STATE", "DURATION"
    ));
    for ph in &plan.phases {
        let dur = ph
            .duration_secs()
            .map(|d| format!("{d:.1}s"))
            .unwrap_or_default();
        let state = format!("{:?}", ph.state).to_lowercase();
        let err = ph
            .error
            .as_deref()
            .map(|e| e.lines().next().unwrap_or_default())
            .unwrap_or_default();
        p.out(format!("{:<22} {:<11} {:>9}  {}", ph.id, state, dur, err));
    }
    p.json(&plan);
    Ok(ExitCode::SUCCESS)
}

pub fn status(a: StateDirArg, p: &Printer) -> anyhow::Result<ExitCode> {
    let s = tele_installer::status::status(&a.state_dir)?;
    if let Some(plan) = &s.plan {
        p.out(format!("operation: {plan}"));
    }
    p.out(format!(
        "agent:     {}",
        s.agent
            .map(|p| format!("running (pid {p})"))
            .unwrap_or_else(|| "not running".into())
    ));
    p.out("services:");
    for svc in &s.services {
        p.out(format!(
            "  {:<26} {}",
            svc.name,
            svc.pid
                .map(|p| format!("running (pid {p})"))
                .unwrap_or_else(|| paint(style::BAD, "NOT RUNNING"))
        ));
    }
    match &s.node {
        Some((name, ready)) => p.out(format!("node:      {name} Ready={ready}")),
        None => p.out("node:      unknown (the API server does not answer)"),
    }
    p.out("app:");
    for w in &s.workloads {
        p.out(format!("  {w}"));
    }
    match &s.health {
        Some((age, checks)) => {
            p.out(format!("node health ({age}s ago):"));
            for c in checks {
                let path = c
                    .tags
                    .get("path")
                    .map(|p| format!(" {p}"))
                    .unwrap_or_default();
                let state = colour_verdicts(&format!("{:<5}", if c.ok { "ok" } else { "FAIL" }));
                p.out(format!(
                    "  {:<16} {state} {}",
                    format!("{}{path}", c.name),
                    c.detail
                ));
            }
        }
        None => p.out("node health: no results yet (the agent's checker writes them every 10 s)"),
    }
    let healthy = s.healthy();
    let mut json = serde_json::to_value(&s)?;
    json["healthy"] = healthy.into();
    p.json(&json);
    Ok(if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_INPUT)
    })
}

/// How an uninstall gets the user's consent.
#[derive(Debug, PartialEq, Eq)]
enum Consent {
    /// `--yes`.
    Given,
    /// Ask on the terminal.
    Ask,
    /// No terminal to ask on and no `--yes`: a script that did not say it
    /// means it must not remove a cluster.
    Refused,
}

fn consent(yes: bool, stdin_is_terminal: bool) -> Consent {
    match (yes, stdin_is_terminal) {
        (true, _) => Consent::Given,
        (false, true) => Consent::Ask,
        (false, false) => Consent::Refused,
    }
}

pub fn uninstall(a: UninstallArgs, p: &Printer) -> anyhow::Result<ExitCode> {
    let dir = &a.state.state_dir;
    let consent = consent(a.yes, std::io::stdin().is_terminal());
    // Refused before anything else is looked at, so that a script learns of
    // --yes whether or not it runs as root; asked only once the checks pass.
    if consent == Consent::Refused && dir.exists() {
        anyhow::bail!(
            "not uninstalling {} without confirmation: standard input is not a terminal to ask on; nothing was changed\nhint: pass --yes to uninstall without asking",
            dir.display()
        );
    }
    if tele_installer::uninstall::check(dir)? == Target::Nothing {
        let message = format!("nothing to uninstall: {} does not exist", dir.display());
        p.out(&message);
        p.json(&serde_json::json!({
            "ok": true,
            "uninstalled": false,
            "stateDir": dir,
            "message": message,
        }));
        return Ok(ExitCode::SUCCESS);
    }
    if consent == Consent::Ask {
        let question = format!(
            "This stops the cluster's services and pods, removes its mounts, network namespaces, \
             iptables chains and cgroups, and deletes {}. Uninstall?",
            dir.display()
        );
        if !p.confirm(&question)? {
            anyhow::bail!("not uninstalled: nothing was changed");
        }
    }
    let r = tele_installer::uninstall::uninstall(dir)?;
    for w in &r.warnings {
        p.note(format!("warning: {w}"));
    }
    p.out(format!(
        "uninstalled: {} pod processes killed, {} mounts and {} network namespaces removed, {} iptables chains and {} cgroups removed, {} deleted",
        r.processes_killed,
        r.unmounted,
        r.netns_removed,
        r.iptables_chains_removed,
        r.cgroups_removed,
        dir.display()
    ));
    let mut json = serde_json::to_value(&r)?;
    json["ok"] = true.into();
    json["uninstalled"] = true.into();
    json["stateDir"] = serde_json::to_value(dir)?;
    p.json(&json);
    Ok(ExitCode::SUCCESS)
}

pub fn resource_create(a: ResourceCreateArgs, p: &Printer) -> anyhow::Result<ExitCode> {
    let state = &a.state.state_dir;
    let new = tele_installer::alerting::parse(&a.file)?;
    anyhow::ensure!(
        state.join("install.json").is_file(),
        "no install in {}\nhint: give the install's --state-dir",
        state.display()
    );
    let saved = tele_installer::alerting::save(state, &new)?;
    match tele_installer::monitoring_phase::kapacitor_url(state)? {
        Some(url) => {
            tele_installer::alerting::apply(&saved, &url)?;
            p.out(format!("alert destinations set in Kapacitor ({url})"));
        }
        None => {
            p.out("alert destinations saved; this cluster runs no Kapacitor, so no alerts are sent")
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn registry_serve(a: RegistryServeArgs) -> anyhow::Result<ExitCode> {
    use tele_installer::registry_server::{run, RegistryConfig, TlsFiles};
    let tls = match (a.tls_cert, a.tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
        _ => None,
    };
    run(RegistryConfig {
        layout: a.layout,
        listen: a.listen,
        tls,
    })?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::{consent, Consent};

    #[test]
    fn uninstall_asks_on_a_terminal_and_refuses_elsewhere_without_yes() {
        assert_eq!(consent(true, true), Consent::Given);
        assert_eq!(consent(true, false), Consent::Given);
        assert_eq!(consent(false, true), Consent::Ask);
        assert_eq!(consent(false, false), Consent::Refused);
    }
}
