//! The monitoring stack's install-time setup, after its manifests
//! (`tele_assets::render`) are applied: InfluxDB's admin user, database,
//! retention policies and rollups; the alert TICKscripts loaded into
//! Kapacitor; where Kapacitor sends alerts (SMTP, a webhook).
//!
//! Everything here is idempotent: a resumed install runs it again.

use std::time::Duration;

use anyhow::{bail, Context};
use serde::Deserialize;

use crate::influx::InfluxClient;

/// The database Telegraf, Kapacitor, Grafana and the node health checker use.
pub const DATABASE: &str = "k8s";

/// A retention policy of [`DATABASE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Its name.
    pub name: &'static str,
    /// How long points are kept, in InfluxQL duration syntax.
    pub duration: &'static str,
    /// Whether writes without an explicit policy land here.
    pub default: bool,
}

/// Raw points for a day (the default: every writer lands here), 5-minute
/// means for four weeks, hourly means for a year.
pub const RETENTION_POLICIES: [RetentionPolicy; 3] = [
    RetentionPolicy {
        name: "raw",
        duration: "24h",
        default: true,
    },
    RetentionPolicy {
        name: "medium",
        duration: "4w",
        default: false,
    },
    RetentionPolicy {
        name: "long",
        duration: "52w",
        default: false,
    },
];

/// A rollup: a continuous query writing the means of every numeric field of
/// every measurement in `raw` into a longer retention policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rollup {
    /// The continuous query's name.
    pub name: &'static str,
    /// The retention policy it writes into.
    pub into: &'static str,
    /// The GROUP BY time interval.
    pub interval: &'static str,
}

/// raw → medium (5m means), raw → long (1h means).
pub const ROLLUPS: [Rollup; 2] = [
    Rollup {
        name: "rollup_medium",
        into: "medium",
        interval: "5m",
    },
    Rollup {
        name: "rollup_long",
        into: "long",
        interval: "1h",
    },
];

impl Rollup {
    /// The rollup's SELECT ... INTO, with an optional extra WHERE condition
    /// (e.g. a time range, to backfill). Field `f` becomes `mean_f`; tags
    /// are kept (`GROUP BY *`).
    pub fn select_into(&self, condition: Option<&str>) -> String {
        let filter = condition.map(|c| format!(" WHERE {c}")).unwrap_or_default();
        format!(
            "SELECT mean(*) INTO {db}.{into}.:MEASUREMENT FROM {db}.\"raw\"./.*/{filter} GROUP BY time({interval}), *",
            db = quote_ident(DATABASE),
            into = quote_ident(self.into),
            interval = self.interval,
        )
    }

    /// The CREATE CONTINUOUS QUERY statement.
    pub fn create_statement(&self) -> String {
        format!(
            "CREATE CONTINUOUS QUERY {name} ON {db} BEGIN {select} END",
            name = quote_ident(self.name),
            db = quote_ident(DATABASE),
            select = self.select_into(None),
        )
    }
}

/// Statements that create the database, retention policies (raw 24h
/// DEFAULT, medium 4w, long 52w) and continuous queries rolling raw data up
/// into medium (5m means) and long (1h means). Running them again changes
/// nothing: CREATE DATABASE and CREATE RETENTION POLICY with the same
/// settings are no-ops, ALTER puts back changed settings, and each
/// continuous query is dropped and created again (InfluxDB cannot replace
/// one; dropping one that does not exist is accepted (1.6) or a "not found"
/// error that is ignored, see
/// [`setup_influxdb`]).
pub fn setup_statements() -> Vec<String> {
    let db = quote_ident(DATABASE);
    let mut out = vec![format!("CREATE DATABASE {db}")];
    for rp in RETENTION_POLICIES {
        let default = if rp.default { " DEFAULT" } else { "" };
        let name = quote_ident(rp.name);
        out.push(format!(
            "CREATE RETENTION POLICY {name} ON {db} DURATION {} REPLICATION 1{default}",
            rp.duration
        ));
        out.push(format!(
            "ALTER RETENTION POLICY {name} ON {db} DURATION {} REPLICATION 1{default}",
            rp.duration
        ));
    }
    for rollup in ROLLUPS {
        out.push(format!(
            "DROP CONTINUOUS QUERY {} ON {db}",
            quote_ident(rollup.name)
        ));
        out.push(rollup.create_statement());
    }
    out
}

