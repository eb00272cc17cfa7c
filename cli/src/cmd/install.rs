//! `./install` (the bundle's own copy of tele) and `tele install BUNDLE`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tele_installer::install::{install, InstallOptions, InstallReporter};
use tele_installer::node::Ports;

use crate::args::{InstallArgs, InstallBundleArgs, OutputFormat};
use crate::output::Printer;

/// `install [OPTIONS]`, run from inside an extracted bundle.
#[derive(Debug, Parser)]
#[command(
    name = "install",
    version,
    about = "Install this bundle: a Kubernetes cluster on this machine, then the app"
)]
struct InstallCli {
    #[command(flatten)]
    install: InstallArgs,
    /// Print only errors.
    #[arg(short, long)]
    quiet: bool,
    /// `text` for people; `json` prints one JSON summary on stdout.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    output_format: OutputFormat,
}

/// Entry point when invoked as `install`.
pub fn run() -> ExitCode {
    let cli = InstallCli::parse();
    let p = Printer::new(cli.quiet, false, cli.output_format);
    let dir = match std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.to_path_buf()))
    {
        Some(d) => d,
        None => {
            return p.error(&anyhow::anyhow!(
                "cannot tell which directory this installer is in"
            ))
        }
    };
    match run_install(dir, cli.install, &p) {
        Ok(code) => code,
        Err(e) => p.error(&e),
    }
}

/// `tele install BUNDLE`.
pub fn run_subcommand(a: InstallBundleArgs, p: &Printer) -> anyhow::Result<ExitCode> {
    run_install(a.bundle, a.install, p)
}

struct Reporter<'a> {
    p: &'a Printer,
}

impl InstallReporter for Reporter<'_> {
    fn phase_started(&self, id: &str, description: &str) {
        self.p.note(format!("{id:<22} {description} ..."));
    }
    fn phase_completed(&self, id: &str, secs: f64) {
        self.p.note(format!("{id:<22} done in {secs:.1}s"));
    }
    fn phase_skipped(&self, id: &str) {
        self.p.note(format!("{id:<22} already done"));
    }
    fn phase_failed(&self, id: &str, _error: &str) {
        self.p.note(format!("{id:<22} FAILED"));
    }
    fn note(&self, text: &str) {
        self.p.note(text);
    }
}

fn run_install(bundle: PathBuf, a: InstallArgs, p: &Printer) -> anyhow::Result<ExitCode> {
    if a.uninstall {
        return crate::cmd::node::uninstall(
            crate::args::UninstallArgs {
                state: crate::args::StateDirArg {
                    state_dir: a.state_dir,
                },
                yes: a.yes,
            },
            p,
        );
    }
    let opts = InstallOptions {
        bundle_dir: bundle,
        state_dir: a.state_dir,
        advertise_addr: a.advertise_addr,
        node_name: a.node_name,
        pod_cidr: a.pod_network_cidr,
        service_cidr: a.service_cidr,
        cgroup_root: a.cgroup_root,
        ports: Ports {
            registry: a.registry_port,
            ..Ports::default()
        },
        profile: a.profile,
        skip_checks: a.skip_checks,
        autofix: a.autofix,
        resume: a.resume,
        app_timeout: Duration::from_secs(a.timeout),
        config: a.config,
    };
    let started = std::time::Instant::now();
    let s = install(&opts, &Reporter { p })?;
    let total = started.elapsed().as_secs_f64();
    p.out(format!(
        "\n{} {} is installed on node {} ({}) in {total:.1}s",
        s.app, s.version, s.node, s.node_ip
    ));
    p.out("\nphases:");
    for (id, secs) in &s.phases {
        p.out(format!("  {id:<22} {secs:>6.1}s"));
    }
    p.out(format!(
        "\nuse the cluster:\n  export KUBECONFIG={}\n  {} get pods -A",
        s.kubeconfig.display(),
        s.kubectl.display()
    ));
    if !s.endpoints.is_empty() {
        p.out("\nthe app's services (namespace/name type cluster-ip ports):");
        for e in &s.endpoints {
            p.out(format!("  {e}"));
        }
    }
    let mut json = serde_json::to_value(&s)?;
    json["ok"] = true.into();
    json["seconds"] = total.into();
    p.json(&json);
    Ok(ExitCode::SUCCESS)
}
