//! The whole path on this machine, as root: build the example app's bundle
//! with the Kubernetes runtime, extract it, `./install`, and check what an
//! admin would: the node is Ready, the app's pods run and answer HTTP through
//! their Service, the install hook ran. Then an install killed with SIGKILL
//! inside each phase in turn is finished by `--resume` every time, an
//! uninstall killed halfway is finished by running it again, and `tele
//! uninstall` leaves no process, mount, network device or listening port
//! behind. The same path on a host whose PID 1 is systemd is in
//! tests/systemd_install.rs.

mod support;

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use support::example::{example_bundle, variant_bundle};
use support::*;

/// The kubectl the install unpacked into its state directory.
fn kubectl(_bundle: &Path, state: &Path, args: &[&str]) -> String {
    stdout(&ok(Command::new(state.join("runtime/bin/kubectl"))
        .arg("--kubeconfig")
        .arg(state.join("pki/kubeconfig/admin.conf"))
        .args(args)))
}

/// `./install` with the test's state directory, the admin's links in
/// `STATE.bin`, and JSON output.
fn install_cmd(bundle: &Path, state: &Path, extra: &[&str]) -> Command {
    let timeout: &[&str] = if extra.contains(&"--timeout") || extra.contains(&"--resume") {
        &[]
    } else {
        &["--timeout", "300"]
    };
    let mut c = Command::new(bundle.join("install"));
    c.arg("--state-dir")
        .arg(state)
        .arg("--bin-dir")
        .arg(bin_dir(state))
        .args(["--autofix", "--output-format", "json"])
        .args(timeout)
        .args(extra)
        .env_remove("TELE_TEST_PAUSE_AT")
        .env("NO_COLOR", "1");
    c
}

fn install(bundle: &Path, state: &Path, extra: &[&str]) -> std::process::Output {
    run(&mut install_cmd(bundle, state, extra))
}

/// Where the install links `tele` and `kubectl` in these tests.
fn bin_dir(state: &Path) -> PathBuf {
    state.with_extension("bin")
}

fn uninstall(state: &Path) -> std::process::Output {
    ok(tele()
        .args(["uninstall", "--yes", "--state-dir"])
        .arg(state)
        .env_remove("TELE_TEST_PAUSE_AT"))
}

/// Runs `./install` (or `tele uninstall`) until it pauses at `point`
/// (TELE_TEST_PAUSE_AT), then kills it with SIGKILL.
fn kill_at(cmd: Command, state: &Path, point: &str, log: &Path) {
    signal_at(cmd, state, point, log, nix::sys::signal::Signal::SIGKILL);
}

/// Runs `./install` (or `tele uninstall`) until it pauses at `point`, then
/// sends it `signal` and waits for it to end.
fn signal_at(
    mut cmd: Command,
    state: &Path,
    point: &str,
    log: &Path,
    signal: nix::sys::signal::Signal,
) -> std::process::ExitStatus {
    let paused = state.join(".paused");
    let _ = fs::remove_file(&paused);
    let mut child = cmd
        .env("TELE_TEST_PAUSE_AT", point)
        .stdout(std::process::Stdio::null())
        .stderr(fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if fs::read_to_string(&paused).is_ok_and(|p| p == point) {
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "ended ({status}) before reaching {point}:\n{}",
                fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "never reached {point}");
        std::thread::sleep(Duration::from_millis(100));
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal).unwrap();
    let status = child.wait().unwrap();
    fs::remove_file(&paused).unwrap();
    status
}

