//! The node health checker and the InfluxDB client against a real InfluxDB
//! 1.x (Debian's `influxd`, one per test on free loopback ports): line
//! protocol escaping survives a round trip, the checker's measurements
//! arrive, and its disk buffer loses no round while InfluxDB is down, is
//! killed, or the checker itself restarts.
//!
//! `checker_cost` (ignored; run it alone with `--ignored --nocapture`)
//! measures the checker's memory and CPU at the real 10 s interval.

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, UNIX_EPOCH};

use tele_installer::health::{self, HealthConfig, MonitoringTarget};
use tele_installer::influx::{FieldValue, InfluxClient, InfluxConfig, Point};

const DB: &str = "tele";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An influxd with its own config and directories; killed on drop.
struct Influxd {
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl Influxd {
    fn start(dir: &Path) -> Influxd {
        let mut db = Influxd {
            dir: dir.to_path_buf(),
            port: free_port(),
            child: None,
        };
        db.restart();
        db
    }

    /// Starts influxd (again) on the same directories and port.
    fn restart(&mut self) {
        assert!(self.child.is_none());
        let d = self.dir.display();
        let config = format!(
            "reporting-disabled = true\n\
             bind-address = \"127.0.0.1:{rpc}\"\n\
             [meta]\n  dir = \"{d}/meta\"\n\
             [data]\n  dir = \"{d}/data\"\n  wal-dir = \"{d}/wal\"\n  query-log-enabled = false\n\
             [http]\n  bind-address = \"127.0.0.1:{port}\"\n  log-enabled = false\n\
             [monitor]\n  store-enabled = false\n",
            rpc = free_port(),
            port = self.port,
        );
        std::fs::create_dir_all(&self.dir).unwrap();
        let cfg_path = self.dir.join("influxdb.conf");
        std::fs::write(&cfg_path, config).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("influxd.log"))
            .unwrap();
        let child = Command::new("influxd")
            .arg("-config")
            .arg(&cfg_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("influxd (apt-get install influxdb)");
        self.child = Some(child);
        let client = self.client();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !client.ping() {
            assert!(
                Instant::now() < deadline,
                "influxd did not start: see {d}/influxd.log"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGKILL, as a crash would.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn client(&self) -> InfluxClient {
        InfluxClient::new(InfluxConfig {
            url: self.url(),
            ..Default::default()
        })
        .unwrap()
    }

    fn monitoring_json(&self, state: &Path) {
        let target = MonitoringTarget {
            url: self.url(),
            database: DB.into(),
            retention_policy: None,
            username: None,
            password_file: None,
            ca_cert: None,
        };
        std::fs::write(
            health::monitoring_file(state),
            serde_json::to_vec(&target).unwrap(),
        )
        .unwrap();
    }
}

impl Drop for Influxd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A stand-in kubelet healthz endpoint that counts its requests: the
/// checker makes exactly one per round, so this is the number of rounds.
struct Healthz {
    url: String,
    hits: Arc<AtomicU64>,
}

fn healthz() -> Healthz {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/healthz", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&hits);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut buf = [0u8; 4096];
            let mut req = Vec::new();
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            counter.fetch_add(1, Ordering::SeqCst);
            let _ = conn
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
        }
    });
    Healthz { url, hits }
}

fn config(state: &Path, kubelet: &str, interval: Duration) -> HealthConfig {
    let mut cfg = HealthConfig::new(state, "node 1");
    cfg.interval = interval;
    cfg.kubelet_healthz = Some(kubelet.to_string());
    cfg
}

/// A checker loop in a thread.
struct Running {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<()>,
}

fn start(cfg: HealthConfig) -> Running {
    let stop = Arc::new(AtomicBool::new(false));
    let s = Arc::clone(&stop);
    let handle = std::thread::spawn(move || health::run_loop(cfg, s));
    Running { stop, handle }
}

impl Running {
    fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.join().unwrap();
    }
}

fn series_values(v: &serde_json::Value) -> Vec<Vec<serde_json::Value>> {
    v.pointer("/results/0/series/0/values")
        .and_then(|x| x.as_array())
        .map(|rows| {
            rows.iter()
                .map(|r| r.as_array().cloned().unwrap_or_default())
                .collect()
        })
        .unwrap_or_default()
}

