//! `./install` (the bundle's own copy of tele) and `tele install BUNDLE`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tele_installer::error::InstallError;
use tele_installer::install::{install, InstallOptions};
use tele_installer::reporter::InstallReporter;

use crate::args::{InstallArgs, InstallBundleArgs, OutputFormat};
use crate::output::Printer;

/// `install [OPTIONS]`, run from inside an extracted bundle.
#[derive(Debug, Parser)]
#[command(
    name = "install",
    version,
    about = "Install this bundle: a Kubernetes cluster on this machine, then the app",
    after_help = "Exit codes: 0 installed; 1 bad input (nothing changed); 3 preflight checks failed (nothing changed); 4 a phase failed (fix the cause, then --resume); 130 interrupted (--resume carries on).\nAfterwards `tele status`, `tele plan`, `kubectl` and `tele uninstall` are on the PATH (see --bin-dir)."
)]
#[command(args_conflicts_with_subcommands = true)]
struct InstallCli {
    #[command(subcommand)]
    command: Option<InstallCommand>,
    #[command(flatten)]
    install: InstallArgs,
    /// Print only errors.
    #[arg(short, long)]
    quiet: bool,
    /// `text` for people; `json` prints one JSON summary on stdout.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    output_format: OutputFormat,
}

#[derive(Debug, clap::Subcommand)]
enum InstallCommand {
    /// Join this machine to an existing cluster as a worker node: the command
    /// `./install` printed on the cluster's first node.
    Join(JoinArgs),
}

/// `install join ADDR --token TOKEN [--role PROFILE]`.
#[derive(Debug, clap::Args)]
pub struct JoinArgs {
    /// A master's address (`ADDR` or `ADDR:PORT` of its join service; not needed with --resume).
    #[arg(required_unless_present = "resume")]
    pub addr: Option<String>,
    /// The join token a master printed (`tele token create` makes more).
    #[arg(
        long,
        required_unless_present = "resume",
        env = "TELE_JOIN_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    #[command(flatten)]
    pub install: InstallArgs,
    /// Print only errors.
    #[arg(short, long)]
    pub quiet: bool,
    /// `text` for people; `json` prints one JSON summary on stdout.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output_format: OutputFormat,
}

/// Entry point when invoked as `install`.
pub fn run() -> ExitCode {
    let cli = InstallCli::parse();
    let (quiet, format) = match &cli.command {
        Some(InstallCommand::Join(j)) => (j.quiet, j.output_format),
        None => (cli.quiet, cli.output_format),
    };
    let p = Printer::new(quiet, false, format);
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
    let result = match cli.command {
        Some(InstallCommand::Join(j)) => run_join(Some(dir), j, &p),
        None => run_install(Some(dir), cli.install, None, &p),
    };
    match result {
        Ok(code) => code,
        Err(e) => p.error(&e),
    }
}

/// `./install join ...` or `tele join ... [--bundle DIR]` (None: fetched from the master).
pub fn run_join(bundle: Option<PathBuf>, j: JoinArgs, p: &Printer) -> anyhow::Result<ExitCode> {
    let target = tele_installer::install::JoinTarget {
        addr: j.addr.unwrap_or_default(),
        token: j.token,
    };
    run_install(bundle, j.install, Some(target), p)
}

/// `tele install BUNDLE`.
pub fn run_subcommand(a: InstallBundleArgs, p: &Printer) -> anyhow::Result<ExitCode> {
    run_install(Some(a.bundle), a.install, None, p)
}

struct Reporter<'a> {
    p: &'a Printer,
    /// When the last "waiting" line was shown, and for what.
    last_wait: std::sync::Mutex<Option<(std::time::Instant, String)>>,
}

impl InstallReporter for Reporter<'_> {
    fn phase_started(&self, id: &str, description: &str) {
        *self.last_wait.lock().expect("lock") = None;
        self.p.note(format!("{id:<28} {description} ..."));
    }
    fn phase_completed(&self, id: &str, secs: f64) {
        self.p.note(format!("{id:<28} done in {secs:.1}s"));
    }
    fn phase_skipped(&self, id: &str, why: &str) {
        self.p.note(format!("{id:<28} {why}"));
    }
    fn phase_failed(&self, id: &str, _error: &str) {
        self.p
            .note(crate::output::colour_verdicts(&format!("{id:<28} FAILED")));
    }
    fn waiting(&self, what: &str, elapsed: Duration, limit: Duration) {
        // A line every 10 s (and when the awaited thing changes), with the time against its limit.
        let mut last = self.last_wait.lock().expect("lock");
        let due = match &*last {
            Some((at, w)) => w != what || at.elapsed() >= Duration::from_secs(10),
            None => elapsed >= Duration::from_secs(2),
        };
        if due {
            self.p.note(format!(
                "{:<28} waiting for {what}: {}s of at most {}s",
                "",
                elapsed.as_secs(),
                limit.as_secs()
            ));
            *last = Some((std::time::Instant::now(), what.to_string()));
        }
    }
    fn note(&self, text: &str) {
        // The preflight table's pass/FAIL/warn words are coloured on a terminal.
        self.p.note(crate::output::colour_verdicts(text));
    }
}

