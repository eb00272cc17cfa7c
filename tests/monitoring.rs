//! The monitoring setup against a real InfluxDB: Debian's InfluxDB 1.6
//! (`/usr/bin/influxd`), one per test with auth on, on loopback ports. And
//! the InfluxDB image made from that binary by scripts/make-influxdb-image,
//! read back with skopeo, and InfluxDB's subscription pushing to an HTTPS
//! listener in Kapacitor's place; and the Kapacitor pod's init script
//! against a stand-in of Kapacitor's user API. (Kapacitor, Telegraf and
//! Grafana cannot be had here: tele-assets' golden tests and the installer's
//! fake-Kapacitor unit tests cover them.)

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use support::{free_port, ok};
use tele_installer::influx::{InfluxClient, InfluxConfig};
use tele_installer::monitoring::{
    ensure_user, setup_influxdb, setup_statements, subscribe_kapacitor, Access, DATABASE, ROLLUPS,
    STACK_USERS,
};

const ADMIN: &str = "admin";
const PASSWORD: &str = "it's a \"secret\"";

/// A running influxd, killed when dropped.
struct Influxd {
    child: Child,
    url: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Influxd {
    fn start() -> Influxd {
        Influxd::start_with(false)
    }

    /// An influxd whose HTTP access log (every request line) goes to `self.log`.
    fn start_with(access_log: bool) -> Influxd {
        Influxd::start_with_subscriber_ca(access_log, None)
    }

    /// As [`Influxd::start_with`], its subscriptions' HTTPS pushes checked
    /// against `ca` when given.
    fn start_with_subscriber_ca(access_log: bool, ca: Option<&Path>) -> Influxd {
        assert!(
            Path::new("/usr/bin/influxd").is_file(),
            "InfluxDB is missing: apt-get install influxdb"
        );
        let dir = tempfile::tempdir().unwrap();
        let (http, rpc) = (free_port(), free_port());
        let d = dir.path().display();
        let config = dir.path().join("influxdb.conf");
        std::fs::write(
            &config,
            format!(
                r#"reporting-disabled = true
bind-address = "127.0.0.1:{rpc}"
[meta]
  dir = "{d}/meta"
[data]
  dir = "{d}/data"
  wal-dir = "{d}/wal"
  query-log-enabled = false
[http]
  bind-address = "127.0.0.1:{http}"
  auth-enabled = true
  log-enabled = {access_log}
[monitor]
  store-enabled = false
[continuous_queries]
  enabled = true
[subscriber]
  ca-certs = "{ca}"
"#,
                ca = ca.map(|p| p.display().to_string()).unwrap_or_default()
            ),
        )
        .unwrap();
        let log_path = dir.path().join("influxd.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let child = Command::new("/usr/bin/influxd")
            .arg("-config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start influxd");
        let influxd = Influxd {
            child,
            url: format!("http://127.0.0.1:{http}"),
            log: log_path,
            _dir: dir,
        };
        let anonymous = influxd.client(None);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !anonymous.ping() {
            assert!(
                Instant::now() < deadline,
                "influxd did not answer /ping in 30 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        influxd
    }

    fn client(&self, credentials: Option<(&str, &str)>) -> InfluxClient {
        InfluxClient::new(InfluxConfig {
            url: self.url.clone(),
            username: credentials.map(|c| c.0.to_string()),
            password: credentials.map(|c| c.1.to_string()),
            ca_cert: None,
        })
        .unwrap()
    }

    fn admin(&self) -> InfluxClient {
        self.client(Some((ADMIN, PASSWORD)))
    }
}

/// A child process killed when dropped.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Influxd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The rows of the first series of a query's first result, as
/// column-name → value maps.
fn rows(result: &Value) -> Vec<serde_json::Map<String, Value>> {
    let Some(series) = result["results"][0]["series"].as_array() else {
        return Vec::new();
    };
    series
        .iter()
        .flat_map(|s| {
            let columns: Vec<String> = s["columns"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_str().unwrap().to_string())
                .collect();
            s["values"].as_array().unwrap().iter().map(move |v| {
                columns
                    .iter()
                    .cloned()
                    .zip(v.as_array().unwrap().iter().cloned())
                    .collect()
            })
        })
        .collect()
}

#[test]
fn setup_creates_policies_and_rollups_and_can_run_again() {
    let influxd = Influxd::start();
    let admin = influxd.admin();
    setup_influxdb(&admin, ADMIN, PASSWORD).unwrap();
    // Again, as a resumed install would.
    setup_influxdb(&admin, ADMIN, PASSWORD).unwrap();

    let policies = admin
        .query(None, &format!("SHOW RETENTION POLICIES ON \"{DATABASE}\""))
        .unwrap();
    let mut found: Vec<(String, String, bool)> = rows(&policies)
        .into_iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_string(),
                r["duration"].as_str().unwrap().to_string(),
                r["default"].as_bool().unwrap(),
            )
        })
        .filter(|(name, _, _)| name != "autogen")
        .collect();
    found.sort();
    assert_eq!(
        found,
        [
            ("long".to_string(), "8736h0m0s".to_string(), false),
            ("medium".to_string(), "672h0m0s".to_string(), false),
            ("raw".to_string(), "24h0m0s".to_string(), true),
        ]
    );

    let cqs = admin.query(None, "SHOW CONTINUOUS QUERIES").unwrap();
    let k8s = cqs["results"][0]["series"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == DATABASE)
        .expect("continuous queries on k8s");
    let mut names: Vec<&str> = k8s["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v[0].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["rollup_long", "rollup_medium"]);
    let medium = k8s["values"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v[0] == "rollup_medium")
        .unwrap()[1]
        .as_str()
        .unwrap();
    assert!(medium.contains("GROUP BY time(5m)"), "{medium}");
    assert!(medium.contains("INTO k8s.medium.:MEASUREMENT"), "{medium}");

    // Auth is on: without credentials nothing is readable.
    let anonymous = influxd.client(None);
    assert!(anonymous.query(None, "SHOW DATABASES").is_err());
    // And the setup statements hold no secret.
    assert!(setup_statements().iter().all(|s| !s.contains(PASSWORD)));
}

#[test]
fn a_rollup_really_aggregates_raw_points_into_means() {
    let influxd = Influxd::start();
    let admin = influxd.admin();
    setup_influxdb(&admin, ADMIN, PASSWORD).unwrap();

    // Four 5-minute buckets well inside raw's 24 h, each with 5 points per
    // node; node-b's values are node-a's times ten.
    const FIVE_MIN: u64 = 300;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let start = (now - 3 * 3600) / 3600 * 3600; // on an hour boundary
    let mut lines = Vec::new();
    let mut expected = Vec::new();
    for bucket in 0..4u64 {
        let t0 = start + bucket * FIVE_MIN;
        let values: Vec<f64> = (0..5).map(|i| (bucket * 10 + i * i) as f64).collect();
        for (i, v) in values.iter().enumerate() {
            let t = (t0 + i as u64 * 60) * 1_000_000_000;
            lines.push(format!("cpu,host=node-a usage={v},count={i}i {t}"));
            lines.push(format!("cpu,host=node-b usage={} {t}", v * 10.0));
        }
        expected.push((t0, values.iter().sum::<f64>() / 5.0));
    }
    // Through the default retention policy, as Telegraf writes.
    admin.write(DATABASE, None, &lines).unwrap();

    // Backfill with the continuous query's own SELECT ... INTO.
    let range = format!("time >= {}s AND time < {}s", start, start + 4 * FIVE_MIN);
    let medium = ROLLUPS.iter().find(|r| r.into == "medium").unwrap();
    let written = admin
        .query(Some(DATABASE), &medium.select_into(Some(&range)))
        .unwrap();
    // One point per bucket and node.
    assert_eq!(
        written["results"][0]["series"][0]["values"][0][1], 8,
        "{written}"
    );

    let result = admin
        .query(
            Some(DATABASE),
            "SELECT mean_usage, mean_count FROM \"k8s\".\"medium\".\"cpu\" WHERE host = 'node-a' ORDER BY time",
        )
        .unwrap();
    let got: Vec<(u64, f64, f64)> = rows(&result)
        .iter()
        .map(|r| {
            let time = r["time"].as_str().unwrap();
            (
                parse_rfc3339(time),
                r["mean_usage"].as_f64().unwrap(),
                r["mean_count"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(got.len(), 4, "{result}");
    for ((t, mean, count), (t0, want)) in got.iter().zip(&expected) {
        assert_eq!(t, t0);
        assert!((mean - want).abs() < 1e-9, "bucket {t}: {mean} != {want}");
        assert_eq!(*count, 2.0); // mean of 0..5
    }
    // Tags are kept: node-b's means are its own.
    let b = admin
        .query(
            Some(DATABASE),
            "SELECT mean_usage FROM \"k8s\".\"medium\".\"cpu\" WHERE host = 'node-b' ORDER BY time",
        )
        .unwrap();
    let b: Vec<f64> = rows(&b)
        .iter()
        .map(|r| r["mean_usage"].as_f64().unwrap())
        .collect();
    let want: Vec<f64> = expected.iter().map(|(_, m)| m * 10.0).collect();
    assert_eq!(b, want);

    // The long rollup: all twenty points fall in one hour.
    let long = ROLLUPS.iter().find(|r| r.into == "long").unwrap();
    admin
        .query(
            Some(DATABASE),
            &long.select_into(Some(&format!(
                "time >= {start}s AND time < {}s",
                start + 3600
            ))),
        )
        .unwrap();
    let hour = admin
        .query(
            Some(DATABASE),
            "SELECT mean_usage FROM \"k8s\".\"long\".\"cpu\" WHERE host = 'node-a'",
        )
        .unwrap();
    let hour = rows(&hour);
    assert_eq!(hour.len(), 1);
    let all = expected.iter().map(|(_, m)| m).sum::<f64>() / 4.0;
    assert!((hour[0]["mean_usage"].as_f64().unwrap() - all).abs() < 1e-9);
}

/// Seconds since the epoch of InfluxDB's `2024-01-02T03:05:00Z`.
fn parse_rfc3339(s: &str) -> u64 {
    let (date, time) = s.trim_end_matches('Z').split_once('T').unwrap();
    let d: Vec<i64> = date.split('-').map(|p| p.parse().unwrap()).collect();
    let t: Vec<i64> = time.split(':').map(|p| p.parse().unwrap()).collect();
    // Days from civil (Howard Hinnant's algorithm).
    let (y, m) = if d[1] <= 2 {
        (d[0] - 1, d[1] + 9)
    } else {
        (d[0], d[1] - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d[2] - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    (days * 86400 + t[0] * 3600 + t[1] * 60 + t[2]) as u64
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

#[test]
fn make_influxdb_image_writes_a_layout_skopeo_reads() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let reference = "example.com/monitoring/influxdb:1.6-debian";
    let out = ok(Command::new(repo().join("scripts/make-influxdb-image"))
        .args(["--ref", reference, "-o"])
        .arg(&layout)
        .env("TELE", env!("CARGO_BIN_EXE_tele")));
    assert!(support::stdout(&out).trim_end().ends_with(reference));
    let inspect = ok(Command::new("skopeo")
        .arg("inspect")
        .arg(format!("oci:{}:{reference}", layout.display())));
    let image: Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(image["Os"], "linux");
    assert_eq!(image["Layers"].as_array().unwrap().len(), 1);
    let config = ok(Command::new("skopeo")
        .args(["inspect", "--config"])
        .arg(format!("oci:{}:{reference}", layout.display())));
    let config: Value = serde_json::from_slice(&config.stdout).unwrap();
    assert_eq!(config["config"]["Entrypoint"][0], "/usr/bin/influxd");
}

/// One point of line protocol now, in measurement `m`.
fn point(m: &str) -> String {
    let ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{m},host=n1 value=1 {ns}")
}

#[test]
fn each_stack_user_may_only_do_what_it_needs() {
    let influxd = Influxd::start();
    let admin = influxd.admin();
    setup_influxdb(&admin, ADMIN, PASSWORD).unwrap();
    for u in STACK_USERS {
        ensure_user(&admin, u.name, &format!("{}-first", u.name), u.access).unwrap();
    }
    // Again, with new passwords: the old ones stop working.
    for u in STACK_USERS {
        ensure_user(&admin, u.name, &format!("{}-pw", u.name), u.access).unwrap();
    }
    let stale = influxd.client(Some(("grafana", "grafana-first")));
    assert!(stale
        .query(Some(DATABASE), "SELECT * FROM cpu LIMIT 1")
        .is_err());
    admin.write(DATABASE, None, &[point("cpu")]).unwrap();
    for u in STACK_USERS {
        let password = format!("{}-pw", u.name);
        let c = influxd.client(Some((u.name, &password)));
        let read = c.query(Some(DATABASE), "SELECT * FROM cpu LIMIT 1");
        let write = c.write(DATABASE, None, &[point("cpu")]);
        match u.access {
            Access::Read => {
                read.unwrap_or_else(|e| panic!("{} cannot read: {e}", u.name));
                let e = write.expect_err(u.name).to_string();
                assert!(
                    e.contains("403") || e.contains("authorized"),
                    "{}: {e}",
                    u.name
                );
            }
            Access::Write => {
                write.unwrap_or_else(|e| panic!("{} cannot write: {e}", u.name));
                let e = read.expect_err(u.name).to_string();
                assert!(e.contains("authorized"), "{}: {e}", u.name);
            }
        }
        // None of them administers InfluxDB.
        for q in [
            "SHOW USERS",
            "CREATE USER \"x\" WITH PASSWORD 'y'",
            "DROP DATABASE \"k8s\"",
        ] {
            assert!(c.query(None, q).is_err(), "{} may run {q}", u.name);
        }
    }
    let users = admin.query(None, "SHOW USERS").unwrap();
    let admins: Vec<&str> = users["results"][0]["series"][0]["values"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r[1] == true)
        .map(|r| r[0].as_str().unwrap())
        .collect();
    assert_eq!(admins, [ADMIN]);
}

/// Kapacitor's `/write` stand-in: an HTTPS server (Python's http.server
/// with the certificate at `cert`/`key`) that answers 204 and prints each
/// request (line, headers, body) followed by a NUL on stdout.
fn https_listener(cert: &Path, key: &Path) -> (Child, u16) {
    let port = free_port();
    let script = r#"
import http.server, ssl, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        sys.stdout.write(self.requestline + "\n" + str(self.headers) + body.decode() + "\0")
        sys.stdout.flush()
        self.send_response(204)
        self.end_headers()
    def log_message(self, *a):
        pass
server = http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[2], sys.argv[3])
server.socket = ctx.wrap_socket(server.socket, server_side=True)
server.serve_forever()
"#;
    // Debian's python3 itself (a version manager's shim would leave the
    // server behind when killed).
    let child = Command::new("/usr/bin/python3")
        .args(["-c", script, &port.to_string()])
        .arg(cert)
        .arg(key)
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the HTTPS listener did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (child, port)
}

/// InfluxDB pushes `k8s.raw` to Kapacitor over HTTPS, checking Kapacitor's
/// certificate against the cluster CA (`[subscriber] ca-certs`, as the
/// manifest sets it), signed in as Kapacitor's write-only user, whose
/// password travels in the Authorization header only.
#[test]
fn kapacitor_gets_the_raw_stream_through_the_admins_subscription() {
    use std::io::Read;
    let pki = tempfile::tempdir().unwrap();
    let (cert, key, _) = tele_installer::pki::ensure_service_cert(
        pki.path(),
        "kapacitor",
        &["127.0.0.1".to_string()],
        time::Duration::days(1),
        false,
    )
    .unwrap();
    let ca = pki.path().join("ca.crt");
    let influxd = Influxd::start_with_subscriber_ca(false, Some(&ca));
    let admin = influxd.admin();
    setup_influxdb(&admin, ADMIN, PASSWORD).unwrap();
    ensure_user(&admin, "telegraf", "telegraf-pw", Access::Write).unwrap();
    let (listener, port) = https_listener(&cert, &key);
    let mut listener = KillOnDrop(listener);
    let mut out = listener.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        let mut pending = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 {
                break;
            }
            pending.extend_from_slice(&buf[..n]);
            while let Some(end) = pending.iter().position(|b| *b == 0) {
                let request: Vec<u8> = pending.drain(..=end).collect();
                let _ = tx.send(String::from_utf8_lossy(&request[..end]).into_owned());
            }
        }
    });
    let url = format!("https://127.0.0.1:{port}");
    let secret = "sub-pw-5e2a";
    subscribe_kapacitor(&admin, &url, "influxdb-subscriber", secret).unwrap();
    // Twice is the same subscription.
    subscribe_kapacitor(&admin, &url, "influxdb-subscriber", secret).unwrap();
    let subs = admin.query(None, "SHOW SUBSCRIPTIONS").unwrap();
    assert_eq!(
        subs["results"][0]["series"][0]["values"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "{subs}"
    );
    influxd
        .client(Some(("telegraf", "telegraf-pw")))
        .write(DATABASE, None, &[point("kapacitor_stream_probe")])
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let got = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let got = rx.recv_timeout(left).unwrap_or_else(|_| {
            let log = std::fs::read_to_string(&influxd.log).unwrap_or_default();
            panic!("nothing reached Kapacitor's /write over HTTPS; influxd's log:\n{log}")
        });
        if got.contains("kapacitor_stream_probe") {
            break got;
        }
    };
    drop(listener);
    assert!(got.starts_with("POST /write?"), "{got}");
    let request_line = got.lines().next().unwrap();
    assert!(
        request_line.contains("db=k8s") && request_line.contains("rp=raw"),
        "{got}"
    );
    assert!(!request_line.contains(secret), "{got}");
    use base64::Engine;
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("influxdb-subscriber:{secret}"));
    assert!(
        got.lines()
            .any(|l| l.eq_ignore_ascii_case(&format!("authorization: Basic {basic}"))),
        "no Authorization header for the subscriber:\n{got}"
    );
    // A refused subscription quotes InfluxDB's reason, never the password.
    let err = subscribe_kapacitor(
        &influxd.client(Some(("telegraf", "telegraf-pw"))),
        &url,
        "influxdb-subscriber",
        secret,
    )
    .unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains("failed to subscribe Kapacitor"), "{text}");
    assert!(!text.contains(secret), "{text}");
}

/// (That the client sends passwords in the body, never in a URL, is
/// installer/src/influx.rs's unit test: InfluxDB 1.6 also redacts them from
/// its own access log, as this shows.)
#[test]
fn passwords_reach_neither_the_access_log_nor_errors() {
    let influxd = Influxd::start_with(true);
    let admin = influxd.admin();
    setup_influxdb(&admin, ADMIN, PASSWORD).unwrap();
    ensure_user(&admin, "telegraf", "body-only-8f3a", Access::Write).unwrap();
    ensure_user(&admin, "telegraf", "body-only-9b1c", Access::Write).unwrap();
    // A statement that fails quotes no password.
    let e = admin
        .query(None, "CREATE USER \"\" WITH PASSWORD 'in-an-error-77d1'")
        .unwrap_err()
        .to_string();
    assert!(!e.contains("in-an-error-77d1"), "{e}");
    assert!(e.contains("[redacted]"), "{e}");
    let log = std::fs::read_to_string(&influxd.log).unwrap();
    assert!(log.contains("POST /query"), "no access log:\n{log}");
    for secret in ["body-only-8f3a", "body-only-9b1c", "in-an-error-77d1"] {
        assert!(!log.contains(secret), "{secret} in the access log:\n{log}");
    }
}

/// The Kapacitor pod's init container `users`, as the applied manifest has
/// it (its script and environment; only the users' directory and the port
/// moved into the test's), run by bash against the stand-in `kapacitord` of
/// tests/support/kapacitord.py: it makes
/// `tele-installer` (api, config_api) and `influxdb-subscriber`
/// (write_points) with the passwords from the Secret's files, never on a
/// command line; run again after a password changed (a pod restart), it sets
/// the users again; when the user API refuses, it fails, so the pod does not
/// start with users it could not make; and it stops the server it started.
#[test]
fn kapacitors_init_container_makes_its_users_and_sets_them_again() {
    use std::os::unix::fs::PermissionsExt;
    let manifest = repo().join("assets/tests/golden/monitoring/20-kapacitor.yaml");
    let docs = tele_manifests::load_documents(&manifest).unwrap();
    let deployment = docs
        .iter()
        .map(|d| &d.value)
        .find(|v| v["kind"] == "Deployment")
        .expect("Kapacitor's Deployment");
    let init = deployment["spec"]["template"]["spec"]["initContainers"]
        .as_array()
        .expect("init containers")
        .iter()
        .find(|c| c["name"] == "users")
        .expect("the init container `users`");
    let command: Vec<&str> = init["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(command[..2], ["bash", "-ceu"]);
    let env: Vec<(String, String)> = init["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap().to_string();
            (s("name"), s("value"))
        })
        .collect();
    let var = |name: &str| {
        env.iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("{name} is not set"))
    };
    let bind = var("KAPACITOR_HTTP_BIND_ADDRESS");
    assert!(
        bind.starts_with("127.0.0.1:"),
        "while users are made without auth, Kapacitor must listen on the pod's loopback only: {bind}"
    );
    assert_eq!(var("KAPACITOR_HTTP_AUTH_ENABLED"), "false");
    assert_eq!(var("KAPACITOR_INFLUXDB_0_ENABLED"), "false");

    let dir = tempfile::tempdir().unwrap();
    let (users, bin, standin) = (
        dir.path().join("users"),
        dir.path().join("bin"),
        dir.path().join("standin"),
    );
    for d in [&users, &bin, &standin] {
        std::fs::create_dir(d).unwrap();
    }
    // The stand-in of tests/support/kapacitord.py, as `kapacitord` on PATH.
    let kapacitord = bin.join("kapacitord");
    std::fs::copy(repo().join("tests/support/kapacitord.py"), &kapacitord).unwrap();
    std::fs::set_permissions(&kapacitord, std::fs::Permissions::from_mode(0o755)).unwrap();
    let set_password = |user: &str, password: &str| {
        let f = users.join(user);
        let _ = std::fs::remove_file(&f);
        std::fs::write(&f, format!("{password}\n")).unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o400)).unwrap();
    };
    set_password("tele-installer", "Installer0pw1");
    set_password("influxdb-subscriber", "Subscriber0pw2");

    let port = free_port();
    let script = command[2]
        .replace("/etc/kapacitor/users/", &format!("{}/", users.display()))
        .replace(
            &format!("http://{bind}/"),
            &format!("http://127.0.0.1:{port}/"),
        );
    assert!(
        !script.contains("/etc/kapacitor/users/") && script.contains(&port.to_string()),
        "the script no longer reads /etc/kapacitor/users/ or calls http://{bind}/:\n{}",
        command[2]
    );
    let run = |refuse: bool| {
        // Files, not pipes: a server left running would hold a pipe open.
        let (stdout, stderr) = (dir.path().join("stdout"), dir.path().join("stderr"));
        let mut child = Command::new("bash")
            .args(["-ceu", &script])
            .env_clear()
            .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
            .envs(env.iter().map(|(n, v)| (n.as_str(), v.as_str())))
            .env("KAPACITOR_HTTP_BIND_ADDRESS", format!("127.0.0.1:{port}"))
            .env("STANDIN_DIR", &standin)
            .env("STANDIN_REFUSE", if refuse { "1" } else { "0" })
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("the init script did not finish in 60 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let status = child.wait().unwrap();
        let output = format!(
            "{}{}",
            std::fs::read_to_string(&stdout).unwrap(),
            std::fs::read_to_string(&stderr).unwrap()
        );
        // The server the script started is gone (or is stopped here when
        // the script failed before stopping it, as the container's end
        // would stop it).
        let pid: i32 = std::fs::read_to_string(standin.join("pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let alive = Path::new("/proc").join(pid.to_string()).join("cmdline");
        let was_alive = std::fs::read(&alive).is_ok_and(|c| !c.is_empty());
        if was_alive {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        (status, output, was_alive)
    };
    let users_now = || -> Value {
        serde_json::from_str(&std::fs::read_to_string(standin.join("users.json")).unwrap()).unwrap()
    };
    let requests = || -> Vec<String> {
        std::fs::read_to_string(standin.join("requests.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let r: Vec<String> = serde_json::from_str(l).unwrap();
                r.join(" ")
            })
            .collect()
    };

    let (status, output, left_running) = run(false);
    assert!(status.success(), "first run: {output}");
    assert!(!left_running, "the init script left kapacitord running");
    assert_eq!(
        users_now(),
        serde_json::json!({
            "tele-installer": {"password": "Installer0pw1", "type": "normal", "permissions": ["api", "config_api"]},
            "influxdb-subscriber": {"password": "Subscriber0pw2", "type": "normal", "permissions": ["write_points"]},
        })
    );
    assert_eq!(
        requests(),
        ["POST /kapacitor/v1/users", "POST /kapacitor/v1/users"]
    );

    // A restarted pod, after the installer set a new password.
    set_password("tele-installer", "Installer0pw3");
    let (status, output, left_running) = run(false);
    assert!(status.success(), "second run: {output}");
    assert!(!left_running, "the init script left kapacitord running");
    let now = users_now();
    assert_eq!(now["tele-installer"]["password"], "Installer0pw3");
    assert_eq!(
        now["tele-installer"]["permissions"],
        serde_json::json!(["api", "config_api"])
    );
    assert_eq!(now["influxdb-subscriber"]["password"], "Subscriber0pw2");
    assert_eq!(now.as_object().unwrap().len(), 2);
    assert_eq!(
        requests()[2..],
        [
            "POST /kapacitor/v1/users",
            "PATCH /kapacitor/v1/users/tele-installer",
            "POST /kapacitor/v1/users",
            "PATCH /kapacitor/v1/users/influxdb-subscriber"
        ]
    );

    // A user API that refuses: the init container fails.
    let (status, _, _) = run(true);
    assert!(
        !status.success(),
        "the init script succeeded although Kapacitor refused its users"
    );
    assert_eq!(users_now(), now, "a refused run changed the users");

    assert!(
        !standin.join("exposed").exists(),
        "a password was on a command line: {}",
        std::fs::read_to_string(standin.join("exposed")).unwrap_or_default()
    );
}
