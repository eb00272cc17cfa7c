//! `./install --wizard`: the install driven from a browser. The installer
//! serves a web page over HTTPS on the node's address, with a certificate
//! from the cluster CA made before anything else, and prints one URL holding
//! a one-time token and the certificate's SHA-256 fingerprint. The page
//! takes the admin through three steps, as the original installer did:
//! LOCATION (the vendor's app, the deployment name, where it runs),
//! CAPACITY (the flavor) and INSTALLATION (the plan's phases as they run,
//! the log, and at the end where the app, monitoring and the admin
//! kubeconfig are). The page is the bundle's own (HTML, CSS and JavaScript
//! in tele; nothing from outside), and everything it does goes through the
//! JSON API below, which scripts can use as well (docs/wizard.md).
//!
//! Access: the token is good once; it buys a session cookie (`HttpOnly`,
//! `Secure`, `SameSite=Strict`); every request needs the cookie, and every
//! POST the session's CSRF token in `X-CSRF-Token`. The wizard stops serving
//! once the page has seen the install done (or a minute after it is done).

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{header, Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::{Deserialize, Serialize};

mod aws;
mod azure;
mod capacity;

use crate::error::InstallError;
use crate::install::{InstallOptions, InstallSummary};
use crate::reporter::InstallReporter;
use crate::state_dir::StateDir;

/// What the wizard writes into the state directory's `pki/` before the
/// install: the cluster CA and the wizard's serving certificate.
pub const MADE_UP_FRONT: &[&str] = &["ca.crt", "ca.key", "wizard.crt", "wizard.key"];

/// The default port of the wizard.
pub const DEFAULT_PORT: u16 = 61009;

/// How long the wizard's certificate is valid.
const CERT_VALIDITY: time::Duration = time::Duration::days(7);
/// How long the wizard serves after the install is done when no page asks.
const LINGER: Duration = Duration::from_secs(60);
/// The most of a request body read.
const MAX_BODY: usize = 64 << 10;
/// Lines of the log kept for the page.
const LOG_LINES: usize = 400;
/// The most of a logo file read.
const MAX_LOGO: u64 = 1 << 20;
/// The most connections served at once.
const MAX_CONNECTIONS: usize = 64;
/// The session cookie's name.
const COOKIE: &str = "tele_wizard";

const INDEX_HTML: &str = include_str!("index.html");
const WIZARD_JS: &str = include_str!("wizard.js");
const WIZARD_CSS: &str = include_str!("wizard.css");

/// Where the wizard is, for the admin.
#[derive(Clone, Debug)]
pub struct Access {
    /// `https://ADDR:PORT/?token=...`: good once.
    pub url: String,
    /// The certificate's SHA-256 fingerprint (`AA:BB:...`), to compare with
    /// what the browser shows.
    pub fingerprint: String,
}

/// The admin's choices, as the page (or a script) posts them.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Choices {
    /// The deployment's name (the cluster's name).
    pub deployment: String,
    /// `onprem` (bare metal).
    pub provider: String,
    /// A flavor of the manifest (none when it has none).
    #[serde(default)]
    pub flavor: Option<String>,
    /// The EULA was accepted (needed when the manifest has one).
    #[serde(default)]
    pub eula_accepted: bool,
    /// On AWS: the keys that make the flavor's other machines (held in
    /// memory only, never shown).
    #[serde(default, skip_serializing)]
    pub aws: Option<aws::Keys>,
    /// On AWS: the subnet of the other machines (default: this instance's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet_id: Option<String>,
    /// On Azure: the service principal that makes the flavor's other
    /// machines and that the components sign in as (its secret held in
    /// memory only, never shown).
    #[serde(default, skip_serializing)]
    pub azure: Option<azure::Principal>,
    /// On a cloud: the instance type (AWS) or VM size (Azure) of each node
    /// profile's machines.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub instance_types: std::collections::BTreeMap<String, String>,
}

/// Where the install stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
enum Stage {
    /// LOCATION and CAPACITY: nothing chosen yet.
    Choosing,
    /// The install runs.
    Running,
    /// It failed: the error is shown, and it can be resumed.
    Failed,
    /// This node is installed; the flavor's other nodes are joining.
    Joining,
    /// It is done.
    Done,
    /// Another process (an install from the command line) runs it: the
    /// page follows its plan until it ends.
    Watching,
}

struct Status {
    stage: Stage,
    choices: Option<Choices>,
    log: VecDeque<String>,
    notes: Vec<String>,
    error: Option<String>,
    hint: Option<String>,
    summary: Option<serde_json::Value>,
    /// The cluster's nodes (name, address, profile, Ready), once installed.
    nodes: Vec<serde_json::Value>,
    /// The cluster against its flavor, once installed.
    flavor: Option<crate::status::FlavorStatus>,
    /// The process whose install the page follows (stage Watching).
    watching: Option<String>,
    done_seen: bool,
}

enum Command {
    Install(Box<Choices>),
    Resume,
    /// Stop waiting for the flavor's other nodes.
    Finish,
}

struct Shared {
    /// The one-time token, until it is used.
    token: Mutex<Option<String>>,
    /// Session id -> its CSRF token.
    sessions: Mutex<HashMap<String, String>>,
    app: serde_json::Value,
    /// The manifest's flavors and how many nodes each has.
    flavors: FlavorSizes,
    eula: bool,
    status: Mutex<Status>,
    commands: Mutex<mpsc::Sender<Command>>,
    state_dir: PathBuf,
    origin: String,
    /// The Azure cloud (`--azure-environment`; Azure's public cloud when None).
    azure_environment: Option<crate::cloud::azure::Environment>,
    /// The nodes waiting in CAPACITY, while the line is open.
    line: Mutex<Option<capacity::Line>>,
    /// Stops the line's server on the join port (and waits for it).
    line_server: Mutex<Option<LineServer>>,
}