/// The vendor's public key built into this installer (PEM), when it was
/// compiled with `TELE_TRUSTED_KEY_FILE` set (build.rs): `./install` then installs only
/// bundles signed by it.
const BUILTIN_KEY: Option<&str> = {
    let pem = include_str!(concat!(env!("OUT_DIR"), "/trusted-key.pem"));
    if pem.is_empty() {
        None
    } else {
        Some(pem)
    }
};

fn builtin_key() -> anyhow::Result<Option<tele_bundle::signature::PublicKey>> {
    BUILTIN_KEY
        .map(|pem| {
            tele_bundle::signature::PublicKey::from_pem(pem)
                .map_err(|e| anyhow::anyhow!("the key built into this installer: {e}"))
        })
        .transpose()
}

fn run_install(
    bundle: Option<PathBuf>,
    a: InstallArgs,
    join: Option<tele_installer::install::JoinTarget>,
    p: &Printer,
) -> anyhow::Result<ExitCode> {
    if a.uninstall {
        return crate::cmd::node::uninstall(
            crate::args::UninstallArgs {
                state: crate::args::StateDirArg {
                    state_dir: a.state_dir,
                },
                yes: a.yes,
                deprovision: false,
                aws_keys: a.aws_keys,
            },
            p,
        );
    }
    a.aws_keys.give()?;
    let opts = InstallOptions {
        fetch_bundle: bundle.is_none(),
        bundle_dir: bundle.unwrap_or_default(),
        state_dir: a.state_dir,
        advertise_addr: a.advertise_addr,
        node_name: a.node_name,
        pod_cidr: a.pod_network_cidr,
        service_cidr: a.service_cidr,
        cgroup_root: a.cgroup_root,
        volumes_dir: a.volumes_dir,
        log_limits: tele_installer::log_rotation::LogLimits {
            max_mb: a.log_max_size,
            files: a.log_max_files,
        },
        cert_validity: a.cert_validity,
        ca_validity: a.ca_validity,
        registry_port: a.registry_port,
        profile: a.profile,
        skip_checks: a.skip_checks,
        autofix: a.autofix,
        resume: a.resume,
        app_timeout: a.timeout.map(Duration::from_secs),
        config: a.config,
        bin_dir: (a.bin_dir.as_os_str() != "none").then_some(a.bin_dir),
        join,
        flavor: a.flavor,
        signing_key: match &a.key {
            Some(path) => Some(crate::cmd::verify::load_public_key(path)?),
            None => builtin_key()?,
        },
        signed_only: a.signed_only || (a.key.is_none() && BUILTIN_KEY.is_some()),
        cloud_provider: a.cloud_provider,
        cluster_name: a.cluster_name,
        provision: a
            .provision
            .then(|| {
                let mut types = std::collections::BTreeMap::new();
                for pair in &a.instance_type {
                    let Some((profile, kind)) = pair.split_once('=').filter(|(p, k)| !p.is_empty() && !k.is_empty()) else {
                        return Err(tele_installer::error::InstallError::bad_input(
                            format!("--instance-type `{pair}` is not PROFILE=TYPE"),
                            "give it like --instance-type node=m5.large",
                        ));
                    };
                    types.insert(profile.to_string(), kind.to_string());
                }
                Ok(tele_installer::cloud::ProvisionSettings {
                    instance_types: types,
                    subnet_id: a.subnet_id.clone(),
                    security_groups: a.security_group_id.clone(),
                    image_id: a.image_id.clone(),
                })
            })
            .transpose()?,
        azure: tele_installer::cloud::azure::Auth {
            client_secret: std::env::var("AZURE_CLIENT_SECRET")
                .ok()
                .filter(|s| !s.is_empty())
                .map(tele_installer::cloud::Secret),
            tenant_id: a.azure_tenant_id,
            client_id: a.azure_client_id,
            environment: a
                .azure_environment
                .as_deref()
                .map(tele_installer::cloud::azure::Environment::from_file)
                .transpose()
                .map_err(|e| {
                    tele_installer::error::InstallError::bad_input(
                        format!("--azure-environment: {e}"),
                        "give a JSON file with name, resourceManagerEndpoint, activeDirectoryEndpoint and serviceManagementEndpoint",
                    )
                })?,
        },
    };
    let started = std::time::Instant::now();
    let reporter = Reporter {
        p,
        last_wait: std::sync::Mutex::new(None),
    };
    let outcome = if a.wizard {
        wizard(&opts, a.wizard_port, &reporter, p)
    } else {
        install(&opts, &reporter)
    };
    let s = match outcome {
        Ok(s) => s,
        Err(e) => return Ok(install_failed(&e, &opts, p)),
    };
    let total = started.elapsed().as_secs_f64();
    match &s.joined_through {
        Some(master) => p.out(format!(
            "\nnode {} ({}) joined the cluster through {master} in {total:.1}s; services run under {}",
            s.node, s.node_ip, s.service_manager
        )),
        None => p.out(format!(
            "\n{} {} is installed on node {} ({}) in {total:.1}s; services run under {}",
            s.app, s.version, s.node, s.node_ip, s.service_manager
        )),
    }
    p.out("\nphases:");
    for (id, secs) in &s.phases {
        p.out(format!("  {id:<28} {secs:>6.1}s"));
    }
    let on_path = opts
        .bin_dir
        .as_ref()
        .is_some_and(|d| d.join("kubectl").is_symlink());
    if on_path {
        p.out("\nuse the cluster (as root):\n  kubectl get pods -A\n  tele status");
    } else {
        p.out(format!(
            "\nuse the cluster:\n  export KUBECONFIG={}\n  {} get pods -A",
            s.kubeconfig.display(),
            s.kubectl.display()
        ));
    }
    if !s.endpoints.is_empty() {
        p.out("\nthe app's services (namespace/name type cluster-ip ports):");
        for e in &s.endpoints {
            p.out(format!("  {e}"));
        }
    }
    if let Some(f) = &s.flavor {
        p.out(format!("\nflavor {}: {}", f.name, f.summary()));
    }
    if s.join_commands.len() > 1 {
        p.out("\nadd a node: on it, from the extracted bundle, run the command of its profile (the tokens are valid for 24 h; `tele token create --role PROFILE` makes more)");
        for (profile, cmd) in &s.join_commands {
            p.out(format!("  {profile}: {cmd}"));
        }
    } else if let Some(cmd) = &s.join_command {
        p.out(format!(
            "\nadd a node: on it, from the extracted bundle, run (the token is valid for 24 h; `tele token create` makes more)\n  {cmd}"
        ));
    }
    if s.join_command.is_some() {
        p.out(format!(
            "on a machine without the bundle, copy {} there and run `sudo tele join ...` with the same arguments: it fetches the rest from this cluster",
            tele_installer::state_dir::StateDir::new(&opts.state_dir).tele().display()
        ));
    }
    let mut json = serde_json::to_value(&s)?;
    json["ok"] = true.into();
    json["seconds"] = total.into();
    p.json(&json);
    Ok(ExitCode::SUCCESS)
}

