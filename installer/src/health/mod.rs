//! The node health checker (the case study's "Satellite"), run by the tele
//! agent on every node.
//!
//! Every interval it checks disk and inodes, br_netfilter, IP forwarding,
//! etcd, containerd, the kubelet, the node's readiness and the clock's drift
//! ([`run_checks`]), writes the results to `<state>/health/latest.json` (what
//! `tele status` shows, see [`latest`]) and sends them to InfluxDB as one
//! point per check: the measurement is the check's name, tagged `node`, with
//! an `ok` field and the check's numeric fields.
//!
//! Where InfluxDB is comes from `<state>/monitoring.json` ([`MonitoringTarget`]),
//! read every round so that it may appear after the agent started. While it
//! is missing or InfluxDB does not accept the points, they go to an on-disk
//! buffer (`<state>/health/buffer/`, bounded, oldest dropped first) that is
//! sent, oldest first, once InfluxDB answers; nothing is lost across a
//! restart of the agent.

mod buffer;
mod checks;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::influx::{FieldValue, InfluxClient, InfluxConfig, InfluxError, Point};
use buffer::DiskBuffer;
pub(crate) use checks::error_chain;
use checks::Probes;

/// The default interval between rounds.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
/// The default bound of the on-disk buffer.
pub const DEFAULT_BUFFER_BYTES: u64 = 64 << 20;
/// Lines per `/write` request when the buffer is sent.
const WRITE_BATCH: usize = 5000;

/// How to reach etcd's client endpoint.
#[derive(Clone, Debug, PartialEq)]
pub struct EtcdProbe {
    /// `https://127.0.0.1:2379`.
    pub endpoint: String,
    /// The CA that signed etcd's certificate.
    pub ca: PathBuf,
    /// A client certificate etcd accepts.
    pub cert: PathBuf,
    /// Its key.
    pub key: PathBuf,
}

/// What the checker checks and where it keeps its files.
#[derive(Clone, Debug, PartialEq)]
pub struct HealthConfig {
    /// The install's state directory.
    pub state_dir: PathBuf,
    /// The node's name: the `node` tag of every point.
    pub node_name: String,
    /// Time between rounds.
    pub interval: Duration,
    /// etcd, when this node runs it.
    pub etcd: Option<EtcdProbe>,
    /// containerd's socket.
    pub containerd_sock: Option<PathBuf>,
    /// The kubelet's healthz URL (`http://127.0.0.1:10248/healthz`).
    pub kubelet_healthz: Option<String>,
    /// A kubeconfig for reading this node from the API server.
    pub kubeconfig: Option<PathBuf>,
    /// kubectl, used for the node's readiness only when the kubeconfig
    /// cannot be used directly.
    pub kubectl: Option<PathBuf>,
    /// Filesystems whose space and inodes are checked.
    pub disk_paths: Vec<PathBuf>,
    /// Bound of the on-disk buffer; past it the oldest points are dropped.
    pub buffer_max_bytes: u64,
    /// The services' logs directory, rotated every round by these limits.
    pub logs: Option<(PathBuf, crate::log_rotation::LogLimits)>,
    /// The PKI directory whose certificates' expiry is reported.
    pub pki_dir: Option<PathBuf>,
    /// Renew the install's certificates when due ([`crate::renew`]).
    pub renew_certificates: bool,
}

impl HealthConfig {
    /// Only the node-local checks (disk of `state_dir`, br_netfilter, IP
    /// forwarding) at the default interval.
    pub fn new(state_dir: &Path, node_name: &str) -> HealthConfig {
        HealthConfig {
            state_dir: state_dir.to_path_buf(),
            node_name: node_name.to_string(),
            interval: DEFAULT_INTERVAL,
            etcd: None,
            containerd_sock: None,
            kubelet_healthz: None,
            kubeconfig: None,
            kubectl: None,
            disk_paths: vec![state_dir.to_path_buf()],
            buffer_max_bytes: DEFAULT_BUFFER_BYTES,
            logs: None,
            pki_dir: None,
            renew_certificates: false,
        }
    }

