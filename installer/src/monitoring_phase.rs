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
//! another (`grafana-admin-password`), and Kapacitor's own two users theirs
//! (`kapacitor-tele-installer-password`, `kapacitor-influxdb-subscriber-password`).
//!
//! InfluxDB, Kapacitor and Grafana serve HTTPS with certificates from the
//! cluster CA made here (Secrets `influxdb-tls`, `kapacitor-tls`,
//! `grafana-tls`), renewed with the cluster's own ([`renew_service_certs`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

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
/// Kapacitor's user for the installer (tasks and configuration).
const KAPACITOR_INSTALLER: &str = "tele-installer";
/// Kapacitor's user for InfluxDB's subscription (may only write points).
const KAPACITOR_SUBSCRIBER: &str = "influxdb-subscriber";
/// The stack's services that serve HTTPS with a certificate made here.
const TLS_SERVICES: [&str; 3] = ["influxdb", "kapacitor", "grafana"];

/// Where the password of Kapacitor's user `name` is kept.
fn kapacitor_password_file(secrets: &Path, name: &str) -> PathBuf {
    secrets.join(format!("kapacitor-{name}-password"))
}

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

/// Kapacitor's API in the install at `state_dir`, if it runs one, signed
/// in as the installer's user.
pub fn kapacitor_api(state_dir: &Path) -> anyhow::Result<Option<crate::monitoring::KapacitorApi>> {
    let state = StateDir::new(state_dir);
    let k = crate::phase::kubectl(&state)?;
    let Some(ip) = cluster_ip(&k, "kapacitor") else {
        return Ok(None);
    };
    let file = kapacitor_password_file(&state.monitoring_dir(), KAPACITOR_INSTALLER);
    let password = std::fs::read_to_string(&file)
        .with_context(|| format!("failed to read Kapacitor's password `{}`", file.display()))?;
    Ok(Some(crate::monitoring::KapacitorApi {
        url: format!("https://{ip}:9092"),
        username: KAPACITOR_INSTALLER.into(),
        password: password.trim().to_string(),
        ca_cert: Some(state.pki().ca_cert()),
    }))
}

