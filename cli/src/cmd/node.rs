//! Commands about an installed node: `plan`, `status`, `uninstall`, and the
//! node's image registry.

#![allow(clippy::print_stderr)]

use std::io::IsTerminal;
use std::process::ExitCode;

use tele_installer::plan::{Plan, PlanPhase};
use tele_installer::service::ServiceState;
use tele_installer::uninstall::Target;

use crate::args::{
    CertificatesRenewArgs, RegistryServeArgs, ResourceCreateArgs, StateDirArg, UninstallArgs,
};
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
        "{:<34} {:<12} {:>9}  ERROR",
        "PHASE", "STATE", "DURATION"
    ));
    fn rows(phases: &[PlanPhase], depth: usize, p: &Printer) {
        for ph in phases {
            let dur = ph
                .duration_secs()
                .map(|d| format!("{d:.1}s"))
                .unwrap_or_default();
            let err = ph
                .error
                .as_deref()
                .map(|e| e.lines().next().unwrap_or_default())
                .unwrap_or_default();
            let id = format!("{}{}", "  ".repeat(depth), ph.id);
            p.out(format!(
                "{id:<34} {:<12} {dur:>9}  {err}",
                ph.state.to_string()
            ));
            rows(&ph.phases, depth + 1, p);
        }
    }
    rows(&plan.phases, 0, p);
    p.json(&plan);
    Ok(ExitCode::SUCCESS)
}

pub fn status(a: StateDirArg, p: &Printer) -> anyhow::Result<ExitCode> {
    let s = tele_installer::status::status(&a.state_dir)?;
    if let Some(plan) = &s.plan {
        p.out(format!("operation: {plan}"));
    }
    match s.service_manager.as_str() {
        "agent" => p.out(format!(
            "agent:     {}",
            s.agent
                .map(|p| format!("running (pid {p})"))
                .unwrap_or_else(|| paint(style::BAD, "NOT RUNNING"))
        )),
        other => p.out(format!("services:  managed by {other}")),
    }
    p.out("services:");
    for svc in &s.services {
        let state = match &svc.state {
            ServiceState::Running { pid, restarts: 0 } => format!("running (pid {pid})"),
            ServiceState::Running { pid, restarts } => {
                format!("running (pid {pid}, restarted {restarts} times)")
            }
            ServiceState::Restarting { restarts } => paint(
                style::BAD,
                format!("NOT RUNNING (restarting; {restarts} restarts)"),
            ),
            ServiceState::Stopped => paint(style::BAD, "NOT RUNNING (stopped)"),
            ServiceState::Absent => paint(style::BAD, "NOT INSTALLED"),
        };
        p.out(format!("  {:<26} {state}", svc.name));
    }
    match &s.node {
        Some((name, ready)) => p.out(format!("node:      {name} Ready={ready}")),
        None => p.out("node:      unknown (the API server does not answer)"),
    }
    match &s.cloud {
        Some(c) => p.out(format!("provider:  {c}")),
        None => p.out(format!("provider:  {}", s.provider)),
    }
    if let Some(master) = &s.joined_through {
        p.out(format!("joined:    through {master}"));
    }
    if let Some(f) = &s.flavor {
        let state = if f.complete() {
            "complete"
        } else {
            "incomplete"
        };
        p.out(format!("flavor:    {} ({state}): {}", f.name, f.summary()));
    }
    if s.nodes.len() > 1 {
        p.out("cluster nodes:");
        for (name, ready) in &s.nodes {
            p.out(format!("  {name:<26} Ready={ready}"));
        }
    }
    if !s.tokens.is_empty() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        p.out("join tokens:");
        for t in &s.tokens {
            p.out(format!(
                "  {} role {} {} (expires at {}){}",
                t.id,
                t.role.as_deref().unwrap_or("any"),
                t.state(now),
                t.expires,
                if t.used_by.is_empty() {
                    String::new()
                } else {
                    format!(", used by {}", t.used_by.join(", "))
                }
            ));
        }
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
        None => p.out("node health: no results yet (the health checker writes them every 10 s)"),
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

/// `tele health-check`: the node health checker, until SIGTERM.
pub fn health_check(a: StateDirArg) -> anyhow::Result<ExitCode> {
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    let cfg = tele_installer::health::HealthConfig::for_install(&a.state_dir)?;
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, Arc::clone(&stop))?;
    }
    tele_installer::health::run_loop(cfg, stop);
    Ok(ExitCode::SUCCESS)
}