    /// Every check, for the install in `state_dir` (from its `install.json`
    /// and the installer's layout): etcd with the health checker's own etcd
    /// client certificate, containerd's socket, the kubelet's healthz, the node
    /// through the admin kubeconfig; disks of the state directory and `/`.
    pub fn for_install(state_dir: &Path) -> anyhow::Result<HealthConfig> {
        let layout = crate::state_dir::StateDir::new(state_dir);
        let node = crate::node::NodeConfig::load(&layout)?;
        let pki = layout.pki();
        let mut cfg = HealthConfig::new(state_dir, &node.node_name);
        // Only masters run etcd.
        cfg.etcd = (node.role == crate::node::NodeRole::Master).then(|| EtcdProbe {
            endpoint: format!("https://127.0.0.1:{}", node.ports.etcd_client),
            ca: pki.etcd_ca_cert(),
            cert: pki.cert("etcd-healthcheck-client"),
            key: pki.key("etcd-healthcheck-client"),
        });
        cfg.logs = Some((layout.logs_dir(), node.logs));
        cfg.pki_dir = Some(layout.pki_dir());
        cfg.renew_certificates = true;
        cfg.containerd_sock = Some(layout.containerd_sock());
        cfg.kubelet_healthz = Some("http://127.0.0.1:10248/healthz".into());
        cfg.kubeconfig = Some(pki.node_kubeconfig());
        if state_dir != Path::new("/") {
            cfg.disk_paths.push("/".into());
        }
        Ok(cfg)
    }
}

/// One check's outcome.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CheckResult {
    /// The check, also the InfluxDB measurement (`disk`, `etcd`, ...).
    pub name: String,
    /// Whether it passed.
    pub ok: bool,
    /// What was found, for people.
    pub detail: String,
    /// Tags besides `node` (`path` for disk and inodes).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// Numbers and flags for alerts (`used_pct`, `latency_ms`, ...).
    pub fields: BTreeMap<String, FieldValue>,
}

/// Where the checker sends its points: `<state>/monitoring.json`, written
/// by the install's monitoring phase.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MonitoringTarget {
    /// InfluxDB's URL, `http(s)://host:8086`.
    pub url: String,
    /// The database.
    pub database: String,
    /// The retention policy (None: the database's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_policy: Option<String>,
    /// User for basic auth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// A file holding the password (kept out of this file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// PEM CA for an https URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<PathBuf>,
}

/// `<state>/monitoring.json`.
pub fn monitoring_file(state_dir: &Path) -> PathBuf {
    crate::state_dir::StateDir::new(state_dir).monitoring_target()
}

/// `<state>/health`: `latest.json` and `buffer/`.
pub fn health_dir(state_dir: &Path) -> PathBuf {
    crate::state_dir::StateDir::new(state_dir).health_dir()
}

/// Runs every configured check once.
pub fn run_checks(cfg: &HealthConfig) -> Vec<CheckResult> {
    Probes::new().run(cfg)
}

/// `latest.json`.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Latest {
    node: String,
    /// The round's time, nanoseconds since the epoch (also the points' time).
    time_ns: u64,
    checks: Vec<CheckResult>,
}

/// The last round's time and results, from `<state>/health/latest.json`;
/// None when the checker has not run.
pub fn latest(state_dir: &Path) -> Option<(SystemTime, Vec<CheckResult>)> {
    let bytes = std::fs::read(health_dir(state_dir).join("latest.json")).ok()?;
    let l: Latest = serde_json::from_slice(&bytes).ok()?;
    Some((UNIX_EPOCH + Duration::from_nanos(l.time_ns), l.checks))
}

/// The round's results as points, all at `time_ns`.
fn points(node: &str, time_ns: i128, results: &[CheckResult]) -> Vec<Point> {
    results
        .iter()
        .map(|r| {
            let mut tags = r.tags.clone();
            tags.insert("node".into(), node.to_string());
            // Telegraf's measurements carry `host`: the default alerts group by it.
            tags.insert("host".into(), node.to_string());
            let mut fields = r.fields.clone();
            fields.insert("ok".into(), FieldValue::Bool(r.ok));
            Point {
                measurement: r.name.clone(),
                tags,
                fields,
                time_ns,
            }
        })
        .collect()
}

/// A client for the current `monitoring.json`, rebuilt when it changes.
struct Sink {
    target: MonitoringTarget,
    password: Option<String>,
    client: InfluxClient,
}

/// Errors and state changes go to the agent's log (its stderr), each once
/// until the state changes again.
#[derive(Default)]
struct Log {
    last: Option<String>,
}