/// The serving certificate of the stack's `service`, from the cluster CA,
/// for its Service's names, its address `ip` and `extra` names (kept while
/// current), as the Secret `SERVICE-tls`'s YAML; and whether the
/// certificate was (re)issued.
fn service_tls(
    state: &StateDir,
    k: &Kubectl,
    service: &str,
    ip: &str,
    extra: &[String],
    validity: time::Duration,
    reissue: bool,
) -> anyhow::Result<(String, bool)> {
    let ns = tele_assets::monitoring::NAMESPACE;
    let mut sans: Vec<String> = vec![
        format!("{service}.{ns}.svc"),
        service.into(),
        format!("{service}.{ns}"),
        format!("{service}.{ns}.svc.cluster.local"),
        ip.to_string(),
    ];
    sans.extend(extra.iter().cloned());
    let (cert, key, issued) =
        crate::pki::ensure_service_cert(&state.pki_dir(), service, &sans, validity, reissue)?;
    let yaml = k.run(&[
        "create",
        "secret",
        "tls",
        &format!("{service}-tls"),
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

/// Names beside the Service's own in `service`'s certificate: Grafana is
/// reached on a node's address (its NodePort) or through a port-forward.
fn extra_names(cfg: &NodeConfig, service: &str) -> Vec<String> {
    if service == "grafana" {
        vec![
            cfg.node_ip.to_string(),
            "localhost".into(),
            "127.0.0.1".into(),
        ]
    } else {
        Vec::new()
    }
}

/// Renews the serving certificates of the stack's services when due, or at
/// once with `reissue` (on the master that installed the stack): each
/// Secret `SERVICE-tls` is replaced and its Deployment restarted on it, one
/// at a time. The names of the certificates renewed.
pub fn renew_service_certs(
    cfg: &NodeConfig,
    state: &StateDir,
    reissue: bool,
) -> anyhow::Result<Vec<String>> {
    let mut renewed = Vec::new();
    let services: Vec<&str> = TLS_SERVICES
        .into_iter()
        .filter(|s| state.pki().cert(s).is_file())
        .collect();
    if services.is_empty() {
        return Ok(renewed);
    }
    let k = crate::phase::kubectl(state)?;
    for service in services {
        let Some(ip) = cluster_ip(&k, service) else {
            continue;
        };
        let extra = extra_names(cfg, service);
        let (yaml, issued) = service_tls(
            state,
            &k,
            service,
            &ip,
            &extra,
            cfg.cert_validity(),
            reissue,
        )?;
        if issued {
            let file = state
                .app_work_dir()
                .join("monitoring")
                .join(format!("{service}-tls.yaml"));
            write_durably(&file, yaml.as_bytes(), 0o600)?;
            k.apply(&file)?;
            k.run(&[
                "rollout",
                "restart",
                &format!("deployment/{service}"),
                "-n",
                tele_assets::monitoring::NAMESPACE,
            ])?;
            renewed.push(format!("{service}.crt"));
        }
    }
    Ok(renewed)
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
    let kapacitor_installer = kapacitor_password_file(&secrets, KAPACITOR_INSTALLER);
    let kapacitor_subscriber = kapacitor_password_file(&secrets, KAPACITOR_SUBSCRIBER);

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
    let kapacitor_ip = cluster_ip(k, "kapacitor");
    // Kapacitor's users' passwords, made only when the stack runs Kapacitor.
    let mut kapacitor_password = String::new();
    let mut subscriber_password = String::new();
    if kapacitor_ip.is_some() {
        kapacitor_password = password(&kapacitor_installer)?;
        subscriber_password = password(&kapacitor_subscriber)?;
        // Kapacitor's own users, one key per user (the pod's init container
        // makes them).
        secrets_yaml.push(k.run(&[
            "create",
            "secret",
            "generic",
            "kapacitor-users",
            "-n",
            ns,
            &format!(
                "--from-file={KAPACITOR_INSTALLER}={}",
                kapacitor_installer.display()
            ),
            &format!(
                "--from-file={KAPACITOR_SUBSCRIBER}={}",
                kapacitor_subscriber.display()
            ),
            "--dry-run=client",
            "-o",
            "yaml",
        ])?);
    }
    for service in TLS_SERVICES {
        if let Some(ip) = cluster_ip(k, service) {
            let extra = extra_names(cfg, service);
            secrets_yaml
                .push(service_tls(state, k, service, &ip, &extra, cfg.cert_validity(), false)?.0);
        }
    }
    let influx_ip = cluster_ip(k, "influxdb");
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
        if let Some(ip) = &kapacitor_ip {
            crate::monitoring::subscribe_kapacitor(
                &admin,
                &format!("https://{ip}:9092"),
                KAPACITOR_SUBSCRIBER,
                &subscriber_password,
            )?;
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
    if let Some(ip) = &kapacitor_ip {
        let api = crate::monitoring::KapacitorApi {
            url: format!("https://{ip}:9092"),
            username: KAPACITOR_INSTALLER.into(),
            password: kapacitor_password,
            ca_cert: Some(ca.clone()),
        };
        // The default alerts and the users' own: ConfigMaps labelled tele.dev/alerts=true.
        let label = format!("{}=true", tele_assets::monitoring::ALERTS_LABEL);
        let maps = k.run(&["get", "configmaps", "-A", "-l", &label, "-o", "json"])?;
        let alerts = crate::monitoring::alerts_from_config_maps(&serde_json::from_str(&maps)?);
        let pairs: Vec<(&str, &str)> = alerts
            .iter()
            .map(|(n, s)| (n.as_str(), s.as_str()))
            .collect();
        crate::monitoring::load_alerts(&api, &pairs)?;
        crate::alerting::apply(&alerting, &api)?;
        told.push(format!(
            "Kapacitor: {} ({} alerts loaded; user {KAPACITOR_INSTALLER}, its password in {})",
            api.url,
            pairs.len(),
            kapacitor_installer.display()
        ));
    } else if alerting != crate::alerting::AlertingConfig::default() {
        told.push("alert destinations saved; Kapacitor is not part of this install, so no alerts are sent".into());
    }
    if let Some(ip) = cluster_ip(k, "grafana") {
        told.push(format!(
            "Grafana: https://{ip}:3000 (from another machine: kubectl -n {ns} port-forward svc/grafana 3000, \
             then https://localhost:3000; its certificate is from the cluster CA, {}); \
             user {GRAFANA_ADMIN}, its password in {}",
            ca.display(),
            grafana_admin_file.display()
        ));
    }
    Ok(if told.is_empty() {
        "monitoring: no services".into()
    } else {
        told.join("\n")
    })
}
