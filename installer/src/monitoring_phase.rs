//! The install's `/monitoring` phase: the stack from the bundle's
//! `monitoring/` applied and ready, InfluxDB's users, database, retention
//! policies and rollups created, the default alerts loaded into Kapacitor, and
//! `monitoring.json` written so that the agent's node health checker sends its
//! measurements to InfluxDB.
//!
//! Every password is made here (32 random characters, kept 0600 in
//! `STATE/monitoring/`) and reaches the cluster only as a Secret: the
//! InfluxDB admin's stays with the installer; each user of
//! [`crate::monitoring::STACK_USERS`] gets its own, and Grafana's admin
//! another (`grafana-admin-password`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::durable::write_durably;
use crate::health::MonitoringTarget;
use crate::influx::{InfluxClient, InfluxConfig};
use crate::kube::Kubectl;
use crate::node::NodeConfig;
use crate::state_dir::StateDir;

/// Where the stack's manifests keep node data; the installer moves it under
/// the state directory so that everything it writes stays there.
const DATA_BASE: &str = "/var/lib/tele-monitoring";
/// The user the node checkers write with (WRITE on the database only).
const NODE_USER: &str = "tele-node";
const ADMIN_USER: &str = "admin";
/// Grafana's own admin (its web UI), not an InfluxDB user.
const GRAFANA_ADMIN: &str = "admin";

/// Where the password of the InfluxDB user `name` is kept.
fn user_password_file(secrets: &Path, name: &str) -> PathBuf {
    if name == NODE_USER {
        secrets.join("influxdb-node-password")
    } else {
        secrets.join(format!("influxdb-{name}-password"))
    }
}

/// A password of 32 random alphanumerics, kept in `path` (0600); made once.
fn password(path: &Path) -> anyhow::Result<String> {
    if let Ok(p) = std::fs::read_to_string(path) {
        if !p.trim().is_empty() {
            return Ok(p.trim().to_string());
        }
    }
    use std::io::Read;
    let mut raw = [0u8; 64];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut raw)?;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let p: String = raw
        .iter()
        .take(32)
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect();
    write_durably(path, p.as_bytes(), 0o600)?;
    Ok(p)
}

fn cluster_ip(k: &Kubectl, service: &str) -> Option<String> {
    k.run(&[
        "get",
        "service",
        service,
        "-n",
        tele_assets::monitoring::NAMESPACE,
        "-o",
        "jsonpath={.spec.clusterIP}",
    ])
    .ok()
    .map(|s| s.trim().to_string())
    .filter(|s| !s.is_empty())
}

/// Kapacitor's URL in the install at `state_dir`, if it runs one.
pub fn kapacitor_url(state_dir: &Path) -> anyhow::Result<Option<String>> {
    let k = crate::phase::kubectl(&StateDir::new(state_dir))?;
    Ok(cluster_ip(&k, "kapacitor").map(|ip| format!("http://{ip}:9092")))
}

/// InfluxDB's serving certificate, from the cluster CA, for its Service's
/// names and address `ip` (kept while current), as the Secret
/// `influxdb-tls`'s YAML; and whether the certificate was (re)issued.
fn influxdb_tls(
    state: &StateDir,
    k: &Kubectl,
    ip: &str,
    validity: time::Duration,
    reissue: bool,
) -> anyhow::Result<(String, bool)> {
    let ns = tele_assets::monitoring::NAMESPACE;
    let sans: Vec<String> = vec![
        format!("influxdb.{ns}.svc"),
        "influxdb".into(),
        format!("influxdb.{ns}"),
        format!("influxdb.{ns}.svc.cluster.local"),
        ip.to_string(),
    ];
    let (cert, key, issued) =
        crate::pki::ensure_service_cert(&state.pki_dir(), "influxdb", &sans, validity, reissue)?;
    let yaml = k.run(&[
        "create",
        "secret",
        "tls",
        "influxdb-tls",
        "-n",
        ns,
        &format!("--cert={}", cert.display()),
        &format!("--key={}", key.display()),
        "--dry-run=client",
        "-o",
        "yaml",
    ])?;
    Ok((yaml, issued))
}

