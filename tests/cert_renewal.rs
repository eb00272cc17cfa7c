//! Certificates that renew themselves, on a real node run by the tele
//! agent. Once installed, the node's certificates are renewed with a
//! validity of three minutes (`tele certificates renew --validity 3m`) so
//! that time runs about 120,000 times faster than with the default year: the health checker must renew every certificate and kubeconfig at
//! two thirds of its life and restart what uses it, several times over,
//! while the cluster keeps working: the API answers the renewed admin
//! kubeconfig, the node stays Ready, the app's pods keep running (same
//! UIDs, no restarts) and answer, the kubelet rotates its own client
//! certificate through the controller manager, and no certificate in use
//! has expired although the first ones did long ago. The CAs are made with
//! a life of seven minutes (`--ca-validity 7m`): each is remade from its
//! key at two thirds of it, and the cluster works on past the first ones'
//! expiry.

mod support;

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use support::example::example_bundle;
use support::*;

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// kubectl with the admin kubeconfig as it is on disk now; None on failure.
fn kubectl(state: &Path, args: &[&str]) -> Option<String> {
    let o = run(Command::new(state.join("runtime/bin/kubectl"))
        .arg("--kubeconfig")
        .arg(state.join("pki/kubeconfig/admin.conf"))
        .args(["--request-timeout", "10s"])
        .args(args));
    o.status.success().then(|| stdout(&o))
}

/// Retries `f` for up to two minutes: a renewal may be restarting the API
/// server at the moment of asking.
fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within 2 minutes");
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// The app's pods: `name uid restarts`, sorted.
fn app_pods(state: &Path) -> Vec<String> {
    let text = eventually("listing the app's pods", || {
        kubectl(
            state,
            &[
                "get",
                "pods",
                "-l",
                "app=hello-web",
                "-o",
                "jsonpath={range .items[*]}{.metadata.name} {.metadata.uid} {.status.containerStatuses[*].restartCount}{\"\\n\"}{end}",
            ],
        )
    });
    let mut pods: Vec<String> = text.lines().map(String::from).collect();
    pods.sort();
    pods
}

fn apiserver_not_after(state: &Path) -> Option<i64> {
    tele_installer::pki::expiries(&state.join("pki"))
        .into_iter()
        .find(|e| e.file == "apiserver.crt")
        .map(|e| e.not_after)
}