impl Log {
    #[allow(clippy::print_stderr)]
    fn state(&mut self, msg: String) {
        if self.last.as_deref() != Some(msg.as_str()) {
            eprintln!("health: {msg}");
            self.last = Some(msg);
        }
    }

    #[allow(clippy::print_stderr)]
    fn warn(&self, msg: &str) {
        eprintln!("health: {msg}");
    }
}

/// The loop's state between rounds.
struct Checker {
    cfg: HealthConfig,
    probes: Probes,
    buffer: DiskBuffer,
    sink: Option<Sink>,
    log: Log,
}

impl Checker {
    fn new(cfg: HealthConfig) -> Checker {
        let buffer = DiskBuffer::new(
            health_dir(&cfg.state_dir).join("buffer"),
            cfg.buffer_max_bytes,
        );
        Checker {
            cfg,
            probes: Probes::new(),
            buffer,
            sink: None,
            log: Log::default(),
        }
    }

    /// The client for `monitoring.json` as it is now; None when absent or
    /// unusable.
    fn sink(&mut self) -> Option<&Sink> {
        let path = monitoring_file(&self.cfg.state_dir);
        let target: MonitoringTarget = match std::fs::read(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.sink = None;
                self.log
                    .state("no monitoring.json: buffering points".into());
                return None;
            }
            Err(e) => {
                self.log
                    .state(format!("failed to read `{}`: {e}", path.display()));
                return None;
            }
            Ok(bytes) => match serde_json::from_slice(&bytes) {
                Ok(t) => t,
                Err(e) => {
                    self.log.state(format!("`{}`: {e}", path.display()));
                    return None;
                }
            },
        };
        let password = match &target.password_file {
            None => None,
            Some(p) => match std::fs::read_to_string(p) {
                Ok(s) => Some(s.trim_end_matches(['\n', '\r']).to_string()),
                Err(e) => {
                    self.log
                        .state(format!("failed to read `{}`: {e}", p.display()));
                    return None;
                }
            },
        };
        let current = self
            .sink
            .as_ref()
            .is_some_and(|s| s.target == target && s.password == password);
        if !current {
            let cfg = InfluxConfig {
                url: target.url.clone(),
                username: target.username.clone(),
                password: password.clone(),
                ca_cert: target.ca_cert.clone(),
            };
            match InfluxClient::new(cfg) {
                Ok(client) => {
                    self.sink = Some(Sink {
                        target,
                        password,
                        client,
                    })
                }
                Err(e) => {
                    self.sink = None;
                    self.log.state(e.to_string());
                    return None;
                }
            }
        }
        self.sink.as_ref()
    }

    fn send(sink: &Sink, lines: &[String]) -> Result<(), InfluxError> {
        for batch in lines.chunks(WRITE_BATCH) {
            sink.client.write(
                &sink.target.database,
                sink.target.retention_policy.as_deref(),
                batch,
            )?;
        }
        Ok(())
    }

    /// Sends the buffer, oldest segment first; stops at the first failure.
    fn drain(&mut self) -> Result<(), InfluxError> {
        let Some(sink) = self.sink.as_ref() else {
            return Ok(());
        };
        for seg in self.buffer.segments() {
            let lines = buffer::read_lines(&seg.path);
            match Self::send(sink, &lines) {
                Ok(()) => {}
                Err(e) if e.is_permanent() => {
                    self.log.warn(&format!(
                        "dropping {} buffered lines InfluxDB refuses: {e}",
                        lines.len()
                    ));
                }
                Err(e) => return Err(e),
            }
            if let Err(e) = self.buffer.remove(&seg) {
                self.log
                    .warn(&format!("failed to remove `{}`: {e}", seg.path.display()));
            }
        }
        Ok(())
    }

    fn keep(&mut self, time_ns: i128, lines: &[String]) {
        match self.buffer.append(time_ns, lines) {
            Ok(0) => {}
            Ok(n) => self.log.warn(&format!(
                "buffer over {} bytes: dropped the oldest {n} lines",
                self.cfg.buffer_max_bytes
            )),
            Err(e) => self.log.warn(&format!("cannot buffer points: {e}")),
        }
    }

    /// Renews the certificates when due; the error of a failed renewal.
    fn renew(&mut self) -> Result<(), String> {
        if !self.cfg.renew_certificates {
            return Ok(());
        }
        let state = crate::state_dir::StateDir::new(&self.cfg.state_dir);
        match crate::renew::renew_if_due(&state) {
            Ok(None) => Ok(()),
            Ok(Some(r)) => {
                self.log.warn(&format!(
                    "renewed {}; restarted {}",
                    r.renewed.join(", "),
                    if r.restarted.is_empty() {
                        "nothing".to_string()
                    } else {
                        r.restarted.join(", ")
                    }
                ));
                // Its own clients hold the old certificates.
                self.probes.invalidate();
                Ok(())
            }
            Err(e) => {
                let msg = format!("renewing the certificates failed: {e:#}");
                self.log.warn(&msg);
                Err(msg)
            }
        }
    }

    fn round(&mut self) {
        if let Some((dir, limits)) = &self.cfg.logs {
            match crate::log_rotation::rotate(dir, *limits) {
                Ok(rotated) if !rotated.is_empty() => {
                    self.log.warn(&format!("rotated {}", rotated.join(", ")))
                }
                Ok(_) => {}
                Err(e) => self.log.warn(&format!(
                    "failed to rotate the logs in `{}`: {e}",
                    dir.display()
                )),
            }
        }
        let renewal = self.renew();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let time_ns = now.as_nanos() as i128;
        let mut results = self.probes.run(&self.cfg);
        if let Some(dir) = &self.cfg.pki_dir {
            results.push(checks::certificates(dir, renewal.err()));
        }
        let latest = Latest {
            node: self.cfg.node_name.clone(),
            time_ns: now.as_nanos() as u64,
            checks: results.clone(),
        };
        let path = health_dir(&self.cfg.state_dir).join("latest.json");
        let json = serde_json::to_vec_pretty(&latest).expect("results serialize");
        if let Err(e) = crate::durable::write_durably(&path, &json, 0o644) {
            self.log
                .warn(&format!("failed to write `{}`: {e}", path.display()));
        }
        let lines: Vec<String> = points(&self.cfg.node_name, time_ns, &results)
            .iter()
            .map(Point::to_line)
            .collect();
        if self.sink().is_none() {
            self.keep(time_ns, &lines);
            return;
        }
        // In order: once anything is buffered, new points queue behind it.
        if self.buffer.is_empty() {
            let sink = self.sink.as_ref().expect("sink checked above");
            match Self::send(sink, &lines) {
                Ok(()) => {
                    self.log.state("sending points to InfluxDB".into());
                    return;
                }
                Err(e) if e.is_permanent() => {
                    self.log
                        .warn(&format!("InfluxDB refuses this round's points: {e}"));
                    return;
                }
                Err(e) => {
                    self.keep(time_ns, &lines);
                    self.log.state(format!("buffering points: {e}"));
                    return;
                }
            }
        }
        self.keep(time_ns, &lines);
        match self.drain() {
            Ok(()) => self.log.state("sending points to InfluxDB".into()),
            Err(e) => self.log.state(format!("buffering points: {e}")),
        }
    }
}