/// Creates the admin user (InfluxDB allows this one statement without
/// credentials while auth is on and no user exists; afterwards `client`
/// must carry these same credentials), then runs [`setup_statements`].
pub fn setup_influxdb(
    client: &InfluxClient,
    admin_user: &str,
    admin_password: &str,
) -> Result<(), anyhow::Error> {
    let create_user = format!(
        "CREATE USER {} WITH PASSWORD {} WITH ALL PRIVILEGES",
        quote_ident(admin_user),
        quote_string(admin_password)
    );
    client
        .query(None, &create_user)
        .with_context(|| format!("failed to create the InfluxDB admin user `{admin_user}`"))?;
    for statement in setup_statements() {
        match client.query(None, &statement) {
            Ok(_) => {}
            // A first setup has no continuous query to drop.
            Err(e) if statement.starts_with("DROP CONTINUOUS QUERY") && is_not_found(&e) => {}
            Err(e) => return Err(e).context("failed to set up InfluxDB's database `k8s`"),
        }
    }
    Ok(())
}

fn is_not_found(e: &crate::influx::InfluxError) -> bool {
    e.to_string().contains("not found")
}

/// An InfluxQL identifier in double quotes.
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// An InfluxQL string literal in single quotes.
pub fn quote_string(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// Kapacitor's API: where it is, and the user the installer signs in as
/// (Kapacitor's own user `tele-installer`, which may manage tasks and the
/// configuration and nothing else).
#[derive(Clone)]
pub struct KapacitorApi {
    /// `https://ADDRESS:9092`.
    pub url: String,
    /// The user.
    pub username: String,
    /// Its password.
    pub password: String,
    /// The CA that signed Kapacitor's certificate (the cluster CA); `None`
    /// trusts the system's roots (a plain-HTTP URL needs none).
    pub ca_cert: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for KapacitorApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KapacitorApi")
            .field("url", &self.url)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl KapacitorApi {
    fn base(&self) -> &str {
        self.url.trim_end_matches('/')
    }

    fn http(&self) -> Result<reqwest::blocking::Client, anyhow::Error> {
        let mut builder = reqwest::blocking::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .no_proxy();
        if let Some(ca) = &self.ca_cert {
            let pem = std::fs::read(ca)
                .with_context(|| format!("failed to read the CA `{}`", ca.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .with_context(|| format!("invalid CA `{}`", ca.display()))?;
            builder = builder.tls_certs_only(certs);
        }
        builder
            .build()
            .context("failed to make an HTTP client for Kapacitor")
    }

    /// Sends one request, signed in; an answer outside `ok` is an error
    /// with Kapacitor's own message.
    fn call(
        &self,
        req: reqwest::blocking::RequestBuilder,
        what: &str,
        ok: &[u16],
    ) -> Result<(), anyhow::Error> {
        let resp = req
            .basic_auth(&self.username, Some(&self.password))
            .send()
            .map_err(|e| e.without_url())
            .with_context(|| format!("failed to {what}: Kapacitor cannot be reached"))?;
        let status = resp.status().as_u16();
        if ok.contains(&status) {
            return Ok(());
        }
        let body = resp.text().unwrap_or_default();
        let message = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(String::from))
            .unwrap_or_else(|| body.trim().to_string());
        if status == 401 {
            bail!(
                "failed to {what}: Kapacitor refused the user `{}` (401: {message})\n\
                 hint: the init container `users` of the Kapacitor pod sets that user's password \
                 from the Secret `kapacitor-users`; restart the pod \
                 (kubectl -n monitoring rollout restart deployment/kapacitor) to set it again",
                self.username
            )
        }
        bail!("failed to {what}: Kapacitor answered {status}: {message}")
    }
}

/// Loads each TICKscript into Kapacitor through its HTTP API as an enabled
/// stream task on `k8s.raw` whose id is the alert's name (POST
/// /kapacitor/v1/tasks), deleting first any task of that id, so a changed
/// script replaces the old one.
pub fn load_alerts(api: &KapacitorApi, alerts: &[(&str, &str)]) -> Result<(), anyhow::Error> {
    let base = api.base();
    let http = api.http()?;
    for (id, script) in alerts {
        if id.is_empty()
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            bail!("alert `{id}`: a task id is letters, digits, `-`, `_` and `.`");
        }
        api.call(
            http.delete(format!("{base}/kapacitor/v1/tasks/{id}")),
            &format!("replace the Kapacitor task `{id}`"),
            &[204, 404],
        )?;
        let task = serde_json::json!({
            "id": id,
            "type": "stream",
            "dbrps": [{"db": DATABASE, "rp": "raw"}],
            "script": script,
            "status": "enabled",
        });
        api.call(
            http.post(format!("{base}/kapacitor/v1/tasks")).json(&task),
            &format!("load the alert `{id}` into Kapacitor"),
            &[200],
        )?;
    }
    Ok(())
}

/// The alerts in the output of `kubectl get configmaps -n monitoring -l
/// tele.dev/alerts=true -o json`: every `NAME.tick` key of every ConfigMap,
/// as (NAME, script), sorted by name; the first ConfigMap (by name) wins a
/// name given twice.
pub fn alerts_from_config_maps(list: &serde_json::Value) -> Vec<(String, String)> {
    let mut maps: Vec<&serde_json::Value> =
        list["items"].as_array().into_iter().flatten().collect();
    maps.sort_by_key(|m| {
        m["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    });
    let mut alerts: Vec<(String, String)> = Vec::new();
    for map in maps {
        for (key, value) in map["data"].as_object().into_iter().flatten() {
            let (Some(name), Some(script)) = (key.strip_suffix(".tick"), value.as_str()) else {
                continue;
            };
            if !alerts.iter().any(|(n, _)| n == name) {
                alerts.push((name.to_string(), script.to_string()));
            }
        }
    }
    alerts.sort();
    alerts
}

/// A `--config` resource of `kind: smtp`: the mail server alerts go
/// through.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Smtp {
    /// The server's host name or address.
    pub host: String,
    /// Its port (25, 465, 587...).
    pub port: u16,
    /// The login, if the server wants one.
    #[serde(default)]
    pub username: Option<String>,
    /// A file on the installing machine holding the password (read at
    /// install, never copied into the bundle).
    #[serde(default)]
    pub password_file: Option<std::path::PathBuf>,
    /// The sender address.
    pub from: String,
    /// The recipients.
    pub to: Vec<String>,
}

/// A `--config` resource of `kind: alerttarget`: a webhook every alert is
/// POSTed to as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertTarget {
    /// `http(s)://...`.
    pub url: String,
}

impl Smtp {
    /// Reads the `spec` of a `kind: smtp` resource.
    pub fn from_spec(spec: &serde_json::Value) -> Result<Self, anyhow::Error> {
        let smtp: Smtp = serde_json::from_value(spec.clone()).context("kind smtp: spec")?;
        if smtp.to.is_empty() {
            bail!("kind smtp: spec.to: at least one recipient is needed");
        }
        Ok(smtp)
    }
}

impl AlertTarget {
    /// Reads the `spec` of a `kind: alerttarget` resource.
    pub fn from_spec(spec: &serde_json::Value) -> Result<Self, anyhow::Error> {
        let target: AlertTarget =
            serde_json::from_value(spec.clone()).context("kind alerttarget: spec")?;
        if !(target.url.starts_with("http://") || target.url.starts_with("https://")) {
            bail!("kind alerttarget: spec.url: expected an http:// or https:// URL");
        }
        Ok(target)
    }
}

/// Points Kapacitor's `.email()` and `.post().endpoint('alerttarget')`
/// handlers at the given server and webhook through its config API
/// (POST /kapacitor/v1/config/...). Kapacitor keeps these overrides in its
/// own store, so no password sits in a ConfigMap, and changing them later
/// needs no redeploy. A `None` leaves that handler as it was.
pub fn configure_alert_handlers(
    api: &KapacitorApi,
    smtp: Option<&Smtp>,
    target: Option<&AlertTarget>,
) -> Result<(), anyhow::Error> {
    let base = api.base();
    let http = api.http()?;
    if let Some(smtp) = smtp {
        let password = match &smtp.password_file {
            Some(path) => std::fs::read_to_string(path)
                .with_context(|| format!("failed to read `{}`", path.display()))?
                .trim_end_matches(['\r', '\n'])
                .to_string(),
            None => String::new(),
        };
        let set = serde_json::json!({"set": {
            "enabled": true,
            "host": smtp.host,
            "port": smtp.port,
            "username": smtp.username.clone().unwrap_or_default(),
            "password": password,
            "from": smtp.from,
            "to": smtp.to,
        }});
        api.call(
            http.post(format!("{base}/kapacitor/v1/config/smtp"))
                .json(&set),
            "configure Kapacitor's SMTP handler",
            &[204],
        )?;
    }
    if let Some(target) = target {
        let set = serde_json::json!({"set": {"url": target.url}});
        api.call(
            http.post(format!("{base}/kapacitor/v1/config/httppost/alerttarget"))
                .json(&set),
            "configure Kapacitor's alert webhook",
            &[204],
        )?;
    }
    Ok(())
}

/// What an InfluxDB user of the stack may do on [`DATABASE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Query only.
    Read,
    /// Write points only.
    Write,
}

impl Access {
    fn keyword(self) -> &'static str {
        match self {
            Access::Read => "READ",
            Access::Write => "WRITE",
        }
    }
}

/// A user of the monitoring stack in InfluxDB, with the Secret that holds
/// its credentials in the `monitoring` namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StackUser {
    /// The InfluxDB user.
    pub name: &'static str,
    /// Its only privilege, on [`DATABASE`].
    pub access: Access,
    /// The Secret (`username`, `password`) its pods read; None for the
    /// node health checkers, which run outside the cluster.
    pub secret: Option<&'static str>,
}

