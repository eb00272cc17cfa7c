//! Kubernetes' own conformance tests for sig-network (Services, DNS,
//! Networking, Proxy, and the Endpoint, Ingress and IngressClass APIs: every
//! `[sig-network] ... [Conformance]` test of Kubernetes 1.20) against a
//! cluster that tele installed from a bundle on a systemd host. `e2e.test`
//! and `agnhost` are compiled from the source tree the runtime is compiled
//! from, and the test images are rebuilt offline under their upstream names
//! (scripts/build-conformance); the bundle carries them, so the pods pull
//! them from the node's registry like any app's images (the machine has no
//! internet: nowhere else has them). Beside them runs the EndpointSliceMirroring
//! test, which the runtime's patches concern. The tests run from
//! this machine against the host's API server, four at a time (ginkgo,
//! about 3 minutes).

mod support;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use support::example::{conformance_bundle, conformance_dir, runtime_dir};
use support::systemd_host::{HostOptions, SystemdHost};
use support::*;

/// The sig-network conformance tests of Kubernetes 1.20
/// (test/conformance/testdata/conformance.yaml).
const SIG_NETWORK_CONFORMANCE: usize = 32;

/// Not a conformance test in 1.20, run beside them: the EndpointSliceMirroring
/// controller (Endpoints of a Service without a selector mirrored into
/// EndpointSlices, exactly one slice after an update), which the runtime
/// carries a fix for (scripts/kubernetes-patches/0002-*).
const MIRRORING: &str = "[sig-network] EndpointSliceMirroring should mirror a custom Endpoints resource through create update and delete";

/// The tests that passed and that failed, by name, from the progress lines
/// e2e.test prints for each (`{"msg":"PASSED [sig-network] ...", ...}`),
/// whichever ginkgo node ran them.
fn outcomes(out: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut passed = BTreeSet::new();
    let mut failed = BTreeSet::new();
    for line in out.lines() {
        let Some(json) = line.find("{\"msg\":").map(|i| &line[i..]) else {
            continue;
        };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(json) else {
            continue;
        };
        let msg = v["msg"].as_str().unwrap_or_default();
        if let Some(name) = msg.strip_prefix("PASSED ") {
            passed.insert(name.trim().to_string());
        } else if let Some(name) = msg.strip_prefix("FAILED ") {
            failed.insert(name.trim().to_string());
        }
    }
    (passed, failed)
}

#[test]
fn outcomes_are_read_from_the_progress_lines() {
    let out = "noise\n{\"msg\":\"PASSED [sig-network] DNS should provide DNS for services  [Conformance]\",\"total\":-1,\"completed\":1,\"skipped\":3,\"failed\":0}\n\
               [1] {\"msg\":\"FAILED [sig-network] Proxy version v1 should proxy through a service and a pod  [Conformance]\",\"total\":-1}\n";
    let (passed, failed) = outcomes(out);
    assert_eq!(
        passed.into_iter().collect::<Vec<_>>(),
        ["[sig-network] DNS should provide DNS for services  [Conformance]"]
    );
    assert_eq!(failed.len(), 1);
    assert_eq!(outcomes("panic").0.len(), 0);
}

#[test]
fn kubernetes_sig_network_conformance_tests_pass_on_a_tele_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let tests = conformance_dir();
    let bundle = conformance_bundle(dir.path());
    let mut host = SystemdHost::boot(
        "tele-cf1",
        HostOptions::new("10.213.0.81/24").bind_ro(&bundle, "/opt/conformance"),
    );
    host.wait_running(Duration::from_secs(120));
    let o = host.exec(&["/opt/conformance/install", "--autofix", "--timeout", "300"]);
    assert!(
        o.status.success(),
        "install:\n{}\n{}",
        stdout(&o),
        stderr(&o)
    );
    // The admin's kubeconfig, pointed at the API server on the host's
    // address (on the host it goes through the node's local proxy).
    let kubeconfig = dir.path().join("admin.conf");
    let admin = std::fs::read_to_string(host.root().join("var/lib/tele/pki/kubeconfig/admin.conf"))
        .unwrap();
    let admin: String = admin
        .lines()
        .map(|l| match l.split_once("server: ") {
            Some((indent, _)) => format!("{indent}server: https://10.213.0.81:6443\n"),
            None => format!("{l}\n"),
        })
        .collect();
    std::fs::write(&kubeconfig, admin).unwrap();
    let report = dir.path().join("report");
    std::fs::create_dir_all(&report).unwrap();
    let o = Command::new(tests.join("bin/ginkgo"))
        .args(["-nodes=4", "-noColor"])
        .arg(tests.join("bin/e2e.test"))
        .arg("--")
        .arg(format!("--kubeconfig={}", kubeconfig.display()))
        .arg("--provider=skeleton")
        .arg(format!(
            "--kubectl-path={}",
            runtime_dir().join("bin/kubectl").display()
        ))
        .arg("--ginkgo.focus=\\[sig-network\\].*(\\[Conformance\\]|EndpointSliceMirroring)")
        .arg(format!("--report-dir={}", report.display()))
        .arg("--disable-log-dump")
        .current_dir(dir.path())
        .output()
        .unwrap();
    let out = stdout(&o);
    let tail = |s: &str| {
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(150)..].join("\n")
    };
    assert!(
        o.status.success(),
        "e2e.test failed:\n{}\n{}",
        tail(&out),
        tail(&stderr(&o))
    );
    let (passed, failed) = outcomes(&out);
    assert!(failed.is_empty(), "failed: {failed:#?}\n{}", tail(&out));
    let conformance: Vec<_> = passed
        .iter()
        .filter(|t| t.contains("[Conformance]"))
        .collect();
    assert_eq!(
        conformance.len(),
        SIG_NETWORK_CONFORMANCE,
        "passed: {passed:#?}\n{}",
        tail(&out)
    );
    assert!(conformance.iter().all(|t| t.starts_with("[sig-network] ")));
    assert!(
        passed.contains(MIRRORING),
        "{MIRRORING} did not pass: {passed:#?}"
    );
}