/// Runs a round every `cfg.interval` until `stop` is set (checked at least
/// every 100 ms). A round that overruns the interval delays the next one
/// rather than running rounds back to back.
pub fn run_loop(cfg: HealthConfig, stop: Arc<AtomicBool>) {
    let interval = cfg.interval.max(Duration::from_millis(10));
    let mut checker = Checker::new(cfg);
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now < next {
            std::thread::sleep((next - now).min(Duration::from_millis(100)));
            continue;
        }
        checker.round();
        next += interval;
        if next < Instant::now() {
            next = Instant::now() + interval;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latest_without_monitoring() {
        let tmp = tempfile::tempdir().unwrap();
        let mut c = Checker::new(HealthConfig::new(tmp.path(), "n1"));
        c.round();
        let (t, checks) = latest(tmp.path()).unwrap();
        assert!(t.elapsed().unwrap() < Duration::from_secs(60));
        let names: Vec<&str> = checks.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["disk", "inodes", "br_netfilter", "ip_forward"]);
        // Nothing is lost while there is nowhere to send.
        let segs = c.buffer.segments();
        assert_eq!(segs.len(), 1);
        let lines = buffer::read_lines(&segs[0].path);
        assert_eq!(lines.len(), 4);
        assert!(
            lines[0].starts_with("disk,host=n1,node=n1,path="),
            "{}",
            lines[0]
        );
    }
}