/// Each reader and writer has its own user with only what it needs:
/// Telegraf and the node health checkers write, Grafana and Kapacitor read
/// (Kapacitor gets its stream from a subscription the installer makes as
/// admin). The admin is the installer's alone.
pub const STACK_USERS: [StackUser; 4] = [
    StackUser {
        name: "tele-node",
        access: Access::Write,
        secret: None,
    },
    StackUser {
        name: "telegraf",
        access: Access::Write,
        secret: Some("influxdb-telegraf"),
    },
    StackUser {
        name: "grafana",
        access: Access::Read,
        secret: Some("influxdb-grafana"),
    },
    StackUser {
        name: "kapacitor",
        access: Access::Read,
        secret: Some("influxdb-kapacitor"),
    },
];

/// Makes `name` a non-admin user of InfluxDB with `password` and exactly
/// `access` on [`DATABASE`] (any other privilege it had is revoked). Run
/// as the admin; idempotent.
pub fn ensure_user(
    admin: &InfluxClient,
    name: &str,
    password: &str,
    access: Access,
) -> Result<(), anyhow::Error> {
    let users = admin.query(None, "SHOW USERS")?;
    let exists = users["results"][0]["series"][0]["values"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|row| row[0].as_str() == Some(name));
    let user = quote_ident(name);
    let set = if exists {
        format!("SET PASSWORD FOR {user} = {}", quote_string(password))
    } else {
        format!(
            "CREATE USER {user} WITH PASSWORD {}",
            quote_string(password)
        )
    };
    admin
        .query(None, &set)
        .with_context(|| format!("failed to set up the InfluxDB user `{name}`"))?;
    let db = quote_ident(DATABASE);
    admin
        .query(
            None,
            &format!(
                "REVOKE ALL PRIVILEGES FROM {user}; REVOKE ALL ON {db} FROM {user}; GRANT {} ON {db} TO {user}",
                access.keyword()
            ),
        )
        .with_context(|| format!("failed to grant the InfluxDB user `{name}` its privilege"))?;
    Ok(())
}