/// The server of the nodes' line on the join port.
struct LineServer {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
    runtime: tokio::runtime::Handle,
}

/// Closes the line of waiting nodes and frees the join port (for the first
/// node's join service); the nodes in it wait for that service.
fn close_line(shared: &Shared) {
    if let Some(l) = shared.line.lock().unwrap().as_mut() {
        l.close();
    }
    let server = shared.line_server.lock().unwrap().take();
    if let Some(server) = server {
        let _ = server.stop.send(());
        let _ = server.runtime.block_on(server.task);
    }
}

/// Whether `name` can name a deployment (the cluster's name, as
/// `--cluster-name` gives it): a DNS label, 1 to 63 lower-case letters,
/// digits and '-', starting and ending with a letter or digit.
pub fn deployment_name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("give the deployment a name".into());
    }
    if name.len() > 63 {
        return Some(format!("at most 63 characters ({} given)", name.len()));
    }
    let ok = name
        .bytes()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    (!ok).then(|| {
        "lower-case letters, digits and '-', starting and ending with a letter or digit".into()
    })
}

/// The manifest's logo as a `data:` URL the page can show without going
/// anywhere: inline data as it is, a file of the bundle read (at most 1
/// MiB); a remote URL is not fetched (the page shows a placeholder).
fn logo_data(bundle: &Path, logo: Option<&str>) -> Option<String> {
    use base64::Engine;
    let logo = logo?.trim();
    if logo.starts_with("data:image/") {
        return Some(logo.to_string());
    }
    let rel = logo.strip_prefix("file://").unwrap_or(logo);
    if rel.contains("://") {
        return None;
    }
    let path = bundle.join(rel.trim_start_matches('/'));
    let canonical = path.canonicalize().ok()?;
    if !canonical.starts_with(bundle.canonicalize().ok()?) {
        return None;
    }
    let mime = match path.extension()?.to_str()? {
        "png" => "image/png",
        "svg" => "image/svg+xml",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        _ => return None,
    };
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(std::fs::File::open(&canonical).ok()?, MAX_LOGO + 1),
        &mut bytes,
    )
    .ok()?;
    if bytes.len() as u64 > MAX_LOGO {
        return None;
    }
    Some(format!(
        "data:{mime};base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    ))
}

/// What the page shows of the app: name, version, description, logo, EULA,
/// the flavors and the providers.
fn app_info(opts: &InstallOptions) -> anyhow::Result<(serde_json::Value, FlavorSizes, bool)> {
    let m = tele_manifests::load_manifest(&opts.bundle_dir.join("app.yaml"))?;
    let installer = m.installer.as_ref();
    let eula = installer.and_then(|i| i.eula.clone());
    let flavors = installer.and_then(|i| i.flavors.as_ref());
    let items: Vec<serde_json::Value> = flavors
        .map(|f| {
            f.items
                .iter()
                .map(|i| {
                    serde_json::json!({
                        "name": i.name,
                        "description": i.description,
                        "nodes": i.nodes.iter().map(|n| serde_json::json!({
                            "profile": n.profile,
                            "count": n.count,
                            "description": m.node_profiles.iter().find(|p| p.name == n.profile).and_then(|p| p.description.clone()),
                            "awsInstanceTypes": m.node_profiles.iter().find(|p| p.name == n.profile).map(|p| p.aws_instance_types.clone()).unwrap_or_default(),
                        })).collect::<Vec<_>>(),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let names = flavors
        .map(|f| {
            f.items
                .iter()
                .map(|i| (i.name.clone(), i.nodes.iter().map(|n| n.count).sum()))
                .collect()
        })
        .unwrap_or_default();
    let info = serde_json::json!({
        "name": m.metadata.name,
        "version": m.metadata.version.to_string(),
        "description": m.metadata.description,
        "logo": logo_data(&opts.bundle_dir, m.logo.as_deref()),
        "eula": eula,
        "flavors": {
            "prompt": flavors.and_then(|f| f.prompt.clone()),
            "description": flavors.and_then(|f| f.description.clone()),
            "default": flavors.and_then(|f| f.default.clone()).or_else(|| flavors.and_then(|f| f.items.first()).map(|i| i.name.clone())),
            "items": items,
        },
        "providers": [
            {"name": "onprem", "title": "Bare metal", "available": true,
             "description": "Servers you have: this machine is the first node; the others join with a command."},
            {"name": "aws", "title": "Amazon Web Services", "available": true,
             "description": "EC2 instances: this instance is the first node; the install makes the others with the keys you give."},
            {"name": "azure", "title": "Microsoft Azure", "available": true,
             "description": "Azure VMs: this VM is the first node; the install makes the others as the application you give."},
        ],
        "exampleName": format!("{}-yourcompany", m.metadata.name),
    });
    Ok((info, names, eula.is_some()))
}

/// Each flavor's name and how many nodes it has.
type FlavorSizes = Vec<(String, u32)>;

/// The SHA-256 fingerprint of the first certificate in a PEM file.
fn fingerprint(cert: &Path) -> anyhow::Result<String> {
    use rustls::pki_types::pem::PemObject;
    let der = rustls::pki_types::CertificateDer::from_pem_file(cert)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", cert.display()))?;
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(der.as_ref());
    Ok(digest
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":"))
}

/// The reporter the install runs with: everything goes to the CLI's
/// reporter and into the page's log.
struct Tee<'a> {
    inner: &'a dyn InstallReporter,
    shared: &'a Shared,
    /// The last wait logged, and when.
    last_wait: Mutex<Option<(String, Instant)>>,
}

impl Tee<'_> {
    fn log(&self, line: String) {
        let mut s = self.shared.status.lock().unwrap();
        let stamp = time::OffsetDateTime::now_utc();
        s.log.push_back(format!(
            "{:02}:{:02}:{:02} {line}",
            stamp.hour(),
            stamp.minute(),
            stamp.second()
        ));
        while s.log.len() > LOG_LINES {
            s.log.pop_front();
        }
    }
}

impl InstallReporter for Tee<'_> {
    fn phase_started(&self, id: &str, description: &str) {
        self.inner.phase_started(id, description);
        self.log(format!("{id}: {description}"));
    }
    fn phase_completed(&self, id: &str, secs: f64) {
        self.inner.phase_completed(id, secs);
        self.log(format!("{id}: done in {secs:.1}s"));
    }
    fn phase_skipped(&self, id: &str, why: &str) {
        self.inner.phase_skipped(id, why);
        self.log(format!("{id}: skipped ({why})"));
    }
    fn phase_failed(&self, id: &str, error: &str) {
        self.inner.phase_failed(id, error);
        self.log(format!("{id}: failed: {error}"));
    }
    fn waiting(&self, what: &str, elapsed: Duration, limit: Duration) {
        self.inner.waiting(what, elapsed, limit);
        // A line every 10 s of a wait, not every call.
        let mut last = self.last_wait.lock().unwrap();
        if last
            .as_ref()
            .is_some_and(|(w, at)| w == what && at.elapsed() < Duration::from_secs(10))
        {
            return;
        }
        *last = Some((what.to_string(), Instant::now()));
        drop(last);
        self.log(format!(
            "waiting for {what} ({}s of at most {}s)",
            elapsed.as_secs(),
            limit.as_secs()
        ));
    }
    fn note(&self, text: &str) {
        self.inner.note(text);
        for line in text.lines() {
            self.log(line.to_string());
        }
        self.shared
            .status
            .lock()
            .unwrap()
            .notes
            .push(text.to_string());
    }
}

/// Serves the wizard on `listen` (its address: the node's), announces where
/// through `announce`, and runs the install as the page asks, with `opts`
/// for everything the page does not choose. Returns the install's summary
/// once it is done and the page has seen it.
pub fn run(
    mut opts: InstallOptions,
    listen: SocketAddr,
    reporter: &dyn InstallReporter,
    announce: &dyn Fn(&Access),
) -> anyhow::Result<InstallSummary> {
    crate::install::require_root("run `sudo ./install --wizard`")?;
    crate::install::validate(&opts)?;
    if opts.resume {
        return Err(InstallError::bad_input(
            "--wizard starts a new install",
            "resume a failed install from the wizard's page, or with ./install --resume",
        )
        .into());
    }
    crate::install::verify_bundle(&opts, reporter)?;
    let (app, flavors, eula) = app_info(&opts)?;
    let earlier = earlier_install(&opts.state_dir)?;
    let (stopped, running) = match earlier {
        Earlier::None => (None, None),
        Earlier::Stopped(why) => (Some(why), None),
        Earlier::Running(holder) => (None, Some(holder)),
    };

    let state = StateDir::new(&opts.state_dir);
    if let Some(holder) = &running {
        // The install being followed makes the cluster CA: the wizard's
        // certificate waits for it.
        reporter.note(&format!(
            "process {holder} is installing into {}: the wizard follows it",
            opts.state_dir.display()
        ));
        wait_for_ca(&state)?;
    }
    // The cluster CA, and the wizard's certificate from it, before anything else.
    let pki_dir = state.pki_dir();
    std::fs::create_dir_all(&pki_dir)?;
    std::fs::set_permissions(
        &pki_dir,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )?;
    let host = listen.ip().to_string();
    let (cert, key, _) = crate::pki::ensure_service_cert(
        &pki_dir,
        "wizard",
        std::slice::from_ref(&host),
        CERT_VALIDITY,
        true,
    )?;
    let tls = crate::registry_server::tls_acceptor(&crate::registry_server::TlsFiles {
        cert: cert.clone(),
        key,
    })?;
    let token = crate::token::random_hex(32)?;
    let origin = if listen.is_ipv6() {
        format!("https://[{host}]:{}", listen.port())
    } else {
        format!("https://{host}:{}", listen.port())
    };
    let access = Access {
        url: format!("{origin}/?token={token}"),
        fingerprint: fingerprint(&cert)?,
    };

    let (tx, rx) = mpsc::channel();
    let shared = Arc::new(Shared {
        token: Mutex::new(Some(token)),
        sessions: Mutex::new(HashMap::new()),
        app,
        flavors,
        eula,
        status: Mutex::new(Status {
            stage: if running.is_some() {
                Stage::Watching
            } else if stopped.is_some() {
                Stage::Failed
            } else {
                Stage::Choosing
            },
            choices: None,
            log: VecDeque::new(),
            notes: Vec::new(),
            hint: stopped
                .is_some()
                .then(|| "put right what stopped it, then press Resume".to_string()),
            error: stopped,
            summary: None,
            nodes: Vec::new(),
            flavor: None,
            watching: running,
            done_seen: false,
        }),
        commands: Mutex::new(tx),
        state_dir: opts.state_dir.clone(),
        origin,
        azure_environment: opts.azure.environment.clone(),
        line: Mutex::new(None),
        line_server: Mutex::new(None),
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(listen))
        .map_err(|e| {
            InstallError::bad_input(
                format!("the wizard cannot listen on {listen}: {e}"),
                "choose another port with --wizard-port, or stop what uses this one",
            )
        })?;
    if shared.status.lock().unwrap().stage == Stage::Choosing {
        open_line(&opts, &state, &shared, &runtime, listen, &tls, reporter)?;
    }
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = {
        let shared = shared.clone();
        std::thread::spawn(move || {
            let handler = move |req| handle(shared.clone(), req);
            runtime.block_on(serve(listener, tls, handler, async move {
                let _ = stop_rx.await;
            }))
        })
    };
    announce(&access);

    let outcome = drive(&mut opts, &shared, &rx, reporter);
    close_line(&shared);
    if outcome.is_ok() {
        // Until the page has seen the end (or LINGER).
        let done_at = Instant::now();
        while !shared.status.lock().unwrap().done_seen && done_at.elapsed() < LINGER {
            if crate::interrupt::check().is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        // The page's last request is answered before the server stops.
        std::thread::sleep(Duration::from_secs(2));
    }
    let _ = stop_tx.send(());
    let _ = server.join();
    // The wizard's certificate served only the wizard: the cluster's own
    // (and their renewal and expiry alerts) are the rest of pki/.
    for f in ["wizard.crt", "wizard.key"] {
        let _ = std::fs::remove_file(pki_dir.join(f));
    }
    outcome
}

/// Opens the line of waiting nodes for a manifest with flavors of several
/// nodes: their tokens, and a server on this machine's join port (none,
/// with a note, when that port is taken).
fn open_line(
    opts: &InstallOptions,
    state: &StateDir,
    shared: &Arc<Shared>,
    runtime: &tokio::runtime::Runtime,
    listen: SocketAddr,
    tls: &tokio_rustls::TlsAcceptor,
    reporter: &dyn InstallReporter,
) -> anyhow::Result<()> {
    let manifest = tele_manifests::load_manifest(&opts.bundle_dir.join("app.yaml"))?;
    let name = crate::install::node_name(opts.node_name.as_deref())?;
    let at = SocketAddr::new(listen.ip(), crate::install::JOIN_PORT);
    let listener = match runtime.block_on(tokio::net::TcpListener::bind(at)) {
        Ok(l) => l,
        Err(e) => {
            reporter.note(&format!(
                "the other nodes join once this one is installed ({at} is not free to wait on: {e})"
            ));
            return Ok(());
        }
    };
    let Some(line) = capacity::Line::new(state, &manifest, name, listen.ip())? else {
        return Ok(());
    };
    *shared.line.lock().unwrap() = Some(line);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let handler = {
        let shared = shared.clone();
        move |req| capacity::handle(shared.clone(), req)
    };
    let task = runtime.spawn(serve(listener, tls.clone(), handler, async move {
        let _ = stopped.await;
    }));
    *shared.line_server.lock().unwrap() = Some(LineServer {
        stop,
        task,
        runtime: runtime.handle().clone(),
    });
    Ok(())
}

/// Waits (up to 5 minutes) until the install another process runs in
/// `state` has made the cluster's certificates (its `/configure` phase), or
/// has let go of the state directory.
fn wait_for_ca(state: &StateDir) -> anyhow::Result<()> {
    let until = Instant::now() + Duration::from_secs(300);
    loop {
        let configured = crate::plan::Plan::load(state.root())
            .ok()
            .flatten()
            .and_then(|p| p.find("/configure").map(|c| c.state))
            == Some(crate::plan::PhaseState::Completed);
        if configured || crate::install::try_lock(state).is_ok() {
            return Ok(());
        }
        if Instant::now() > until {
            anyhow::bail!(
                "the install being followed made no cluster certificates in 5 minutes (see `tele plan --state-dir {}`)",
                state.root().display()
            );
        }
        crate::interrupt::check()?;
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// An install of the state directory begun before the wizard started.
enum Earlier {
    /// None.
    None,
    /// One that stopped (from the command line, or by a wizard), and why:
    /// the wizard opens at it, to be resumed.
    Stopped(String),
    /// One that another process (named) is running now: the wizard follows
    /// it.
    Running(String),
}

/// What became of an earlier install of `state_dir`. A finished one is
/// refused.
fn earlier_install(state_dir: &Path) -> anyhow::Result<Earlier> {
    let state = StateDir::new(state_dir);
    let running = match crate::install::try_lock(&state) {
        Ok(_lock) => None,
        // The health checker renewing certificates holds it for a moment.
        Err(_) => crate::install::lock_holder(&state).filter(|h| !h.contains("health-check")),
    };
    if let Some(holder) = running {
        return Ok(Earlier::Running(holder));
    }
    Ok(match stopped_install(state_dir)? {
        Some(why) => Earlier::Stopped(why),
        None => Earlier::None,
    })
}

/// What stopped an earlier install of `state_dir`, if one did; a finished
/// install is refused.
fn stopped_install(state_dir: &Path) -> anyhow::Result<Option<String>> {
    use crate::plan::PhaseState;
    let Some(plan) = crate::plan::Plan::load(state_dir).ok().flatten() else {
        return Ok(None);
    };
    if plan.is_complete() {
        return Err(InstallError::bad_input(
            format!("{} holds a finished install", state_dir.display()),
            "`tele status` shows it; `./install --uninstall` removes it",
        )
        .into());
    }
    let leaves = plan.leaves();
    let at = leaves
        .iter()
        .find(|l| matches!(l.state, PhaseState::Failed | PhaseState::InProgress));
    Ok(Some(match at {
        Some(l) => match &l.error {
            Some(e) => format!("phase {} failed: {e}", l.id),
            None => format!("the install stopped in phase {} ({})", l.id, l.description),
        },
        None => "the install stopped between its phases".to_string(),
    }))
}

/// Waits for the page's commands and runs the install (again, resumed,
/// after a failure) until it is done.
fn drive(
    opts: &mut InstallOptions,
    shared: &Shared,
    rx: &mpsc::Receiver<Command>,
    reporter: &dyn InstallReporter,
) -> anyhow::Result<InstallSummary> {
    let following = shared.status.lock().unwrap().watching.clone();
    if let Some(holder) = following {
        if let Some(summary) = follow(opts, shared, rx, reporter, &holder)? {
            return Ok(summary);
        }
    }
    loop {
        let command = match rx.recv_timeout(Duration::from_millis(300)) {
            Ok(c) => c,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                crate::interrupt::check()?;
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                anyhow::bail!("the wizard stopped serving")
            }
        };
        match command {
            Command::Install(c) => {
                // The first node's join service takes the join port.
                close_line(shared);
                opts.cluster_name = Some(c.deployment.clone());
                opts.flavor = c.flavor.clone();
                opts.resume = false;
                let nodes = shared
                    .flavors
                    .iter()
                    .find(|(name, _)| Some(name) == c.flavor.as_ref())
                    .map_or(1, |(_, n)| *n);
                if let Some(keys) = &c.aws {
                    // The install's AWS calls (preflight's and the
                    // machines') take them before the SDKs' chain.
                    crate::cloud::api::give(keys.credentials());
                    opts.cloud_provider = Some(crate::cloud::Provider::Aws);
                }
                if let Some(p) = &c.azure {
                    // The components and the machines sign in as it; the
                    // secret stays in memory (as AZURE_CLIENT_SECRET would).
                    opts.azure = p.auth(opts.azure.environment.clone());
                    opts.cloud_provider = Some(crate::cloud::Provider::Azure);
                }
                if (c.aws.is_some() || c.azure.is_some()) && nodes > 1 {
                    let base = opts.provision.clone().unwrap_or_default();
                    opts.provision = Some(crate::cloud::ProvisionSettings {
                        subnet_id: c.subnet_id.clone().or(base.subnet_id.clone()),
                        instance_types: if c.instance_types.is_empty() {
                            base.instance_types.clone()
                        } else {
                            c.instance_types.clone()
                        },
                        ..base
                    });
                }
            }
            // A failure before the plan was made (the checks) starts afresh.
            Command::Resume => {
                opts.resume = crate::plan::Plan::load(&opts.state_dir)
                    .ok()
                    .flatten()
                    .is_some()
            }
            Command::Finish => continue,
        }
        let tee = Tee {
            inner: reporter,
            shared,
            last_wait: Mutex::new(None),
        };
        match crate::install::install(opts, &tee) {
            Ok(summary) => {
                {
                    let mut s = shared.status.lock().unwrap();
                    s.summary = Some(serde_json::to_value(&summary)?);
                }
                wait_for_nodes(opts, shared, rx)?;
                shared.status.lock().unwrap().stage = Stage::Done;
                return Ok(summary);
            }
            Err(e) => {
                // On the page, resuming is its button.
                let hint = e
                    .downcast_ref::<InstallError>()
                    .and_then(InstallError::hint)
                    .map(|h| h.replace("then run `./install --resume`", "then press Resume"));
                let text = format!("{e:#}");
                tee.log(format!("the install failed: {text}"));
                let mut s = shared.status.lock().unwrap();
                s.stage = Stage::Failed;
                s.error = Some(text);
                s.hint = hint;
            }
        }
    }
}

/// Follows the install that `holder` (another process) runs, until it lets
/// go of the state directory: a finished install is then shown done (and
/// its summary returned); one that stopped is shown failed, to be resumed
/// from the page.
fn follow(
    opts: &InstallOptions,
    shared: &Shared,
    rx: &mpsc::Receiver<Command>,
    reporter: &dyn InstallReporter,
    holder: &str,
) -> anyhow::Result<Option<InstallSummary>> {
    let tee = Tee {
        inner: reporter,
        shared,
        last_wait: Mutex::new(None),
    };
    tee.log(format!(
        "following the install that process {holder} runs; its log follows"
    ));
    let state = StateDir::new(&opts.state_dir);
    let first = shared.status.lock().unwrap().log.clone();
    let show_log = || {
        // This wizard's own lines, then that install's log as it grows.
        let mut log = first.clone();
        log.extend(crate::reporter::install_log_tail(&state, LOG_LINES));
        let skip = log.len().saturating_sub(LOG_LINES);
        shared.status.lock().unwrap().log = log.into_iter().skip(skip).collect();
    };
    loop {
        crate::interrupt::check()?;
        show_log();
        if let Ok(lock) = crate::install::try_lock(&state) {
            drop(lock);
            show_log();
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let finished = crate::plan::Plan::load(&opts.state_dir)
        .ok()
        .flatten()
        .is_some_and(|p| p.is_complete());
    if finished {
        tee.log("the install from the command line is done".to_string());
        let summary = crate::install::finished_summary(opts, &tee)?;
        {
            let mut s = shared.status.lock().unwrap();
            s.summary = Some(serde_json::to_value(&summary)?);
            s.watching = None;
        }
        wait_for_nodes(opts, shared, rx)?;
        shared.status.lock().unwrap().stage = Stage::Done;
        return Ok(Some(summary));
    }
    let why = stopped_install(&opts.state_dir)
        .ok()
        .flatten()
        .unwrap_or_else(|| "the install from the command line stopped".to_string());
    tee.log(format!("the install from the command line stopped: {why}"));
    let mut s = shared.status.lock().unwrap();
    s.stage = Stage::Failed;
    s.watching = None;
    s.error = Some(why);
    s.hint = Some("put right what stopped it, then press Resume".to_string());
    Ok(None)
}

/// After this node's install: shows the cluster's nodes as they join until
/// the flavor's count is Ready (or the page says to finish).
fn wait_for_nodes(
    opts: &InstallOptions,
    shared: &Shared,
    rx: &mpsc::Receiver<Command>,
) -> anyhow::Result<()> {
    let state = StateDir::new(&opts.state_dir);
    loop {
        // Without the cluster's status there is nothing to wait for.
        let Ok(status) = crate::status::status(&opts.state_dir) else {
            return Ok(());
        };
        let cfg = crate::node::NodeConfig::load(&state).ok();
        let admitted = crate::join::server::admitted_nodes(&state);
        let nodes: Vec<serde_json::Value> = status
            .nodes
            .iter()
            .map(|(name, ready)| {
                let joined = admitted.iter().find(|n| &n.name == name);
                let this = cfg.as_ref().filter(|c| &c.node_name == name);
                serde_json::json!({
                    "name": name,
                    "ip": joined.map(|n| n.ip).or(this.map(|c| c.node_ip)),
                    "profile": joined.and_then(|n| n.role.clone()).or(this.and_then(|c| c.profile.clone())),
                    "ready": ready == "True",
                })
            })
            .collect();
        let complete = status.flavor.as_ref().is_none_or(|f| f.complete());
        {
            let mut s = shared.status.lock().unwrap();
            s.nodes = nodes;
            s.flavor = status.flavor;
            if !complete {
                s.stage = Stage::Joining;
            }
        }
        if complete {
            return Ok(());
        }
        match rx.recv_timeout(Duration::from_secs(2)) {
            Ok(Command::Finish) => return Ok(()),
            Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => crate::interrupt::check()?,
            Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
        }
    }
}

type Answer = Response<Full<Bytes>>;

fn answer(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Answer {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        content_type.parse().expect("a header value"),
    );
    h.insert(
        header::CACHE_CONTROL,
        "no-store".parse().expect("a header value"),
    );
    h.insert(
        "x-content-type-options",
        "nosniff".parse().expect("a header value"),
    );
    h.insert(
        header::REFERRER_POLICY,
        "no-referrer".parse().expect("a header value"),
    );
    h.insert("x-frame-options", "DENY".parse().expect("a header value"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
            .parse()
            .expect("a header value"),
    );
    r
}

fn json(status: StatusCode, v: &serde_json::Value) -> Answer {
    answer(status, "application/json", v.to_string())
}

fn refusal(status: StatusCode, error: &str, field: Option<&str>) -> Answer {
    json(status, &serde_json::json!({"error": error, "field": field}))
}

const NO_ACCESS: &str = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>tele install wizard</title></head><body><main><h1>This page needs the wizard's address</h1><p>Open the address that <code>./install --wizard</code> printed, with its one-time token. That token is good once: if it was used already, continue in the browser that used it, or stop the installer and start <code>./install --wizard</code> again for a new one.</p></main></body></html>";

/// The session id of a request's cookie, if it names a live session.
fn session_of(shared: &Shared, req: &Request<Incoming>) -> Option<String> {
    let cookies = req.headers().get_all(header::COOKIE);
    let sessions = shared.sessions.lock().unwrap();
    cookies
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().strip_prefix(&format!("{COOKIE}=")))
        .find(|id| sessions.contains_key(*id))
        .map(str::to_string)
}

/// The token in `?token=...`, if it is the one-time token still unused:
/// then it is used up.
fn take_token(shared: &Shared, query: Option<&str>) -> bool {
    let Some(given) = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|p| p.strip_prefix("token="))
    else {
        return false;
    };
    let mut token = shared.token.lock().unwrap();
    let matches = token.as_deref().is_some_and(|t| {
        // Compared as digests: no early exit on the first differing byte.
        use sha2::Digest as _;
        sha2::Sha256::digest(t.as_bytes()) == sha2::Sha256::digest(given.as_bytes())
    });
    if matches {
        *token = None;
    }
    matches
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Answer {
    let path = req.uri().path().to_string();
    if req.method() == Method::GET && take_token(&shared, req.uri().query()) {
        let (Ok(id), Ok(csrf)) = (crate::token::random_hex(32), crate::token::random_hex(32))
        else {
            return refusal(StatusCode::INTERNAL_SERVER_ERROR, "no randomness", None);
        };
        shared.sessions.lock().unwrap().insert(id.clone(), csrf);
        let mut r = answer(StatusCode::SEE_OTHER, "text/plain", "");
        r.headers_mut()
            .insert(header::LOCATION, "/".parse().expect("a header value"));
        r.headers_mut().insert(
            header::SET_COOKIE,
            format!("{COOKIE}={id}; Path=/; Secure; HttpOnly; SameSite=Strict")
                .parse()
                .expect("a header value"),
        );
        return r;
    }
    let Some(session) = session_of(&shared, &req) else {
        return if path.starts_with("/api/") {
            refusal(
                StatusCode::UNAUTHORIZED,
                "no session: open the address the installer printed, with its one-time token",
                None,
            )
        } else {
            answer(
                StatusCode::UNAUTHORIZED,
                "text/html; charset=utf-8",
                NO_ACCESS,
            )
        };
    };
    match (req.method().clone(), path.as_str()) {
        (Method::GET, "/") => answer(StatusCode::OK, "text/html; charset=utf-8", INDEX_HTML),
        (Method::GET, "/wizard.js") => {
            answer(StatusCode::OK, "text/javascript; charset=utf-8", WIZARD_JS)
        }
        (Method::GET, "/wizard.css") => {
            answer(StatusCode::OK, "text/css; charset=utf-8", WIZARD_CSS)
        }
        (Method::GET, "/api/v1/session") => {
            let csrf = shared.sessions.lock().unwrap().get(&session).cloned();
            json(StatusCode::OK, &serde_json::json!({ "csrfToken": csrf }))
        }
        (Method::GET, "/api/v1/app") => json(StatusCode::OK, &shared.app),
        (Method::GET, "/api/v1/progress") => json(StatusCode::OK, &progress(&shared)),
        (Method::GET, "/api/v1/capacity") => json(
            StatusCode::OK,
            &shared.line.lock().unwrap().as_ref().map_or_else(
                || serde_json::json!({"open": false, "commands": {}, "nodes": []}),
                capacity::Line::view,
            ),
        ),
        (Method::POST, p) => {
            if let Some(refused) = check_post(&shared, &session, &req) {
                return refused;
            }
            let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => {
                    return refusal(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "the request is too large",
                        None,
                    )
                }
            };
            match p {
                "/api/v1/check-name" => {
                    #[derive(Deserialize)]
                    struct Name {
                        deployment: String,
                    }
                    match serde_json::from_slice::<Name>(&body) {
                        Ok(n) => json(
                            StatusCode::OK,
                            &serde_json::json!({"problem": deployment_name_problem(&n.deployment)}),
                        ),
                        Err(e) => refusal(StatusCode::BAD_REQUEST, &e.to_string(), None),
                    }
                }
                "/api/v1/install" => match serde_json::from_slice::<Choices>(&body) {
                    Ok(c) => start(&shared, c),
                    Err(e) => refusal(StatusCode::BAD_REQUEST, &e.to_string(), None),
                },
                "/api/v1/resume" => resume(&shared),
                "/api/v1/azure/check" => {
                    let environment = shared.azure_environment.clone();
                    card_check(&body, move |p: azure::Principal| {
                        azure::check(&p, environment)
                    })
                    .await
                }
                "/api/v1/aws/check" => card_check(&body, |keys: aws::Keys| aws::check(&keys)).await,
                "/api/v1/finish" => finish(&shared),
                "/api/v1/assign" => {
                    #[derive(Deserialize)]
                    struct Assign {
                        node: String,
                        profile: String,
                    }
                    let Ok(a) = serde_json::from_slice::<Assign>(&body) else {
                        return refusal(
                            StatusCode::BAD_REQUEST,
                            "give the node and the profile",
                            None,
                        );
                    };
                    let mut line = shared.line.lock().unwrap();
                    match line.as_mut().filter(|l| l.is_open()) {
                        None => refusal(
                            StatusCode::CONFLICT,
                            "no node waits: the line is closed",
                            None,
                        ),
                        Some(l) => match l.assign(&a.node, &a.profile) {
                            Ok(()) => json(StatusCode::OK, &l.view()),
                            Err(e) => refusal(StatusCode::BAD_REQUEST, &e, Some("profile")),
                        },
                    }
                }
                _ => refusal(StatusCode::NOT_FOUND, "no such request", None),
            }
        }
        _ => refusal(StatusCode::NOT_FOUND, "no such page", None),
    }
}

/// A provider card's check (`/api/v1/aws/check`, `/api/v1/azure/check`):
/// `body` read as what the card posts and given to `check` (it calls the
/// cloud, so off the server's threads); its answer, or its problem on the
/// field it concerns.
async fn card_check<T, F>(body: &[u8], check: F) -> Answer
where
    T: serde::de::DeserializeOwned + Send + 'static,
    F: FnOnce(T) -> Result<serde_json::Value, (&'static str, String)> + Send + 'static,
{
    let given = match serde_json::from_slice::<T>(body) {
        Ok(g) => g,
        Err(e) => return refusal(StatusCode::BAD_REQUEST, &e.to_string(), None),
    };
    match tokio::task::spawn_blocking(move || check(given)).await {
        Ok(Ok(found)) => json(StatusCode::OK, &found),
        Ok(Err((field, problem))) => refusal(StatusCode::BAD_REQUEST, &problem, Some(field)),
        Err(e) => refusal(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string(), None),
    }
}

/// A POST's CSRF token and origin; a refusal when either is wrong.
fn check_post(shared: &Shared, session: &str, req: &Request<Incoming>) -> Option<Answer> {
    let want = shared.sessions.lock().unwrap().get(session).cloned();
    let given = req
        .headers()
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok());
    if want.is_none() || given != want.as_deref() {
        return Some(refusal(
            StatusCode::FORBIDDEN,
            "the request lacks the session's CSRF token (X-CSRF-Token, from /api/v1/session)",
            None,
        ));
    }
    if let Some(origin) = req.headers().get(header::ORIGIN) {
        if origin.to_str().ok() != Some(shared.origin.as_str()) {
            return Some(refusal(
                StatusCode::FORBIDDEN,
                "the request comes from another site",
                None,
            ));
        }
    }
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    (!is_json).then(|| {
        refusal(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the request as application/json",
            None,
        )
    })
}

/// `POST /api/v1/install`: checks the choices and starts the install.
fn start(shared: &Shared, c: Choices) -> Answer {
    if let Some(problem) = deployment_name_problem(&c.deployment) {
        return refusal(StatusCode::BAD_REQUEST, &problem, Some("deployment"));
    }
    match c.provider.as_str() {
        "onprem" => {}
        "aws" if c.aws.is_none() => {
            return refusal(
                StatusCode::BAD_REQUEST,
                "give the AWS keys that make the other machines",
                Some("accessKeyId"),
            )
        }
        "aws" => {}
        "azure" if c.azure.is_none() => {
            return refusal(
                StatusCode::BAD_REQUEST,
                "give the service principal that makes the other machines",
                Some("clientId"),
            )
        }
        "azure" => {}
        other => {
            return refusal(
                StatusCode::BAD_REQUEST,
                &format!("the wizard installs on bare metal, AWS and Azure, not `{other}`"),
                Some("provider"),
            )
        }
    }
    if let Some((profile, kind)) = c.instance_types.iter().find(|(_, t)| {
        t.is_empty()
            || t.len() > 64
            || !t
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || "._-".contains(ch))
    }) {
        return refusal(
            StatusCode::BAD_REQUEST,
            &format!(
                "`{kind}` is not an instance type or VM size (like m5.large or Standard_D4s_v3)"
            ),
            Some(&format!("type-{profile}")),
        );
    }
    match &c.flavor {
        Some(f) if !shared.flavors.iter().any(|(name, _)| name == f) => {
            return refusal(
                StatusCode::BAD_REQUEST,
                &format!("the app has no flavor `{f}`"),
                Some("flavor"),
            )
        }
        None if !shared.flavors.is_empty() => {
            return refusal(StatusCode::BAD_REQUEST, "choose a flavor", Some("flavor"))
        }
        _ => {}
    }
    if shared.eula && !c.eula_accepted {
        return refusal(
            StatusCode::BAD_REQUEST,
            "the licence agreement must be accepted to install",
            Some("eula"),
        );
    }
    let mut s = match hand_over(
        shared,
        Stage::Choosing,
        Command::Install(Box::new(c.clone())),
        "the install has started already",
    ) {
        Ok(s) => s,
        Err(refused) => return *refused,
    };
    s.stage = Stage::Running;
    s.choices = Some(c);
    json(
        StatusCode::ACCEPTED,
        &serde_json::json!({"stage": "running"}),
    )
}

/// Hands `command` to the installer when the install is at stage `from`
/// (else a 409 saying `conflict`); the status, still locked, to update.
fn hand_over<'a>(
    shared: &'a Shared,
    from: Stage,
    command: Command,
    conflict: &str,
) -> Result<std::sync::MutexGuard<'a, Status>, Box<Answer>> {
    let s = shared.status.lock().unwrap();
    if s.stage != from {
        return Err(Box::new(refusal(StatusCode::CONFLICT, conflict, None)));
    }
    if shared.commands.lock().unwrap().send(command).is_err() {
        return Err(Box::new(refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            "the installer has stopped",
            None,
        )));
    }
    Ok(s)
}

/// `POST /api/v1/resume`: runs a failed install again from where it stopped.
fn resume(shared: &Shared) -> Answer {
    let mut s = match hand_over(
        shared,
        Stage::Failed,
        Command::Resume,
        "only a failed install can be resumed",
    ) {
        Ok(s) => s,
        Err(refused) => return *refused,
    };
    s.stage = Stage::Running;
    s.error = None;
    s.hint = None;
    json(
        StatusCode::ACCEPTED,
        &serde_json::json!({"stage": "running"}),
    )
}

/// `POST /api/v1/finish`: stop waiting for the flavor's other nodes.
fn finish(shared: &Shared) -> Answer {
    if let Err(refused) = hand_over(
        shared,
        Stage::Joining,
        Command::Finish,
        "nothing is waiting for nodes",
    ) {
        return *refused;
    }
    json(StatusCode::ACCEPTED, &serde_json::json!({"stage": "done"}))
}

/// `GET /api/v1/progress`: the stage, the choices, the plan's phases (a
/// tree, each with its state and seconds), the log, the error and hint of a
/// failure, and the summary at the end.
fn progress(shared: &Shared) -> serde_json::Value {
    let plan = crate::plan::Plan::load(&shared.state_dir).ok().flatten();
    let phases: Vec<serde_json::Value> = plan
        .map(|p| p.phases.iter().map(phase_json).collect())
        .unwrap_or_default();
    let mut s = shared.status.lock().unwrap();
    if s.stage == Stage::Done {
        s.done_seen = true;
    }
    let monitoring: Vec<&str> = s
        .notes
        .iter()
        .flat_map(|n| n.lines())
        .filter(|l| {
            l.starts_with("Grafana:") || l.starts_with("InfluxDB:") || l.starts_with("Kapacitor:")
        })
        .collect();
    serde_json::json!({
        "stage": s.stage,
        "choices": s.choices,
        "phases": phases,
        "log": s.log,
        "error": s.error,
        "hint": s.hint,
        "summary": s.summary,
        "monitoring": monitoring,
        "nodes": s.nodes,
        "flavor": s.flavor,
        "watching": s.watching,
    })
}

fn phase_json(p: &crate::plan::PlanPhase) -> serde_json::Value {
    serde_json::json!({
        "id": p.id,
        "description": p.description,
        "state": p.state,
        "seconds": p.duration_secs().map(|s| (s * 10.0).round() / 10.0),
        "error": p.error,
        "phases": p.phases.iter().map(phase_json).collect::<Vec<_>>(),
    })
}

/// Serves `handler` over TLS on `listener` until `stop` completes.
async fn serve<H, F>(
    listener: tokio::net::TcpListener,
    tls: tokio_rustls::TlsAcceptor,
    handler: H,
    stop: impl std::future::Future<Output = ()>,
) where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: std::future::Future<Output = Answer> + Send + 'static,
{
    tokio::pin!(stop);
    // A browser holds a few connections; more than this at once are closed
    // as they come, so that nobody on the network can pile them up.
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    drop(stream);
                    continue;
                };
                let tls = tls.clone();
                let handler = handler.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    let Ok(Ok(stream)) = tokio::time::timeout(Duration::from_secs(15), tls.accept(stream)).await else { return };
                    let svc = service_fn(move |req| {
                        let answer = handler(req);
                        async move { Ok::<_, Infallible>(answer.await) }
                    });
                    let _ = http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(Duration::from_secs(30))
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployment_names_are_dns_names() {
        assert_eq!(deployment_name_problem("k8s-aws-yourcompany"), None);
        assert_eq!(deployment_name_problem("shop"), None);
        assert!(deployment_name_problem("k8s-aws.yourcompany").is_some());
        assert!(deployment_name_problem("").is_some());
        assert!(deployment_name_problem("Shop").is_some());
        assert!(deployment_name_problem("-shop").is_some());
        assert!(deployment_name_problem("shop_x").is_some());
        assert!(deployment_name_problem(&"a".repeat(64))
            .unwrap()
            .contains("at most 63"));
    }

    #[test]
    fn a_logo_is_read_only_from_the_bundle() {
        let d = tempfile::tempdir().unwrap();
        let bundle = d.path().join("b");
        std::fs::create_dir(&bundle).unwrap();
        std::fs::write(bundle.join("logo.png"), b"\x89PNG").unwrap();
        std::fs::write(d.path().join("secret.png"), b"x").unwrap();
        assert_eq!(
            logo_data(&bundle, Some("logo.png")).as_deref(),
            Some("data:image/png;base64,iVBORw==")
        );
        assert_eq!(logo_data(&bundle, Some("../secret.png")), None);
        assert_eq!(logo_data(&bundle, Some("https://example.com/l.png")), None);
        assert_eq!(
            logo_data(&bundle, Some("data:image/png;base64,AA==")).as_deref(),
            Some("data:image/png;base64,AA==")
        );
    }
}