/// Nanoseconds of an RFC 3339 time as InfluxDB prints it
/// (`2024-05-01T10:00:00.123456789Z`, trailing zeros trimmed).
fn rfc3339_ns(s: &str) -> i128 {
    let (date, rest) = s.split_once('T').unwrap();
    let mut d = date.split('-').map(|x| x.parse::<i64>().unwrap());
    let (year, month, day) = (d.next().unwrap(), d.next().unwrap(), d.next().unwrap());
    let rest = rest.trim_end_matches('Z');
    let (hms, frac) = rest.split_once('.').unwrap_or((rest, ""));
    let mut t = hms.split(':').map(|x| x.parse::<i64>().unwrap());
    let secs = t.next().unwrap() * 3600 + t.next().unwrap() * 60 + t.next().unwrap();
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    let frac_ns: i128 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").parse().unwrap()
    };
    (days * 86_400 + secs) as i128 * 1_000_000_000 + frac_ns
}

/// The times of every point of `measurement`, in order.
fn times(client: &InfluxClient, measurement: &str) -> Vec<i128> {
    let v = client
        .query(Some(DB), &format!("SELECT \"ok\" FROM \"{measurement}\""))
        .unwrap();
    series_values(&v)
        .iter()
        .map(|row| rfc3339_ns(row[0].as_str().unwrap()))
        .collect()
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn buffered_segments(state: &Path) -> usize {
    std::fs::read_dir(health::health_dir(state).join("buffer"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn line_protocol_escaping_round_trips() {
    let tmp = tempfile::tempdir().unwrap();
    let db = Influxd::start(&tmp.path().join("influx"));
    let client = db.client();
    client
        .query(None, &format!("CREATE DATABASE {DB}"))
        .unwrap();
    let measurement = "disk use, \"odd\"=name";
    let tag_value = "a b,c=d\"e\\f\\";
    let text = "say \"hi\", a\\b = c d\nnext line";
    let point = Point {
        measurement: measurement.into(),
        tags: BTreeMap::from([("the key=,".into(), tag_value.into())]),
        fields: BTreeMap::from([
            ("text field".into(), FieldValue::Str(text.into())),
            ("n,=".into(), FieldValue::Int(-42)),
            ("f".into(), FieldValue::Float(3.0)),
            ("b".into(), FieldValue::Bool(false)),
        ]),
        time_ns: 1_700_000_000_123_456_789,
    };
    client.write(DB, None, &[point.to_line()]).unwrap();

    let names = client.query(Some(DB), "SHOW MEASUREMENTS").unwrap();
    assert_eq!(
        series_values(&names),
        vec![vec![serde_json::Value::from(measurement)]]
    );
    let q = format!(
        "SELECT * FROM \"{}\"",
        measurement.replace('\\', "\\\\").replace('"', "\\\"")
    );
    let v = client.query(Some(DB), &q).unwrap();
    let columns = v.pointer("/results/0/series/0/columns").unwrap().clone();
    let row = &series_values(&v)[0];
    let get = |name: &str| {
        let i = columns
            .as_array()
            .unwrap()
            .iter()
            .position(|c| c == name)
            .unwrap_or_else(|| panic!("no column {name} in {columns}"));
        row[i].clone()
    };
    assert_eq!(get("time"), "2023-11-14T22:13:20.123456789Z");
    // InfluxDB 1.x cannot store a trailing backslash in a tag, nor a line
    // break anywhere: the first is left out, the second becomes a space.
    assert_eq!(get("the key=,"), "a b,c=d\"e\\f");
    assert_eq!(get("text field"), text.replace('\n', " "));
    assert_eq!(get("n,="), -42);
    assert_eq!(get("f"), 3.0);
    assert_eq!(get("b"), false);
    // A float field stays a float even when whole.
    let types = client
        .query(Some(DB), "SHOW FIELD KEYS")
        .unwrap()
        .to_string();
    assert!(types.contains(r#"["f","float"]"#), "{types}");
    assert!(types.contains(r#"["n,=","integer"]"#), "{types}");

    // A failing statement is named in the error.
    let err = client
        .query(Some(DB), "SHOW DATABASES; SELECT nope FROM")
        .unwrap_err()
        .to_string();
    assert!(err.contains("SELECT nope FROM"), "{err}");
    let err = client
        .query(
            None,
            "CREATE DATABASE ok; CREATE RETENTION POLICY rp ON nodb DURATION 1h REPLICATION 1",
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("CREATE RETENTION POLICY rp ON nodb"), "{err}");
    // A write InfluxDB refuses is an error that will not succeed later.
    let e = client.write(DB, None, &["bad line".into()]).unwrap_err();
    assert!(e.is_permanent(), "{e}");
    let e = client.write("nodb", None, &["m v=1".into()]).unwrap_err();
    assert!(!e.is_permanent(), "{e}");
}

#[test]
fn checker_measurements_arrive() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let db = Influxd::start(&tmp.path().join("influx"));
    let client = db.client();
    client
        .query(None, &format!("CREATE DATABASE {DB}"))
        .unwrap();
    db.monitoring_json(&state);
    let kubelet = healthz();
    let mut cfg = config(&state, &kubelet.url, Duration::from_millis(200));
    let _containerd =
        std::os::unix::net::UnixListener::bind(tmp.path().join("containerd.sock")).unwrap();
    cfg.containerd_sock = Some(tmp.path().join("containerd.sock"));
    let loop_ = start(cfg);
    wait_for("five rounds", Duration::from_secs(30), || {
        kubelet.hits.load(Ordering::SeqCst) >= 5
    });
    loop_.stop();

    let v = client.query(Some(DB), "SHOW MEASUREMENTS").unwrap();
    let names: Vec<String> = series_values(&v)
        .iter()
        .map(|r| r[0].as_str().unwrap().to_string())
        .collect();
    for m in [
        "br_netfilter",
        "containerd",
        "disk",
        "inodes",
        "ip_forward",
        "kubelet",
    ] {
        assert!(names.contains(&m.to_string()), "{m} missing from {names:?}");
    }
    let rounds = kubelet.hits.load(Ordering::SeqCst);
    let v = client
        .query(Some(DB), "SELECT count(used_pct) FROM disk")
        .unwrap();
    assert_eq!(series_values(&v)[0][1], rounds);
    let v = client
        .query(
            Some(DB),
            "SELECT last(ok), last(healthy) FROM containerd WHERE node = 'node 1'",
        )
        .unwrap();
    assert_eq!(
        series_values(&v)[0][1..],
        [serde_json::json!(true), serde_json::json!(true)]
    );
    assert_eq!(buffered_segments(&state), 0);
}

/// influxd killed mid-stream, then the checker restarted while it is down:
/// every round arrives exactly once.
#[test]
fn disk_buffer_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let mut db = Influxd::start(&tmp.path().join("influx"));
    let client = db.client();
    client
        .query(None, &format!("CREATE DATABASE {DB}"))
        .unwrap();
    db.monitoring_json(&state);
    let kubelet = healthz();
    let hits = || kubelet.hits.load(Ordering::SeqCst);
    let cfg = config(&state, &kubelet.url, Duration::from_millis(200));

    let loop_ = start(cfg.clone());
    wait_for("rounds sent", Duration::from_secs(30), || hits() >= 3);
    db.kill();
    let at_kill = hits();
    wait_for("rounds buffered", Duration::from_secs(30), || {
        hits() >= at_kill + 5
    });
    assert!(buffered_segments(&state) > 0);
    db.restart();
    wait_for("the buffer sent", Duration::from_secs(30), || {
        buffered_segments(&state) == 0
    });
    wait_for("more rounds", Duration::from_secs(30), || {
        hits() >= at_kill + 8
    });

    // The checker restarts while InfluxDB is down.
    db.kill();
    let at_kill = hits();
    wait_for("rounds buffered", Duration::from_secs(30), || {
        hits() >= at_kill + 3
    });
    loop_.stop();
    let loop_ = start(cfg.clone());
    let at_restart = hits();
    wait_for("rounds buffered", Duration::from_secs(30), || {
        hits() >= at_restart + 3
    });
    // One segment per checker process.
    assert!(
        buffered_segments(&state) >= 2,
        "{}",
        buffered_segments(&state)
    );
    db.restart();
    wait_for("the buffer sent", Duration::from_secs(30), || {
        buffered_segments(&state) == 0
    });
    loop_.stop();

    let rounds = hits() as usize;
    for m in ["br_netfilter", "kubelet", "ip_forward"] {
        let t = times(&client, m);
        assert_eq!(
            t.len(),
            rounds,
            "{m}: {} points for {rounds} rounds",
            t.len()
        );
        assert!(t.windows(2).all(|w| w[0] < w[1]));
    }
    // The last round is the one `latest()` reports.
    let (last, _) = health::latest(&state).unwrap();
    let last_ns = last.duration_since(UNIX_EPOCH).unwrap().as_nanos() as i128;
    assert_eq!(*times(&client, "kubelet").last().unwrap(), last_ns);
}

/// Without monitoring.json, `latest()` still has the last round, the rounds
/// wait on disk, and they are sent once monitoring.json appears.
#[test]
fn latest_without_monitoring_then_sent_later() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let kubelet = healthz();
    let hits = || kubelet.hits.load(Ordering::SeqCst);
    let loop_ = start(config(&state, &kubelet.url, Duration::from_millis(200)));
    wait_for("rounds", Duration::from_secs(30), || hits() >= 3);
    let (at, checks) = health::latest(&state).expect("latest.json");
    assert!(at.elapsed().unwrap() < Duration::from_secs(10));
    let kubelet_check = checks.iter().find(|c| c.name == "kubelet").unwrap();
    assert!(kubelet_check.ok, "{kubelet_check:?}");
    assert!(checks
        .iter()
        .any(|c| c.name == "disk" && c.tags.get("path") == Some(&state.display().to_string())));
    assert_eq!(buffered_segments(&state), 1);

    let db = Influxd::start(&tmp.path().join("influx"));
    let client = db.client();
    client
        .query(None, &format!("CREATE DATABASE {DB}"))
        .unwrap();
    db.monitoring_json(&state);
    wait_for("the buffer sent", Duration::from_secs(30), || {
        buffered_segments(&state) == 0
    });
    loop_.stop();
    assert_eq!(times(&client, "kubelet").len(), hits() as usize);
}

fn proc_status(key: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// utime + stime of this process, in clock ticks (100 per second).
fn cpu_ticks() -> u64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap();
    let after = &s[s.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// The checker at its real interval, sending to InfluxDB, for
/// `HEALTH_COST_SECS` (default 120) seconds.
#[test]
#[ignore]
#[allow(clippy::print_stderr)]
fn checker_cost() {
    let secs: u64 = std::env::var("HEALTH_COST_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120);
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let db = Influxd::start(&tmp.path().join("influx"));
    db.client()
        .query(None, &format!("CREATE DATABASE {DB}"))
        .unwrap();
    db.monitoring_json(&state);
    let kubelet = healthz();
    let mut cfg = config(&state, &kubelet.url, Duration::from_secs(10));
    let _containerd =
        std::os::unix::net::UnixListener::bind(tmp.path().join("containerd.sock")).unwrap();
    cfg.containerd_sock = Some(tmp.path().join("containerd.sock"));
    cfg.disk_paths.push("/".into());
    let rss_before = proc_status("VmRSS:");
    let ticks_before = cpu_ticks();
    let started = Instant::now();
    let loop_ = start(cfg);
    std::thread::sleep(Duration::from_secs(secs));
    let rss = proc_status("VmRSS:");
    let hwm = proc_status("VmHWM:");
    let ticks = cpu_ticks() - ticks_before;
    let wall = started.elapsed().as_secs_f64();
    loop_.stop();
    let cpu_pct = ticks as f64 / 100.0 / wall * 100.0;
    eprintln!(
        "checker_cost: {} rounds in {wall:.0} s; VmRSS {rss_before} kB before, {rss} kB after \
         (peak {hwm} kB); CPU {:.2} s = {cpu_pct:.3}% of a core",
        kubelet.hits.load(Ordering::SeqCst),
        ticks as f64 / 100.0,
    );
    assert!(rss < 30 * 1024, "VmRSS {rss} kB");
    assert!(cpu_pct < 1.0, "{cpu_pct}% of a core");
}

/// A real etcd with tele's PKI: the etcd check logs in with a client
/// certificate, the clock is compared with etcd's `Date`, and the node check
/// reads the admin kubeconfig's embedded credentials (pointed at etcd here,
/// there being no API server in this test: etcd's certificate is not the
/// cluster CA's, so the node is reported unreachable).
#[test]
fn etcd_and_kubeconfig_probes() {
    let etcd_bin = [
        std::env::var("HOME").unwrap_or_default() + "/.cache/tele/runtime/1.20.2/bin/etcd",
        "/usr/bin/etcd".into(),
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
    .expect("an etcd binary");
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let (client_port, peer_port) = (free_port(), free_port());
    let pki = support::loopback_pki(
        &state.join("pki"),
        &format!("https://127.0.0.1:{client_port}"),
    );
    let s = |p: PathBuf| p.display().to_string();
    let client_url = format!("https://127.0.0.1:{client_port}");
    let peer_url = format!("http://127.0.0.1:{peer_port}");
    let log = std::fs::File::create(tmp.path().join("etcd.log")).unwrap();
    let child = Command::new(&etcd_bin)
        .args([
            "--name=node1".to_string(),
            format!("--data-dir={}", s(tmp.path().join("etcd"))),
            format!("--listen-client-urls={client_url}"),
            format!("--advertise-client-urls={client_url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster=node1={peer_url}"),
            format!("--cert-file={}", s(pki.cert("etcd-server"))),
            format!("--key-file={}", s(pki.key("etcd-server"))),
            format!("--trusted-ca-file={}", s(pki.etcd_ca_cert())),
            "--client-cert-auth=true".into(),
        ])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let _etcd = support::KillOnDrop(child);

    let mut cfg = HealthConfig::new(&state, "node1");
    cfg.etcd = Some(health::EtcdProbe {
        endpoint: client_url,
        ca: pki.etcd_ca_cert(),
        cert: pki.cert("etcd-healthcheck-client"),
        key: pki.key("etcd-healthcheck-client"),
    });
    cfg.kubeconfig = Some(pki.kubeconfig("admin"));
    let mut results = Vec::new();
    wait_for("etcd healthy", Duration::from_secs(30), || {
        results = health::run_checks(&cfg);
        results.iter().any(|r| r.name == "etcd" && r.ok)
    });
    let get = |name: &str| results.iter().find(|r| r.name == name).unwrap().clone();
    let etcd = get("etcd");
    assert!(matches!(etcd.fields["latency_ms"], FieldValue::Float(ms) if ms > 0.0));
    let drift = get("time_drift");
    assert!(drift.ok, "{drift:?}");
    assert_eq!(drift.fields["drift_ms"], FieldValue::Int(0));
    // etcd's certificate is from etcd's CA, which the kubeconfig does not
    // trust: the check reached it and refused it.
    let node = get("node_ready");
    assert!(!node.ok);
    assert!(node.detail.contains("certificate"), "{node:?}");

    // With etcd's access control on, where the checker's certificate has
    // no user (it reads no key), the check still passes.
    tele_installer::etcd::Etcdctl::with_files(
        etcd_bin.with_file_name("etcdctl"),
        vec![cfg.etcd.as_ref().unwrap().endpoint.clone()],
        pki.etcd_ca_cert(),
        pki.cert("apiserver-etcd-client"),
        pki.key("apiserver-etcd-client"),
    )
    .enable_auth()
    .unwrap();
    let etcd = health::run_checks(&cfg)
        .into_iter()
        .find(|r| r.name == "etcd")
        .unwrap();
    assert!(etcd.ok, "{etcd:?}");

    // A client certificate from another CA is refused: the probe fails.
    let other = support::loopback_pki(&tmp.path().join("other-pki"), "https://127.0.0.1:1");
    let mut bad = cfg.clone();
    bad.etcd.as_mut().unwrap().cert = other.cert("apiserver-etcd-client");
    bad.etcd.as_mut().unwrap().key = other.key("apiserver-etcd-client");
    let etcd = health::run_checks(&bad)
        .into_iter()
        .find(|r| r.name == "etcd")
        .unwrap();
    assert!(!etcd.ok, "{etcd:?}");
    // So is one of this cluster's own CA, however much it may do in the
    // cluster (the API server's kubelet client is in system:masters): etcd
    // trusts its own CA only.
    for name in ["apiserver-kubelet-client", "front-proxy-client"] {
        let mut other_ca = cfg.clone();
        other_ca.etcd.as_mut().unwrap().cert = pki.cert(name);
        other_ca.etcd.as_mut().unwrap().key = pki.key(name);
        let etcd = health::run_checks(&other_ca)
            .into_iter()
            .find(|r| r.name == "etcd")
            .unwrap();
        assert!(!etcd.ok, "{name} opened etcd: {etcd:?}");
    }
}

/// The health checker rotates the services' logs every round: a log past
/// its bound is kept as `NAME.log.1` and starts again empty.
#[test]
fn the_checker_rotates_the_services_logs() {
    let tmp = tempfile::tempdir().unwrap();
    let logs = tmp.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    std::fs::write(logs.join("kubelet.log"), vec![b'k'; (2 << 20) + 10]).unwrap();
    std::fs::write(logs.join("etcd.log"), b"short\n").unwrap();
    let mut cfg = HealthConfig::new(tmp.path(), "node1");
    cfg.interval = Duration::from_millis(50);
    cfg.logs = Some((
        logs.clone(),
        tele_installer::log_rotation::LogLimits {
            max_mb: 1,
            files: 3,
        },
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let looping = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || health::run_loop(cfg, stop))
    };
    wait_for("kubelet.log rotated", Duration::from_secs(10), || {
        logs.join("kubelet.log.1").is_file()
    });
    stop.store(true, Ordering::Relaxed);
    looping.join().unwrap();
    assert_eq!(
        std::fs::metadata(logs.join("kubelet.log")).unwrap().len(),
        0
    );
    assert_eq!(
        std::fs::metadata(logs.join("kubelet.log.1")).unwrap().len(),
        (2 << 20) + 10
    );
    assert_eq!(std::fs::read(logs.join("etcd.log")).unwrap(), b"short\n");
    assert!(!logs.join("etcd.log.1").exists());
}