/// The subscription that streams what is written to `k8s.raw` to Kapacitor
/// at `kapacitor_url` (`https://ADDRESS:9092`), made (again) by the admin:
/// Kapacitor's own InfluxDB user may only read, and InfluxDB lets only an
/// admin subscribe. InfluxDB signs its pushes in as `user` (Kapacitor's
/// write-only user): the only way InfluxDB takes credentials for a
/// subscription is in its destination URL, which only an admin can list and
/// which InfluxDB sends as an Authorization header, never in a request line.
/// The password is in no error.
pub fn subscribe_kapacitor(
    admin: &InfluxClient,
    kapacitor_url: &str,
    user: &str,
    password: &str,
) -> Result<(), anyhow::Error> {
    let mut destination = reqwest::Url::parse(kapacitor_url)
        .with_context(|| format!("invalid Kapacitor URL `{kapacitor_url}`"))?;
    destination
        .set_username(user)
        .and_then(|_| destination.set_password(Some(password)))
        .map_err(|_| anyhow::anyhow!("Kapacitor URL `{kapacitor_url}` takes no credentials"))?;
    let db = quote_ident(DATABASE);
    let _ = admin.query(
        None,
        &format!("DROP SUBSCRIPTION \"kapacitor\" ON {db}.\"raw\""),
    );
    let created = admin.query(
        None,
        &format!(
            "CREATE SUBSCRIPTION \"kapacitor\" ON {db}.\"raw\" DESTINATIONS ALL {}",
            quote_string(destination.as_str())
        ),
    );
    if let Err(e) = created {
        let text = match &e {
            crate::influx::InfluxError::Statement { error, .. } => error.clone(),
            other => other.to_string(),
        };
        let text = if password.is_empty() {
            text
        } else {
            text.replace(password, "[redacted]")
        };
        bail!("failed to subscribe Kapacitor ({kapacitor_url}) to InfluxDB: {text}");
    }
    Ok(())
}