/// The app answers through its Service's cluster IP (kube-proxy's rules).
fn app_answers(bundle: &Path, state: &Path) {
    let ip = kubectl(
        bundle,
        state,
        &[
            "get",
            "service",
            "hello-web",
            "-o",
            "jsonpath={.spec.clusterIP}",
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let o = Command::new("curl")
            .args(["-sf", "-m", "5", &format!("http://{ip}/")])
            .output()
            .unwrap();
        if o.status.success()
            && String::from_utf8_lossy(&o.stdout).contains("hello from a tele bundle")
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the app does not answer on http://{ip}/: {}",
            stderr(&o)
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn plan_state(state: &Path) -> Option<serde_json::Value> {
    fs::read(state.join("plan.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
}

/// Live (not zombie) processes whose command line mentions `needle`.
fn live_processes_mentioning(needle: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.parse::<u32>().is_err() || name == std::process::id().to_string() {
            continue;
        }
        let Ok(cmd) = fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let stat = fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        let zombie = stat
            .rsplit(')')
            .next()
            .is_some_and(|r| r.trim_start().starts_with('Z'));
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if !zombie && cmd.contains(needle) {
            out.push(format!("{name}: {cmd}"));
        }
    }
    out
}

#[test]
fn install_runs_the_app_resumes_after_sigkill_and_uninstalls_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = example_bundle(dir.path());
    let state = dir.path().join("state");
    let _guard = Installed {
        state: state.clone(),
    };

    // 1. Flags are checked before anything is written.
    let o = install(&bundle, &state, &["--advertise-addr", "192.0.2.77"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("192.0.2.77 is not an address of this machine"),
        "{}",
        stderr(&o)
    );
    let o = install(&bundle, &state, &["--skip-check", "port"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("did you mean `--skip-check ports`"),
        "{}",
        stderr(&o)
    );
    let o = install(&bundle, &state, &["--flavor", "tow"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("did you mean `--flavor two`"),
        "{}",
        stderr(&o)
    );
    assert!(!state.exists(), "nothing is written for bad flags");

    // 2. A first install, all the way, told where alerts go.
    let alerts = dir.path().join("alerts.yaml");
    fs::write(
        &alerts,
        "kind: smtp\nspec:\n  host: mail.example.com\n  port: 587\n  from: k8s@example.com\n  to: [ops@example.com]\n---\nkind: alerttarget\nspec:\n  url: https://hooks.example.com/k8s\n",
    )
    .unwrap();
    let o = install(
        &bundle,
        &state,
        &[
            "--config",
            alerts.to_str().unwrap(),
            "--log-max-size",
            "1",
            "--log-max-files",
            "2",
        ],
    );
    assert!(
        o.status.success(),
        "install failed:\n{}\n{}",
        stderr(&o),
        stdout(&o)
    );
    let summary = json(&o);
    assert_eq!(summary["app"], "hello");
    let file = stdout(&ok(Command::new("file").arg(bundle.join("install"))));
    assert!(
        file.contains("static"),
        "the bundle's installer is not static: {file}"
    );
    let ready = kubectl(
        &bundle,
        &state,
        &[
            "get",
            "nodes",
            "-o",
            "jsonpath={.items[0].status.conditions[?(@.type==\"Ready\")].status}",
        ],
    );
    assert_eq!(ready, "True");
    let phases = kubectl(
        &bundle,
        &state,
        &[
            "get",
            "pods",
            "-l",
            "app=hello-web",
            "-o",
            "jsonpath={.items[*].status.phase}",
        ],
    );
    assert_eq!(phases, "Running");
    app_answers(&bundle, &state);
    // The node's cluster DNS runs under the agent too, and knows the app's Service.
    let service_ip = kubectl(
        &bundle,
        &state,
        &[
            "get",
            "service",
            "hello-web",
            "-o",
            "jsonpath={.spec.clusterIP}",
        ],
    );
    let node_ip = summary["nodeIp"].as_str().unwrap().to_string();
    let lookup = ok(Command::new("busybox").args([
        "nslookup",
        "hello-web.default.svc.cluster.local",
        &node_ip,
    ]));
    assert!(stdout(&lookup).contains(&service_ip), "{}", stdout(&lookup));
    // Its answering thread is real time (SCHED_FIFO: `ps` says FF) while
    // its work is light.
    let dns_pid = stdout(&ok(Command::new("pgrep").args([
        "-f",
        &format!("cluster-dns --state-dir {}", state.display()),
    ])));
    let dns_pid = dns_pid.lines().next().unwrap().trim().to_string();
    let class = stdout(&ok(Command::new("ps").args(["-o", "cls=", "-p", &dns_pid])));
    assert_eq!(class.trim(), "FF", "cluster-dns {dns_pid}: {class}");
    // What the install showed is kept in its log, for root only.
    let install_log = state.join("logs/install.log");
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&fs::metadata(&install_log).unwrap().permissions())
            & 0o777,
        0o600
    );
    let text = fs::read_to_string(&install_log).unwrap();
    assert!(
        text.contains("/checks done in") && text.contains(" /app "),
        "{text}"
    );
    let hook = kubectl(
        &bundle,
        &state,
        &[
            "get",
            "job",
            "hello-install",
            "-o",
            "jsonpath={.status.succeeded}",
        ],
    );
    assert_eq!(hook, "1", "the install hook ran to completion");
    // Images came from the bundle through the mirror: the pod spec names the
    // original reference, pinned to the digest the bundle holds.
    let image = kubectl(
        &bundle,
        &state,
        &[
            "get",
            "deployment",
            "hello-web",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}",
        ],
    );
    assert!(
        image.starts_with("example.com/hello/web:1.0.0@sha256:"),
        "{image}"
    );
    let index = fs::read_to_string(bundle.join("images/index.json")).unwrap();
    assert!(index.contains(image.split('@').nth(1).unwrap()), "{image}");
    let influxdb = kubectl(
        &bundle,
        &state,
        &[
            "get",
            "deployment",
            "-n",
            "monitoring",
            "influxdb",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}",
        ],
    );
    assert!(influxdb.contains("@sha256:"), "{influxdb}");
    // Private keys are 0600; no insecure flag anywhere in the configuration.
    for key in [
        "ca.key",
        "etcd-ca.key",
        "apiserver.key",
        "sa.key",
        "kubeconfig/admin.conf",
        "encryption.yaml",
    ] {
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &fs::metadata(state.join("pki").join(key))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600, "{key}");
    }
    // Secrets are encrypted in etcd, and etcd lets in its own CA's clients
    // only: the API server's etcd certificate reads the ciphertext, the
    // cluster CA's most powerful client certificate (system:masters) is
    // refused at the handshake.
    let etcd_get = |cert: &str| {
        run(Command::new(state.join("runtime/bin/etcdctl"))
            .env("ETCDCTL_API", "3")
            .args([
                "--endpoints",
                "https://127.0.0.1:2379",
                "--dial-timeout",
                "5s",
            ])
            .arg("--cacert")
            .arg(state.join("pki/etcd-ca.crt"))
            .arg("--cert")
            .arg(state.join(format!("pki/{cert}.crt")))
            .arg("--key")
            .arg(state.join(format!("pki/{cert}.key")))
            .args([
                "get",
                "/registry/secrets/monitoring/influxdb-telegraf",
                "--print-value-only",
            ]))
    };
    let secret = etcd_get("apiserver-etcd-client");
    assert!(secret.status.success(), "{}", stderr(&secret));
    assert!(
        secret.stdout.starts_with(b"k8s:enc:aescbc:v1:key1:"),
        "a Secret is stored in the clear: {:?}",
        String::from_utf8_lossy(&secret.stdout[..secret.stdout.len().min(40)])
    );
    let password = fs::read_to_string(state.join("monitoring/influxdb-telegraf-password")).unwrap();
    assert!(!String::from_utf8_lossy(&secret.stdout).contains(password.trim()));
    let refused = etcd_get("apiserver-kubelet-client");
    assert!(
        !refused.status.success(),
        "a cluster-CA certificate opened etcd"
    );
    // etcd's access control is on: the health checker's certificate, one
    // of etcd's own CA, reads no key (its check of /health is in status).
    let checker = etcd_get("etcd-healthcheck-client");
    assert!(
        !checker.status.success() && stderr(&checker).contains("etcdserver:"),
        "the health checker's certificate read a Secret from etcd: {}",
        stderr(&checker)
    );
    // The API server's audit log records who did what (metadata only).
    let audit_log = state.join("logs/audit/audit.log");
    let audit = fs::read_to_string(&audit_log).unwrap();
    assert!(
        audit.contains("\"resource\":\"secrets\"") && audit.contains("\"verb\":\"create\""),
        "{}",
        &audit[..audit.len().min(2000)]
    );
    assert!(
        !audit.contains(password.trim()),
        "a password in the audit log"
    );
    let denied = run(Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "cat"])
        .arg(&audit_log));
    assert!(!denied.status.success(), "others can read the audit log");
    let services = fs::read_to_string(state.join("agent/services.json")).unwrap();
    assert!(
        !services.contains("insecure-skip-tls-verify")
            && services.contains("--authorization-mode=Node,RBAC")
    );
    assert_eq!(summary["serviceManager"], "agent");
    assert!(
        summary["preflight"]
            .as_array()
            .is_some_and(|r| r.iter().any(|c| c["name"] == "kernel-modules")),
        "the preflight results are in the JSON summary: {summary}"
    );
    // Nothing runs from the bundle: services run from the state directory.
    assert!(
        !services.contains(&bundle.display().to_string()),
        "{services}"
    );
    // The health checker rotates a service log past --log-max-size (1 MiB
    // here): grown by 2 MiB, it is kept as .1 and starts again.
    let registry_log = state.join("logs/registry.log");
    fs::OpenOptions::new()
        .append(true)
        .open(&registry_log)
        .unwrap()
        .write_all(&vec![b'#'; 2 << 20])
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !state.join("logs/registry.log.1").is_file() {
        assert!(Instant::now() < deadline, "registry.log was not rotated");
        std::thread::sleep(Duration::from_secs(1));
    }
    assert!(fs::metadata(&registry_log).unwrap().len() < 1 << 20);
    // So a user who owns the extracted bundle and rewrites a binary in it
    // changes nothing root runs: the kubelet, restarted, is still the one
    // runtime.json names.
    let kubelet_zst = bundle.join("runtime/bin/kubelet.zst");
    let saved_zst = dir.path().join("kubelet.zst.orig");
    fs::copy(&kubelet_zst, &saved_zst).unwrap();
    ok(Command::new("chown").args(["-R", "nobody"]).arg(&bundle));
    ok(Command::new("setpriv")
        .args([
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "sh",
            "-c",
        ])
        .arg(format!(
            "printf '#!/bin/sh\\necho owned\\n' | zstd -q -f -o {}",
            kubelet_zst.display()
        )));
    ok(Command::new("pkill").args(["-x", "kubelet"]));
    let runtime_meta: serde_json::Value =
        serde_json::from_slice(&fs::read(state.join("runtime/runtime.json")).unwrap()).unwrap();
    let kubelet_sha = runtime_meta["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "kubelet")
        .unwrap()["sha256"]
        .as_str()
        .unwrap()
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    let kubelet_exe = loop {
        let pid = stdout(&run(Command::new("pgrep").args(["-x", "kubelet"])));
        if let Some(exe) = pid
            .lines()
            .next()
            .and_then(|p| fs::read_link(format!("/proc/{}/exe", p.trim())).ok())
        {
            break exe;
        }
        assert!(Instant::now() < deadline, "the kubelet was not restarted");
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(kubelet_exe, state.join("runtime/bin/kubelet"));
    let sha = stdout(&ok(Command::new("sha256sum").arg(&kubelet_exe)));
    assert!(sha.starts_with(&kubelet_sha), "{sha}");
    fs::copy(&saved_zst, &kubelet_zst).unwrap();
    ok(Command::new("chown").args(["-R", "root"]).arg(&bundle));
    // The monitoring stack: InfluxDB runs in the cluster and receives the
    // node health checker's measurements (every 10 s) from the agent.
    let monitoring: serde_json::Value =
        serde_json::from_slice(&fs::read(state.join("monitoring.json")).unwrap()).unwrap();
    let url = monitoring["url"].as_str().unwrap().to_string();
    assert!(
        url.starts_with("https://"),
        "InfluxDB is reached over TLS: {url}"
    );
    let password = fs::read_to_string(state.join("monitoring/influxdb-admin-password")).unwrap();
    let influx = |q: &str, db: Option<&str>| {
        let o = Command::new("curl")
            .args([
                "-sf",
                "-m",
                "5",
                "-u",
                &format!("admin:{}", password.trim()),
            ])
            // HTTPS, checked against the cluster CA: no -k.
            .arg("--cacert")
            .arg(state.join("pki/ca.crt"))
            .arg(format!("{url}/query?db={}", db.unwrap_or("")))
            .args(["--data-urlencode", &format!("q={q}")])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let body = influx("SELECT count(loaded) FROM br_netfilter", Some("k8s"));
        if body.contains("\"count\"") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no node health measurements in InfluxDB: {body}"
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    let rps = influx("SHOW RETENTION POLICIES ON k8s", None);
    assert!(rps.contains("medium") && rps.contains("long"), "{rps}");
    // InfluxDB keeps its data on a claim of the default StorageClass: its
    // pod deleted, the new one finds the policies and the first measurement.
    let first = |body: &str| -> Option<String> {
        let v: serde_json::Value = serde_json::from_str(body).ok()?;
        v["results"][0]["series"][0]["values"][0][0]
            .as_str()
            .map(String::from)
    };
    let first_before = first(&influx(
        "SELECT first(loaded) FROM br_netfilter",
        Some("k8s"),
    ))
    .expect("a first measurement");
    let claim = kubectl(
        &bundle,
        &state,
        &[
            "get",
            "pvc",
            "-n",
            "monitoring",
            "influxdb-data",
            "-o",
            "jsonpath={.status.phase}",
        ],
    );
    assert_eq!(claim, "Bound");
    kubectl(
        &bundle,
        &state,
        &[
            "delete",
            "pod",
            "-n",
            "monitoring",
            "-l",
            "app.kubernetes.io/name=influxdb",
            "--wait=true",
        ],
    );
    kubectl(
        &bundle,
        &state,
        &[
            "rollout",
            "status",
            "-n",
            "monitoring",
            "deployment/influxdb",
            "--timeout=180s",
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let rps = influx("SHOW RETENTION POLICIES ON k8s", None);
        let body = influx("SELECT first(loaded) FROM br_netfilter", Some("k8s"));
        if rps.contains("long") && first(&body).as_deref() == Some(first_before.as_str()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "InfluxDB lost its data with its pod: {rps} {body}"
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    // Every password is its own, kept 0600; the admin's never reaches the cluster.
    let mut seen = std::collections::BTreeSet::new();
    for name in [
        "influxdb-admin",
        "influxdb-node",
        "influxdb-telegraf",
        "influxdb-grafana",
        "influxdb-kapacitor",
        "grafana-admin",
    ] {
        let file = state.join(format!("monitoring/{name}-password"));
        let mode =
            std::os::unix::fs::PermissionsExt::mode(&fs::metadata(&file).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o600, "{name}");
        assert!(
            seen.insert(fs::read_to_string(&file).unwrap()),
            "{name} shares a password"
        );
    }
    let secrets = kubectl(
        &bundle,
        &state,
        &["get", "secrets", "-n", "monitoring", "-o", "name"],
    );
    assert!(!secrets.contains("influxdb-auth"), "{secrets}");
    for s in [
        "influxdb-telegraf",
        "influxdb-grafana",
        "influxdb-kapacitor",
        "grafana-admin",
    ] {
        assert!(secrets.contains(&format!("secret/{s}")), "{secrets}");
    }
    // The alert destinations are kept (0600); this example runs no Kapacitor.
    let saved = state.join("monitoring/alerting.json");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&fs::metadata(&saved).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    assert!(stderr(&o).contains("no alerts are sent"), "{}", stderr(&o));
    fs::write(
        &alerts,
        "kind: alerttarget\nspec:\n  url: https://hooks.example.com/other\n",
    )
    .unwrap();
    let o = ok(tele()
        .args(["resource", "create"])
        .arg(&alerts)
        .arg("--state-dir")
        .arg(&state));
    assert!(stdout(&o).contains("saved"), "{}", stdout(&o));
    assert!(fs::read_to_string(&saved)
        .unwrap()
        .contains("hooks.example.com/other"));
    // tele and kubectl are on the admin's PATH, and nothing depends on where
    // the bundle was extracted: move it away and ask.
    let moved = bundle.with_extension("moved");
    fs::rename(&bundle, &moved).unwrap();
    let nodes = ok(Command::new(bin_dir(&state).join("kubectl"))
        .env_remove("KUBECONFIG")
        .env_remove("TELE_STATE_DIR")
        .args(["get", "nodes", "-o", "name"]));
    assert!(stdout(&nodes).starts_with("node/"), "{}", stdout(&nodes));
    let o = run(Command::new(bin_dir(&state).join("tele"))
        .arg("status")
        .env_remove("TELE_STATE_DIR"));
    fs::rename(&moved, &bundle).unwrap();
    assert!(o.status.success(), "status:\n{}{}", stdout(&o), stderr(&o));
    for svc in [
        "etcd",
        "kube-apiserver",
        "kubelet",
        "registry",
        "health-checker",
    ] {
        assert!(
            stdout(&o)
                .lines()
                .any(|l| l.trim_start().starts_with(svc) && l.contains("running (pid")),
            "{svc} runs:\n{}",
            stdout(&o)
        );
    }
    assert!(
        stdout(&o).contains("default/Deployment/hello-web 1/1"),
        "{}",
        stdout(&o)
    );
    assert!(
        stdout(&o).contains("monitoring/Deployment/influxdb 1/1"),
        "{}",
        stdout(&o)
    );
    assert!(
        stdout(&o).contains("br_netfilter"),
        "node health in status:\n{}",
        stdout(&o)
    );
    let o = ok(tele().args(["plan", "--state-dir"]).arg(&state));
    assert!(
        stdout(&o)
            .lines()
            .filter(|l| l.contains("completed"))
            .count()
            >= 7,
        "{}",
        stdout(&o)
    );

    // 3. An uninstall killed halfway is finished by running it again.
    kill_at(
        {
            let mut c = tele();
            c.args(["uninstall", "--yes", "--state-dir"]).arg(&state);
            c
        },
        &state,
        "uninstall:services",
        &dir.path().join("killed-uninstall.log"),
    );
    assert!(state.exists());
    uninstall(&state);
    assert!(!state.exists());
    assert!(!bin_dir(&state).join("kubectl").exists(), "links removed");

    // 4. An install killed with SIGKILL inside each phase in turn (after its
    //    work, or before it), resumed each time; the last --resume finishes.
    let phases: Vec<String> = {
        // The plan's leaves, from a plan written by a run stopped at once.
        kill_at(
            install_cmd(&bundle, &state, &[]),
            &state,
            "/checks:before",
            &dir.path().join("killed-install.log"),
        );
        let plan = plan_state(&state).unwrap();
        fn leaves(v: &serde_json::Value, out: &mut Vec<String>) {
            for p in v["phases"].as_array().into_iter().flatten() {
                if p["phases"].is_array() {
                    leaves(p, out);
                } else {
                    out.push(p["id"].as_str().unwrap().to_string());
                }
            }
        }
        let mut out = Vec::new();
        leaves(&plan, &mut out);
        out
    };
    assert!(phases.len() >= 8, "{phases:?}");
    // SIGTERM (or Ctrl-C) ends the install as interrupted: exit 130, the
    // phase recorded as such, and a hint to resume.
    let log = dir.path().join("interrupted-install.log");
    let status = signal_at(
        install_cmd(&bundle, &state, &["--resume"]),
        &state,
        "/checks:before",
        &log,
        nix::sys::signal::Signal::SIGTERM,
    );
    let err = fs::read_to_string(&log).unwrap();
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(
        err.contains("interrupted in phase /checks") && err.contains("--resume"),
        "{err}"
    );
    let checks = &plan_state(&state).unwrap()["phases"][0];
    assert_eq!(checks["state"], "failed");
    assert_eq!(checks["error"], "interrupted by a signal");
    assert!(phases
        .iter()
        .any(|p| p.starts_with("/nodes/") && p.ends_with("/services")));
    for (i, id) in phases.iter().enumerate() {
        let point = format!("{id}:{}", if i % 2 == 0 { "after" } else { "before" });
        kill_at(
            install_cmd(&bundle, &state, &["--resume"]),
            &state,
            &point,
            &dir.path().join("killed-install.log"),
        );
    }
    let o = install(&bundle, &state, &[]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "a second plain install must refuse and point at --resume"
    );
    assert!(stderr(&o).contains("--resume"), "{}", stderr(&o));
    let o = install(
        &bundle,
        &state,
        &["--resume", "--advertise-addr", "127.0.0.1"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("cannot change the settings of a started install"),
        "resume with a changed setting is refused:\n{}",
        stderr(&o)
    );
    // What the node runs, changed in the state directory, is checked and put
    // right by --resume: a runtime binary and an image blob.
    let kubectl_bin = state.join("runtime/bin/kubectl");
    let kubectl_sha = stdout(&ok(Command::new("sha256sum").arg(&kubectl_bin)));
    // Replaced whole (a running kubectl would refuse a write in place).
    let swapped = state.join("runtime/bin/.kubectl.swapped");
    fs::write(&swapped, "#!/bin/sh\necho owned\n").unwrap();
    fs::rename(&swapped, &kubectl_bin).unwrap();
    let blob = fs::read_dir(state.join("images/blobs/sha256"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .unwrap();
    let blob_bytes = fs::read(&blob).unwrap();
    fs::write(&blob, vec![b'x'; blob_bytes.len()]).unwrap();
    let o = install(&bundle, &state, &["--resume"]);
    assert!(
        o.status.success(),
        "resume failed:\n{}\n{}",
        stderr(&o),
        stdout(&o)
    );
    assert_eq!(
        stdout(&ok(Command::new("sha256sum").arg(&kubectl_bin))),
        kubectl_sha
    );
    assert!(
        fs::read(&blob).unwrap() == blob_bytes,
        "the blob was not put right"
    );
    app_answers(&bundle, &state);

    // 5. Uninstall, killed after removing the network (before deleting the
    //    state directory) and run again, leaves nothing behind.
    kill_at(
        {
            let mut c = tele();
            c.args(["uninstall", "--yes", "--state-dir"]).arg(&state);
            c
        },
        &state,
        "uninstall:network",
        &dir.path().join("killed-uninstall.log"),
    );
    uninstall(&state);
    assert!(!state.exists());
    let state_str = state.display().to_string();
    let left = live_processes_mentioning(&state_str);
    assert!(left.is_empty(), "processes left: {left:?}");
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(&state_str),
        "mounts left under {state_str}"
    );
    let listening = stdout(&ok(Command::new("ss").args(["-ltnH"])));
    for port in [":6443 ", ":2379 ", ":5043 ", ":10250 "] {
        assert!(
            !listening.contains(port),
            "port {port} still listening:\n{listening}"
        );
    }
    let links = stdout(&ok(Command::new("ip").args(["-o", "link"])));
    assert!(!links.contains("tele0"), "the CNI bridge is left:\n{links}");
    let nat = stdout(&ok(Command::new("iptables").args(["-t", "nat", "-S"])));
    assert!(
        !nat.contains("KUBE-") && !nat.contains("CNI-"),
        "iptables rules left:\n{nat}"
    );

    // 6. A failing hook stops the install with the hook's own logs, and --resume
    //    runs it again (still failing here) without redoing the finished phases.
    let failing = failing_hook_bundle(dir.path(), &bundle);
    let o = install(&failing, &state, &[]);
    assert_eq!(o.status.code(), Some(4), "a failed phase: {}", stdout(&o));
    let err = stderr(&o);
    assert!(
        err.contains("postInstall") && err.contains("schema migration failed: disk quota"),
        "the hook's logs are shown:\n{err}"
    );
    let o = install(&failing, &state, &["--resume"]);
    assert_eq!(o.status.code(), Some(4));
    let err = stderr(&o);
    assert!(
        err.contains("/app")
            && err.contains("already done")
            && err.contains("schema migration failed"),
        "{err}"
    );
    uninstall(&state);

    // 7. An app that never becomes ready: after the timeout the install says
    //    which workload is not ready and why (its pods and their events).
    let crashing = crashing_app_bundle(dir.path(), &bundle);
    let o = install(&crashing, &state, &["--timeout", "25"]);
    assert_eq!(o.status.code(), Some(4), "{}", stdout(&o));
    let err = stderr(&o);
    assert!(
        err.contains("Deployment default/hello-web is not ready"),
        "{err}"
    );
    assert!(
        err.contains("pods in default:") && err.contains("recent events:"),
        "{err}"
    );
    assert!(
        err.contains("CrashLoopBackOff") || err.contains("Back-off restarting failed container"),
        "the report says why:\n{err}"
    );
    uninstall(&state);

    // 8. A service that cannot start ends the phase at once, quoting its log
    //    (etcd's peer port is taken; the ports check is skipped to get there).
    let node_ip = summary["nodeIp"].as_str().unwrap().to_string();
    let _squatter = std::net::TcpListener::bind((node_ip.as_str(), 2380)).unwrap();
    let o = install(&bundle, &state, &["--skip-check", "ports"]);
    assert_eq!(o.status.code(), Some(4), "{}", stdout(&o));
    let err = stderr(&o);
    assert!(
        err.contains("etcd exited while starting") && err.contains("address already in use"),
        "the crash and its cause are shown:\n{err}"
    );
    assert!(
        !err.contains("did not become ready within"),
        "the crash ends the wait, not its time limit:\n{err}"
    );
    uninstall(&state);
}

/// The example app with a postInstall hook that fails, built into a new bundle
/// (the same runtime, images and static installer).
fn failing_hook_bundle(dir: &Path, good: &Path) -> PathBuf {
    let hook = concat!(
        "  postInstall:\n    job: |\n      apiVersion: batch/v1\n      kind: Job\n",
        "      metadata:\n        name: hello-migrate\n      spec:\n        backoffLimit: 0\n",
        "        template:\n          spec:\n            restartPolicy: Never\n            containers:\n",
        "              - name: migrate\n                image: example.com/hello/busybox:1.36\n",
        "                command: [\"/bin/sh\", \"-c\", \"echo schema migration failed: disk quota >&2; exit 3\"]\n",
    );
    variant_bundle(
        dir,
        good,
        "failing-hook",
        false,
        |m| {
            assert!(m.contains("hooks:\n"));
            m.replacen("hooks:\n", &format!("hooks:\n{hook}"), 1)
        },
        |r| r,
    )
}

/// The example app whose web server exits at once (CrashLoopBackOff).
fn crashing_app_bundle(dir: &Path, good: &Path) -> PathBuf {
    let image = "          image: example.com/hello/web:1.0.0\n";
    variant_bundle(
        dir,
        good,
        "crashing-app",
        false,
        |m| m,
        |r| {
            assert!(r.contains(image));
            r.replacen(
                image,
                &format!("{image}          command: [\"/bin/false\"]\n"),
                1,
            )
        },
    )
}