/// The install whose `bin/tele` this binary is, if any (STATE/bin/tele).
fn own_state_dir() -> Option<std::path::PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let state = exe.parent()?.parent()?;
    (exe.parent()?.file_name()? == "bin" && state.join("install.json").is_file())
        .then(|| state.to_path_buf())
}

/// Run from an install's state directory (the `tele` link on the PATH), the
/// commands default to that install's state directory.
pub fn default_state_dir_from_exe() {
    if std::env::var_os("TELE_STATE_DIR").is_none() {
        if let Some(state) = own_state_dir() {
            std::env::set_var("TELE_STATE_DIR", state);
        }
    }
}

/// Invoked as `kubectl` (the link the install makes): the runtime's kubectl
/// with the install's admin kubeconfig, unless KUBECONFIG is set.
pub fn kubectl_shim() -> ExitCode {
    use std::os::unix::process::CommandExt;
    let state = std::env::var_os("TELE_STATE_DIR")
        .map(std::path::PathBuf::from)
        .or_else(own_state_dir)
        .unwrap_or_else(|| tele_installer::state_dir::DEFAULT_STATE_DIR.into());
    let state = tele_installer::state_dir::StateDir::new(state);
    let bin = match tele_installer::node::runtime_binaries(state.root()) {
        Ok(b) => b.get("kubectl").cloned(),
        Err(_) => None,
    };
    let Some(bin) = bin else {
        eprintln!(
            "error: no install with a kubectl in {}\nhint: set TELE_STATE_DIR to the install's state directory",
            state.root().display()
        );
        return ExitCode::from(EXIT_INPUT);
    };
    let mut cmd = std::process::Command::new(bin);
    cmd.args(std::env::args_os().skip(1));
    if std::env::var_os("KUBECONFIG").is_none() {
        cmd.env("KUBECONFIG", state.pki().node_kubeconfig());
    }
    let e = cmd.exec();
    eprintln!("error: cannot run kubectl: {e}");
    ExitCode::from(EXIT_INPUT)
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
    if a.deprovision {
        a.aws_keys.give()?;
        let gone = tele_installer::cloud::provision::deprovision_node(dir)?;
        p.out(match gone.len() {
            0 => "deprovision: this install made no machines".to_string(),
            n => format!(
                "deprovision: {n} machine(s) terminated: {}",
                gone.join(", ")
            ),
        });
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
    if r.volumes_removed > 0 {
        p.out(format!(
            "{} volumes removed from the volumes directory",
            r.volumes_removed
        ));
    }
    let mut json = serde_json::to_value(&r)?;
    json["ok"] = true.into();
    json["uninstalled"] = true.into();
    json["stateDir"] = serde_json::to_value(dir)?;
    p.json(&json);
    Ok(ExitCode::SUCCESS)
}

pub fn leave(a: UninstallArgs, p: &Printer) -> anyhow::Result<ExitCode> {
    let dir = &a.state.state_dir;
    match consent(a.yes, std::io::stdin().is_terminal()) {
        Consent::Refused => anyhow::bail!(
            "not leaving the cluster without confirmation: standard input is not a terminal to ask on; nothing was changed\nhint: pass --yes to leave without asking"
        ),
        Consent::Ask => {
            let question = format!(
                "This node leaves its cluster: its pods move elsewhere, its services stop and {} is deleted. Leave?",
                dir.display()
            );
            if !p.confirm(&question)? {
                anyhow::bail!("not left: nothing was changed");
            }
        }
        Consent::Given => {}
    }
    let r = tele_installer::leave::leave(dir)?;
    p.out(format!(
        "{} left the cluster of {}; this machine is clean",
        r.node, r.master
    ));
    p.json(&r);
    Ok(ExitCode::SUCCESS)
}

pub fn remove(a: crate::args::RemoveArgs, p: &Printer) -> anyhow::Result<ExitCode> {
    let cleaned = tele_installer::leave::remove(&a.state.state_dir, &a.node)?;
    if cleaned {
        p.out(format!(
            "{} removed: drained, its Node deleted, its pod subnet free; the machine is uninstalling itself",
            a.node
        ));
    } else {
        p.out(format!(
            "{} removed: drained, its Node deleted, its pod subnet free; the machine did not answer: if it comes back, run `tele uninstall` there",
            a.node
        ));
    }
    p.json(&serde_json::json!({ "ok": true, "removed": a.node, "machineCleaned": cleaned }));
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
    match tele_installer::monitoring_phase::kapacitor_api(state)? {
        Some(api) => {
            tele_installer::alerting::apply(&saved, &api)?;
            p.out(format!("alert destinations set in Kapacitor ({})", api.url));
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
        client_ca: a.client_ca,
        max_connections: a.max_connections,
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `tele certificates list`: each certificate and kubeconfig of the node,
/// soonest expiry first.
pub fn certificates_list(a: StateDirArg, p: &Printer) -> anyhow::Result<ExitCode> {
    let pki = tele_installer::state_dir::StateDir::new(&a.state_dir).pki_dir();
    let mut expiries = tele_installer::pki::expiries(&pki);
    if expiries.is_empty() {
        anyhow::bail!(
            "no certificates in {}\nhint: give the install's --state-dir",
            pki.display()
        );
    }
    expiries.sort_by_key(|e| e.not_after);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    p.out(format!(
        "{:<34} {:<22} {:>10}",
        "FILE", "EXPIRES (UTC)", "DAYS LEFT"
    ));
    let mut rows = Vec::new();
    for e in &expiries {
        let expires = time::OffsetDateTime::from_unix_timestamp(e.not_after)
            .map(|t| {
                format!(
                    "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
                    t.year(),
                    u8::from(t.month()),
                    t.day(),
                    t.hour(),
                    t.minute(),
                    t.second()
                )
            })
            .unwrap_or_default();
        let days = e.seconds_left(now) as f64 / 86_400.0;
        p.out(format!("{:<34} {:<22} {:>10.2}", e.file, expires, days));
        rows.push(serde_json::json!({
            "file": e.file,
            "notBefore": e.not_before,
            "notAfter": e.not_after,
            "daysLeft": days,
        }));
    }
    p.json(&serde_json::json!({ "certificates": rows }));
    Ok(ExitCode::SUCCESS)
}

/// `tele certificates renew`: every certificate of the node anew, now.
pub fn certificates_renew(a: CertificatesRenewArgs, p: &Printer) -> anyhow::Result<ExitCode> {
    let state = tele_installer::state_dir::StateDir::new(&a.state.state_dir);
    if !state.config_file().is_file() {
        anyhow::bail!(
            "no install in {}\nhint: give the install's --state-dir",
            state.root().display()
        );
    }
    let _lock = tele_installer::install::lock(&state)?;
    let r = tele_installer::renew::renew(
        &state,
        tele_installer::renew::RenewOptions {
            all: true,
            validity_secs: a.validity.map(|d| d.as_secs()),
        },
    )?;
    p.out(format!("renewed {} files", r.renewed.len()));
    if !r.restarted.is_empty() {
        p.out(format!("restarted {}", r.restarted.join(", ")));
    }
    p.json(&serde_json::json!({
        "ok": true,
        "renewed": r.renewed,
        "restarted": r.restarted,
    }));
    Ok(ExitCode::SUCCESS)
}