/// Renews InfluxDB's serving certificate when due, or at once with
/// `reissue` (on the master that installed the stack): the Secret
/// `influxdb-tls` is replaced and InfluxDB restarted on it (its data is on
/// its claim). True when it was renewed.
pub fn renew_influxdb_cert(
    cfg: &NodeConfig,
    state: &StateDir,
    reissue: bool,
) -> anyhow::Result<bool> {
    if !state.pki().cert("influxdb").is_file() {
        return Ok(false);
    }
    let k = crate::phase::kubectl(state)?;
    let Some(ip) = cluster_ip(&k, "influxdb") else {
        return Ok(false);
    };
    let (yaml, issued) = influxdb_tls(state, &k, &ip, cfg.cert_validity(), reissue)?;
    if issued {
        let file = state
            .app_work_dir()
            .join("monitoring")
            .join("influxdb-tls.yaml");
        write_durably(&file, yaml.as_bytes(), 0o600)?;
        k.apply(&file)?;
        k.run(&[
            "rollout",
            "restart",
            "deployment/influxdb",
            "-n",
            tele_assets::monitoring::NAMESPACE,
        ])?;
    }
    Ok(issued)
}

/// Runs the phase; returns what to tell the user (where Grafana is).
pub fn install_monitoring(
    cfg: &NodeConfig,
    state: &StateDir,
    bundle: &Path,
    k: &Kubectl,
) -> anyhow::Result<String> {
    let ns = tele_assets::monitoring::NAMESPACE;
    let dir = bundle.join("monitoring");
    let secrets = state.monitoring_dir();
    let admin_password = password(&secrets.join("influxdb-admin-password"))?;
    let node_password_file = user_password_file(&secrets, NODE_USER);
    let grafana_admin_file = secrets.join("grafana-admin-password");
    password(&grafana_admin_file)?;
    let mut users = Vec::new();
    for u in crate::monitoring::STACK_USERS {
        users.push((u, password(&user_password_file(&secrets, u.name))?));
    }

    // The namespace, then the credentials the stack reads, then the stack.
    let mut files: Vec<PathBuf> = walkdir::WalkDir::new(&dir)
        .sort_by_file_name()
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_type().is_file()
                && e.path()
                    .extension()
                    .is_some_and(|x| x == "yaml" || x == "yml")
        })
        .map(|e| e.into_path())
        .collect();
    files.sort_by_key(|p| !p.ends_with("namespace.yaml"));
    let work = state.app_work_dir().join("monitoring");
    let data = state.monitoring_data();
    let mut rendered = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f)?.replace(DATA_BASE, &data.display().to_string());
        let path = work.join(f.file_name().expect("file name"));
        write_durably(&path, text.as_bytes(), 0o600)?;
        rendered.push((path, text));
    }
    // Namespace and Services first: InfluxDB's certificate names the
    // Service's address, and pods see the Services' environment variables
    // only when the Services exist before them.
    let mut first = Vec::new();
    for (_, text) in &rendered {
        first.extend(
            crate::kube::documents(text)
                .into_iter()
                .filter(|(kind, _)| kind == "Namespace" || kind == "Service")
                .map(|(_, d)| d),
        );
    }
    let first_file = work.join("00-namespace-services.yaml");
    write_durably(&first_file, first.join("---\n").as_bytes(), 0o600)?;
    k.apply(&first_file)?;
    // Each pod's own credentials (the passwords go by file, never on a
    // command line); the InfluxDB admin's stay here.
    let mut secrets_yaml = Vec::new();
    let mut credentials = vec![("grafana-admin", GRAFANA_ADMIN, grafana_admin_file.clone())];
    for (u, _) in &users {
        if let Some(secret) = u.secret {
            credentials.push((secret, u.name, user_password_file(&secrets, u.name)));
        }
    }
    for (secret, user, file) in &credentials {
        secrets_yaml.push(k.run(&[
            "create",
            "secret",
            "generic",
            secret,
            "-n",
            ns,
            &format!("--from-literal=username={user}"),
            &format!("--from-file=password={}", file.display()),
            "--dry-run=client",
            "-o",
            "yaml",
        ])?);
    }
    let influx_ip = cluster_ip(k, "influxdb");
    if let Some(ip) = &influx_ip {
        secrets_yaml.push(influxdb_tls(state, k, ip, cfg.cert_validity(), false)?.0);
    }
    let secret_file = work.join("secrets.yaml");
    write_durably(&secret_file, secrets_yaml.join("---\n").as_bytes(), 0o600)?;
    k.apply(&secret_file)?;
    let mut applied = Vec::new();
    for (path, _) in &rendered {
        applied.extend(k.apply(path)?);
    }
    let timeout = Duration::from_secs(cfg.app_timeout_secs);
    for obj in &applied {
        k.wait_ready(obj, timeout)?;
    }

    let mut told = Vec::new();
    let ca = state.pki().ca_cert();
    if let Some(ip) = influx_ip {
        let url = format!("https://{ip}:8086");
        let admin = InfluxClient::new(InfluxConfig {
            url: url.clone(),
            username: Some(ADMIN_USER.into()),
            password: Some(admin_password.clone()),
            ca_cert: Some(ca.clone()),
        })?;
        crate::kube::poll(Duration::from_secs(120), "InfluxDB to answer", || {
            Ok(admin.ping())
        })?;
        crate::monitoring::setup_influxdb(&admin, ADMIN_USER, &admin_password)?;
        let db = crate::monitoring::DATABASE;
        for (u, password) in &users {
            crate::monitoring::ensure_user(&admin, u.name, password, u.access)?;
        }
        if let Some(ip) = cluster_ip(k, "kapacitor") {
            crate::monitoring::subscribe_kapacitor(&admin, &format!("http://{ip}:9092"))?;
        }
        let target = MonitoringTarget {
            url: url.clone(),
            database: db.into(),
            retention_policy: None,
            username: Some(NODE_USER.into()),
            password_file: Some(node_password_file),
            ca_cert: Some(ca.clone()),
        };
        let mut bytes = serde_json::to_vec_pretty(&target)?;
        bytes.push(b'\n');
        write_durably(&state.monitoring_target(), &bytes, 0o600)?;
        told.push(format!(
            "InfluxDB: {url} (database {db}; admin password in {})",
            secrets.join("influxdb-admin-password").display()
        ));
    }
    let alerting = crate::alerting::load(state.root())?;
    if let Some(ip) = cluster_ip(k, "kapacitor") {
        let url = format!("http://{ip}:9092");
        // The default alerts and the users' own: ConfigMaps labelled tele.dev/alerts=true.
        let label = format!("{}=true", tele_assets::monitoring::ALERTS_LABEL);
        let maps = k.run(&["get", "configmaps", "-A", "-l", &label, "-o", "json"])?;
        let alerts = crate::monitoring::alerts_from_config_maps(&serde_json::from_str(&maps)?);
        let pairs: Vec<(&str, &str)> = alerts
            .iter()
            .map(|(n, s)| (n.as_str(), s.as_str()))
            .collect();
        crate::monitoring::load_alerts(&url, &pairs)?;
        crate::alerting::apply(&alerting, &url)?;
        told.push(format!("Kapacitor: {url} ({} alerts loaded)", pairs.len()));
    } else if alerting != crate::alerting::AlertingConfig::default() {
        told.push("alert destinations saved; Kapacitor is not part of this install, so no alerts are sent".into());
    }
    if let Some(ip) = cluster_ip(k, "grafana") {
        told.push(format!(
            "Grafana: http://{ip}:3000 (from another machine: kubectl -n {ns} port-forward svc/grafana 3000); \
             user {GRAFANA_ADMIN}, its password in {}",
            grafana_admin_file.display()
        ));
    }
    Ok(if told.is_empty() {
        "monitoring: no services".into()
    } else {
        told.join("\n")
    })
}