#[test]
fn certificates_renew_at_two_thirds_of_their_life_and_the_cluster_keeps_working() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = example_bundle(dir.path());
    let state = dir.path().join("state");
    let _guard = Installed {
        state: state.clone(),
    };
    // A validity the install itself might outlast is refused before anything changes.
    let o = run(Command::new(bundle.join("install"))
        .arg("--state-dir")
        .arg(&state)
        .args(["--cert-validity", "30m"]));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("at least 1h"), "{}", stderr(&o));
    assert!(!state.exists());

    ok(Command::new(bundle.join("install"))
        .arg("--state-dir")
        .arg(&state)
        .args(["--autofix", "--timeout", "300", "--output-format", "json"])
        .args(["--bin-dir", "none", "--cert-validity", "400d"])
        .args(["--ca-validity", "7m"])
        .env_remove("TELE_TEST_PAUSE_AT")
        .env("NO_COLOR", "1"));
    let list = stdout(&ok(tele()
        .args(["certificates", "list", "--state-dir"])
        .arg(&state)));
    let api_line = list
        .lines()
        .find(|l| l.starts_with("apiserver.crt "))
        .unwrap_or_else(|| panic!("{list}"));
    assert!(api_line.trim_end().ends_with("400.00"), "{list}");

    // From now on every certificate is valid for three minutes.
    let o = ok(tele()
        .args(["certificates", "renew", "--validity", "3m", "--state-dir"])
        .arg(&state));
    assert!(
        stdout(&o).contains("restarted registry, etcd, containerd, kube-apiserver"),
        "{}",
        stdout(&o)
    );

    let pki = state.join("pki");
    let first = tele_installer::pki::expiries(&pki);
    let first_api = apiserver_not_after(&state).unwrap();
    let first_kubelet = first
        .iter()
        .find(|e| e.file == "kubeconfig/kubelet.conf")
        .unwrap()
        .not_after;
    let pods_before = app_pods(&state);
    assert!(!pods_before.is_empty());
    let ca_of = |list: &[tele_installer::pki::Expiry], file: &str| {
        list.iter()
            .find(|e| e.file == file)
            .unwrap_or_else(|| panic!("no {file}"))
            .clone()
    };
    let first_ca = ca_of(&first, "ca.crt");
    let first_etcd_ca = ca_of(&first, "etcd-ca.crt");
    assert!((420..=445).contains(&(first_ca.not_after - first_ca.not_before)));

    // Three renewals, and well past the first certificates' expiry.
    let mut seen = BTreeSet::from([first_api]);
    let deadline = Instant::now() + Duration::from_secs(720);
    while seen.len() < 4 || now() < first_api + 30 || now() < first_ca.not_after + 20 {
        assert!(
            Instant::now() < deadline,
            "{} renewals of apiserver.crt in 12 minutes; the health checker's log:\n{}",
            seen.len() - 1,
            fs::read_to_string(state.join("logs/health-checker.log")).unwrap_or_default()
        );
        if let Some(t) = apiserver_not_after(&state) {
            seen.insert(t);
        }
        // The API answers throughout, give or take a restart.
        eventually("the API server to answer", || {
            kubectl(&state, &["get", "--raw", "/readyz"])
        });
        std::thread::sleep(Duration::from_secs(5));
    }

    // Every certificate and kubeconfig was renewed and none in use has expired.
    let later = tele_installer::pki::expiries(&pki);
    let t = now();
    for e in &later {
        assert!(e.not_after > t, "{} expired", e.file);
    }
    let kubelet = later
        .iter()
        .find(|e| e.file == "kubeconfig/kubelet.conf")
        .unwrap();
    assert!(kubelet.not_after > first_kubelet + 180, "{kubelet:?}");
    let etcd = later.iter().find(|e| e.file == "etcd-server.crt").unwrap();
    assert!(etcd.not_after > first_api + 180, "{etcd:?}");
    // Both CAs were remade from their keys before they expired, with the
    // life they had, and the first ones have expired: everything above
    // worked across that.
    for (file, first) in [("ca.crt", &first_ca), ("etcd-ca.crt", &first_etcd_ca)] {
        let remade = ca_of(&later, file);
        assert!(remade.not_after > first.not_after, "{file}: {remade:?}");
        assert!(
            (420..=445).contains(&(remade.not_after - remade.not_before)),
            "{file}: {remade:?}"
        );
    }
    assert!(now() > first_ca.not_after, "the first CA has expired");
    // Each renewal took place at two thirds of the life at the latest.
    let renewals: Vec<i64> = seen.iter().copied().collect();
    for w in renewals.windows(2) {
        let gap = w[1] - w[0];
        assert!(
            (110..=145).contains(&gap),
            "renewed {gap} s after the one before"
        );
    }

    // The kubelet rotated its own client certificate: its request approved
    // by the controller manager and signed, the certificate kept in its
    // directory. (With three-minute certificates its rotation falls in the
    // seconds the API server restarts on a renewal, so some of its tries
    // fail and tele's fallback seeds it; once is what shows it works.)
    let csrs: serde_json::Value = serde_json::from_str(&eventually("the CSRs", || {
        kubectl(&state, &["get", "csr", "-o", "json"])
    }))
    .unwrap();
    let issued = csrs["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| {
            c["spec"]["signerName"] == "kubernetes.io/kube-apiserver-client-kubelet"
                && c["spec"]["username"]
                    .as_str()
                    .is_some_and(|u| u.starts_with("system:node:"))
                && c["status"]["conditions"]
                    .as_array()
                    .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Approved"))
                && c["status"]["certificate"]
                    .as_str()
                    .is_some_and(|c| !c.is_empty())
        })
        .count();
    let kubelet_log = || {
        let log = fs::read_to_string(state.join("logs/kubelet.log")).unwrap_or_default();
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| {
                l.contains("ertificate")
                    || l.contains("otat")
                    || l.contains("csr")
                    || l.contains("CSR")
                    || l.contains("deadline")
            })
            .collect();
        let files: Vec<String> = fs::read_dir(pki.join("kubelet"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        format!(
            "files {files:?}; the kubelet's log on certificates:\n{}",
            lines[lines.len().saturating_sub(80)..].join("\n")
        )
    };
    assert!(
        issued >= 1,
        "{issued} kubelet client certificates issued: {csrs}\n{}",
        kubelet_log()
    );
    let rotated = fs::read_dir(pki.join("kubelet"))
        .unwrap()
        .flatten()
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with("kubelet-client-2") && name.ends_with(".pem")
        })
        .count();
    assert!(
        rotated >= 1,
        "{rotated} certificates in the kubelet's directory; {}",
        kubelet_log()
    );

    // The node is Ready, the app's pods never restarted, and it answers.
    eventually("the node to be Ready", || {
        kubectl(
            &state,
            &[
                "get",
                "nodes",
                "-o",
                "jsonpath={.items[0].status.conditions[?(@.type==\"Ready\")].status}",
            ],
        )
        .filter(|s| s == "True")
    });
    assert_eq!(app_pods(&state), pods_before);
    let ip = eventually("the app's Service", || {
        kubectl(
            &state,
            &[
                "get",
                "service",
                "hello-web",
                "-o",
                "jsonpath={.spec.clusterIP}",
            ],
        )
    });
    eventually("the app to answer", || {
        let o = run(Command::new("curl").args(["-sf", "-m", "5", &format!("http://{ip}/")]));
        stdout(&o)
            .contains("hello from a tele bundle")
            .then_some(())
    });
    // A new pod can still be scheduled and run (kubelet, scheduler and
    // controller manager all work with their renewed credentials).
    eventually("scaling the app", || {
        kubectl(&state, &["scale", "deployment/hello-web", "--replicas=2"])
    });
    eventually("the second replica to be ready", || {
        kubectl(
            &state,
            &[
                "get",
                "deployment/hello-web",
                "-o",
                "jsonpath={.status.readyReplicas}",
            ],
        )
        .filter(|s| s == "2")
    });

    // InfluxDB serves its renewed certificate (the Secret replaced, its pod
    // restarted on it), which the cluster CA verifies.
    let influx = later.iter().find(|e| e.file == "influxdb.crt").unwrap();
    assert!(influx.not_after > first_api, "{influx:?}");
    let influx_ip = eventually("InfluxDB's Service", || {
        kubectl(
            &state,
            &[
                "get",
                "service",
                "influxdb",
                "-n",
                "monitoring",
                "-o",
                "jsonpath={.spec.clusterIP}",
            ],
        )
    });
    eventually("InfluxDB to serve a current certificate", || {
        let current = tele_installer::pki::expiries(&pki)
            .into_iter()
            .find(|e| e.file == "influxdb.crt")?
            .not_after;
        let served = run(Command::new("sh").arg("-c").arg(format!(
            "openssl s_client -connect {influx_ip}:8086 -CAfile {} -verify_return_error </dev/null 2>/dev/null \
             | openssl x509 -noout -enddate -dateopt iso_8601",
            pki.join("ca.crt").display()
        )));
        let end = stdout(&served);
        let end = end.trim().strip_prefix("notAfter=")?;
        let t = time::OffsetDateTime::parse(
            &end.replace(' ', "T"),
            &time::format_description::well_known::Iso8601::DEFAULT,
        )
        .ok()?;
        (t.unix_timestamp() == current && t.unix_timestamp() > now()).then_some(())
    });

    // The health checker reports the soonest expiry and that renewal works.
    let latest: serde_json::Value =
        serde_json::from_slice(&fs::read(state.join("health/latest.json")).unwrap()).unwrap();
    let certs = latest["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "certificates")
        .unwrap_or_else(|| panic!("no certificates check: {latest}"));
    let days = certs["fields"]["days_left"].as_f64().unwrap();
    assert!(days > 0.0 && days < 0.003, "{certs}");
    assert_eq!(certs["fields"]["renewal_failed"], false, "{certs}");
    // Under 30 days left: the check fails, as the default alert does.
    assert_eq!(certs["ok"], false, "{certs}");
    let log = fs::read_to_string(state.join("logs/health-checker.log")).unwrap();
    assert!(
        log.matches("restarted registry, etcd, containerd, kube-apiserver")
            .count()
            >= 3,
        "{log}"
    );
}