/// Prints a failed install (error, hint; in JSON also the preflight
/// results and the state directory) and returns its exit code.
/// `./install --wizard`: the install driven from the wizard's page.
fn wizard(
    opts: &InstallOptions,
    port: u16,
    reporter: &dyn InstallReporter,
    p: &Printer,
) -> anyhow::Result<tele_installer::install::InstallSummary> {
    if opts.join.is_some() {
        anyhow::bail!(tele_installer::error::InstallError::bad_input(
            "--wizard makes a new cluster; a node joins with `tele join`",
            "run ./install --wizard on the first node only",
        ));
    }
    let ip = match opts.advertise_addr {
        Some(ip) => ip,
        None => tele_installer::install::detect_node_ip()?,
    };
    let announce = |a: &tele_installer::wizard::Access| {
        p.note(format!(
            "the install wizard is at\n\n  {}\n\nopen it in a browser (the address works once; it holds a one-time token).\nthe certificate's SHA-256 fingerprint is\n  {}\nwaiting for the install to be started from the page ...",
            a.url, a.fingerprint
        ));
    };
    tele_installer::wizard::run(
        opts.clone(),
        std::net::SocketAddr::new(ip, port),
        reporter,
        &announce,
    )
}

fn install_failed(e: &anyhow::Error, opts: &InstallOptions, p: &Printer) -> ExitCode {
    let mut extra = serde_json::json!({ "stateDir": opts.state_dir });
    if let Some(InstallError::Preflight { results }) = e.downcast_ref::<InstallError>() {
        extra["preflight"] = serde_json::to_value(results).unwrap_or_default();
    }
    p.error_with(e, extra)
}