/// A Secret `name` (keys `username`, `password`) in the `monitoring`
/// namespace, for a pod of the stack; created by the installer before the
/// stack is applied, never part of the bundle.
pub fn credentials_secret(name: &str, username: &str, password: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": tele_assets::NAMESPACE,
            "labels": {"app.kubernetes.io/part-of": "tele-monitoring"},
        },
        "type": "Opaque",
        "stringData": {"username": username, "password": password},
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;
    use std::sync::{Arc, Mutex};

    #[test]
    fn alerts_come_from_every_labelled_config_map() {
        let list = serde_json::json!({"items": [
            {"metadata": {"name": "z-mine"}, "data": {"disk.tick": "mine", "high-cpu.tick": "dup", "notes.txt": "x"}},
            {"metadata": {"name": "kapacitor-alerts"}, "data": {"high-cpu.tick": "default"}},
        ]});
        assert_eq!(
            alerts_from_config_maps(&list),
            [
                ("disk".to_string(), "mine".to_string()),
                ("high-cpu".to_string(), "default".to_string())
            ]
        );
    }

    #[test]
    fn statements_create_database_policies_and_rollups() {
        let s = setup_statements();
        assert_eq!(s[0], r#"CREATE DATABASE "k8s""#);
        assert!(s.contains(
            &r#"CREATE RETENTION POLICY "raw" ON "k8s" DURATION 24h REPLICATION 1 DEFAULT"#
                .to_string()
        ));
        assert!(s.contains(
            &r#"CREATE RETENTION POLICY "medium" ON "k8s" DURATION 4w REPLICATION 1"#.to_string()
        ));
        assert!(s.contains(
            &r#"CREATE RETENTION POLICY "long" ON "k8s" DURATION 52w REPLICATION 1"#.to_string()
        ));
        assert!(s.contains(&concat!(
            r#"CREATE CONTINUOUS QUERY "rollup_medium" ON "k8s" BEGIN SELECT mean(*) INTO "k8s"."medium".:MEASUREMENT"#,
            r#" FROM "k8s"."raw"./.*/ GROUP BY time(5m), * END"#
        ).to_string()));
        assert!(s
            .iter()
            .any(|q| q.contains(r#""rollup_long""#) && q.contains("time(1h)")));
        // Each CQ is dropped before it is created.
        for r in ROLLUPS {
            let drop = s
                .iter()
                .position(|q| q.starts_with("DROP") && q.contains(r.name));
            let create = s
                .iter()
                .position(|q| q.starts_with("CREATE CONTINUOUS") && q.contains(r.name));
            assert!(drop.unwrap() < create.unwrap());
        }
    }

    #[test]
    fn quoting_escapes_quotes_and_backslashes() {
        assert_eq!(quote_ident(r#"a"b"#), r#""a\"b""#);
        assert_eq!(quote_string(r"it's \ x"), r"'it\'s \\ x'");
    }

    #[test]
    fn resources_are_read_and_checked() {
        let smtp = Smtp::from_spec(&serde_json::json!({
            "host": "mail.example.com", "port": 587, "username": "alerts",
            "passwordFile": "/root/smtp-password", "from": "k8s@example.com",
            "to": ["ops@example.com"]
        }))
        .unwrap();
        assert_eq!(smtp.port, 587);
        assert!(Smtp::from_spec(&serde_json::json!({
            "host": "h", "port": 25, "from": "a@b", "to": [], }))
        .is_err());
        let err = Smtp::from_spec(&serde_json::json!({
            "host": "h", "port": 25, "from": "a@b", "to": ["x@y"], "pasword": "p"}))
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("unknown field `pasword`"),
            "{err:#}"
        );
        assert!(AlertTarget::from_spec(&serde_json::json!({"url": "ftp://x"})).is_err());
        AlertTarget::from_spec(&serde_json::json!({"url": "https://hooks.example.com/a"})).unwrap();
    }

    /// One recorded request: method, path, body, Authorization header.
    type Recorded = Arc<Mutex<Vec<(String, String, String, String)>>>;

    /// The fake Kapacitor at `url`, signed in as a test user.
    fn api(url: &str) -> KapacitorApi {
        KapacitorApi {
            url: url.to_string(),
            username: "tele-installer".into(),
            password: "pw-4f1c".into(),
            ca_cert: None,
        }
    }

    /// A loopback HTTP server standing in for Kapacitor (none can be had
    /// here): records every request and answers per `answer(method, path)`.
    fn fake_kapacitor(answer: fn(&str, &str) -> (u16, &'static str)) -> (String, Recorded) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen: Recorded = Arc::default();
        let log = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let mut parts = line.split_whitespace();
                let method = parts.next().unwrap_or("").to_string();
                let path = parts.next().unwrap_or("").to_string();
                let mut length = 0;
                let mut authorization = String::new();
                loop {
                    let mut header = String::new();
                    reader.read_line(&mut header).unwrap();
                    if header.trim().is_empty() {
                        break;
                    }
                    if let Some((k, v)) = header.split_once(':') {
                        if k.eq_ignore_ascii_case("content-length") {
                            length = v.trim().parse().unwrap();
                        }
                        if k.eq_ignore_ascii_case("authorization") {
                            authorization = v.trim().to_string();
                        }
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                let (status, reply) = answer(&method, &path);
                log.lock().unwrap().push((
                    method,
                    path,
                    String::from_utf8(body).unwrap(),
                    authorization,
                ));
                write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
                    reply.len()
                )
                .unwrap();
            }
        });
        (url, seen)
    }

    #[test]
    fn alerts_are_loaded_as_enabled_stream_tasks_replacing_old_ones() {
        let (url, seen) = fake_kapacitor(|method, path| match (method, path) {
            ("DELETE", "/kapacitor/v1/tasks/cpu") => (204, ""),
            ("DELETE", _) => (404, r#"{"error":"no task exists"}"#),
            ("POST", "/kapacitor/v1/tasks") => (200, "{}"),
            _ => (500, r#"{"error":"unexpected"}"#),
        });
        load_alerts(
            &api(&format!("{url}/")),
            &[("cpu", "stream|from()"), ("disk", "stream")],
        )
        .unwrap();
        let seen = seen.lock().unwrap();
        let calls: Vec<_> = seen.iter().map(|(m, p, ..)| format!("{m} {p}")).collect();
        // Every request is signed in (base64 of tele-installer:pw-4f1c).
        for (.., authorization) in seen.iter() {
            assert_eq!(authorization, "Basic dGVsZS1pbnN0YWxsZXI6cHctNGYxYw==");
        }
        assert_eq!(
            calls,
            [
                "DELETE /kapacitor/v1/tasks/cpu",
                "POST /kapacitor/v1/tasks",
                "DELETE /kapacitor/v1/tasks/disk",
                "POST /kapacitor/v1/tasks"
            ]
        );
        let task: serde_json::Value = serde_json::from_str(&seen[1].2).unwrap();
        assert_eq!(
            task,
            serde_json::json!({"id": "cpu", "type": "stream", "status": "enabled",
                "dbrps": [{"db": "k8s", "rp": "raw"}], "script": "stream|from()"})
        );
    }

    #[test]
    fn a_script_kapacitor_rejects_is_an_error_with_its_message() {
        let (url, _) = fake_kapacitor(|method, _| match method {
            "DELETE" => (404, ""),
            _ => (
                400,
                r#"{"error":"invalid TICKscript: parser: unexpected )"}"#,
            ),
        });
        let err = load_alerts(&api(&url), &[("bad", "stream|from())")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "failed to load the alert `bad` into Kapacitor: Kapacitor answered 400: invalid TICKscript: parser: unexpected )"
        );
        assert!(load_alerts(&api(&url), &[("a b", "")]).is_err());
    }

    #[test]
    fn a_refused_user_is_an_error_that_says_how_to_set_it_again() {
        let (url, _) = fake_kapacitor(|_, _| (401, r#"{"error":"authentication failed"}"#));
        let err = load_alerts(&api(&url), &[("cpu", "stream")]).unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.contains("Kapacitor refused the user `tele-installer`")
                && text.contains("kapacitor-users")
                && !text.contains("pw-4f1c"),
            "{text}"
        );
    }

    #[test]
    fn handlers_are_set_through_the_config_api() {
        let (url, seen) = fake_kapacitor(|_, _| (204, ""));
        let dir = tempfile::tempdir().unwrap();
        let password = dir.path().join("pw");
        std::fs::write(&password, "s3cret\n").unwrap();
        let smtp = Smtp {
            host: "mail.example.com".into(),
            port: 587,
            username: Some("alerts".into()),
            password_file: Some(password),
            from: "k8s@example.com".into(),
            to: vec!["ops@example.com".into()],
        };
        let target = AlertTarget {
            url: "https://hooks.example.com/x".into(),
        };
        configure_alert_handlers(&api(&url), Some(&smtp), Some(&target)).unwrap();
        let seen = seen.lock().unwrap();
        assert_eq!(seen[0].1, "/kapacitor/v1/config/smtp");
        let body: serde_json::Value = serde_json::from_str(&seen[0].2).unwrap();
        assert_eq!(body["set"]["password"], "s3cret");
        assert_eq!(body["set"]["enabled"], true);
        assert_eq!(body["set"]["to"][0], "ops@example.com");
        assert_eq!(seen[1].1, "/kapacitor/v1/config/httppost/alerttarget");
        assert_eq!(
            seen[1].2,
            r#"{"set":{"url":"https://hooks.example.com/x"}}"#
        );
    }

    #[test]
    fn kapacitor_down_is_an_error_not_a_hang() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let err =
            load_alerts(&api(&format!("http://127.0.0.1:{port}")), &[("a", "s")]).unwrap_err();
        assert!(
            format!("{err:#}").contains("Kapacitor cannot be reached"),
            "{err:#}"
        );
    }
}
