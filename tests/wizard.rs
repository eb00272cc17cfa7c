//! The install wizard in a real browser: Debian's headless Chromium, driven
//! over WebDriver (chromium-driver), takes the example bundle from
//! `./install --wizard` to a running cluster on this machine (the tele
//! agent), as an admin would: LOCATION (the app's name, the deployment name
//! checked as it is typed, bare metal), CAPACITY (the flavor), INSTALLATION
//! (the phases as they run, a reload in the middle, the end with the
//! kubeconfig). Around it, what an attacker or a script would see: the
//! certificate is the cluster CA's and has the fingerprint printed, nothing
//! is served without the one-time token, the token works once, a POST
//! without the CSRF token is refused, the page loads nothing from
//! elsewhere, it fits a phone's width, and the wizard stops serving once the
//! install is done. Then an install started from the command line that
//! failed is opened by the wizard where it stopped, and resumed from it;
//! and one running from the command line is followed by a wizard started on
//! its state directory, live, to its end.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::browser::{status_of, Browser, WizardInstaller};
use support::example::{example_bundle, variant_bundle};
use support::*;

fn openssl_fingerprint(addr: &str, ca: &Path) -> (String, bool) {
    let o = ok(Command::new("sh").arg("-c").arg(format!(
        "openssl s_client -connect {addr} -CAfile {} </dev/null 2>/dev/null | tee /dev/stderr | openssl x509 -noout -fingerprint -sha256",
        ca.display()
    )));
    let text = stdout(&o);
    let verified = stderr(&o).contains("Verify return code: 0 (ok)");
    (
        text.trim()
            .rsplit_once('=')
            .map(|(_, f)| f.to_string())
            .unwrap_or_default(),
        verified,
    )
}

#[test]
fn the_wizard_takes_an_admin_from_the_bundle_to_a_running_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let good = example_bundle(dir.path());
    // The example app with a post-install hook that fails until the admin
    // puts right what it checks (a file on the node): a failing phase to be
    // shown and resumed from the page.
    let fix = dir.path().join("fix");
    std::fs::create_dir(&fix).unwrap();
    let hook = format!(
        concat!(
            "  postInstall:\n    job: |\n      apiVersion: batch/v1\n      kind: Job\n",
            "      metadata:\n        name: hello-licence\n      spec:\n        backoffLimit: 0\n",
            "        template:\n          spec:\n            restartPolicy: Never\n            containers:\n",
            "              - name: check\n                image: example.com/hello/busybox:1.36\n",
            "                command: [\"/bin/sh\", \"-c\", \"test -f /fix/licence || {{ echo no licence file: put it in place and resume >&2; exit 3; }}\"]\n",
            "                volumeMounts: [{{name: fix, mountPath: /fix}}]\n",
            "            volumes: [{{name: fix, hostPath: {{path: {}}}}}]\n",
        ),
        fix.display()
    );
    let bundle = variant_bundle(
        dir.path(),
        &good,
        "licensed",
        true,
        |m| m.replacen("hooks:\n", &format!("hooks:\n{hook}"), 1),
        |r| r,
    );
    let state = dir.path().join("state");
    let _guard = Installed {
        state: state.clone(),
    };
    let port = free_port();
    let mut installer = Command::new(bundle.join("install"));
    installer
        .arg("--state-dir")
        .arg(&state)
        .args([
            "--bin-dir",
            "none",
            "--autofix",
            "--timeout",
            "300",
            "--wizard",
        ])
        .args(["--wizard-port", &port.to_string()])
        .env("NO_COLOR", "1");
    let wizard = WizardInstaller::spawn(installer);
    let url = wizard.url.clone();
    let fingerprint = wizard.fingerprint.clone();
    let origin = url.split("/?").next().unwrap().to_string();
    let addr = origin.trim_start_matches("https://").to_string();

    // The certificate is the cluster CA's, made before the install, and is
    // the one whose fingerprint was printed.
    let (seen, verified) = openssl_fingerprint(&addr, &state.join("pki/ca.crt"));
    assert_eq!(seen, fingerprint);
    assert!(verified, "the wizard's certificate is not the cluster CA's");

    // Nothing without the token; a wrong token gets nothing either.
    assert_eq!(status_of(&[&format!("{origin}/")]), "401");
    assert_eq!(status_of(&[&format!("{origin}/api/v1/app")]), "401");
    assert_eq!(
        status_of(&[&format!("{origin}/?token=00{}", &url[url.len() - 10..])]),
        "401"
    );

    let b = Browser::start();
    b.open_wizard(&url);
    // The token is spent: the same address no longer opens a session.
    assert_eq!(status_of(&[&url]), "401");
    assert_eq!(
        b.js("return document.querySelector('#steps li[aria-current=step]').dataset.step;"),
        "location"
    );
    assert!(b.text("#app-version").contains("1.0.0"));
    assert!(b
        .text("#deployment-hint")
        .contains("A good example of a deployment name is 'hello-yourcompany'"));
    // The name is checked as it is typed.
    b.screenshot("1-location");
    b.type_into("#deployment", "My_Shop");
    b.wait_for(
        "the name's error",
        "document.querySelector('#deployment-error').textContent.includes('Lower-case letters')",
        Duration::from_secs(5),
    );
    assert_eq!(
        b.js("return document.querySelector('#deployment').getAttribute('aria-invalid');"),
        "true"
    );
    b.type_into("#deployment", "hello-example");
    b.wait_for(
        "the name accepted",
        "document.querySelector('#deployment-error').textContent === ''",
        Duration::from_secs(5),
    );
    // Bare metal is chosen; AWS and Azure are offered (tests/wizard_aws.rs,
    // tests/wizard_azure.rs); their fields only with them.
    assert_eq!(
        b.js("return document.querySelector('#provider-onprem').checked;"),
        true
    );
    assert_eq!(
        b.js("return [document.querySelector('#provider-aws').disabled, document.querySelector('#provider-azure').disabled, document.querySelector('#aws-box').hidden, document.querySelector('#azure-box').hidden];"),
        serde_json::json!([false, false, true, true])
    );
    // Every form control has a label.
    assert_eq!(
        b.js("return [...document.querySelectorAll('input, select')].filter(i => !i.labels || i.labels.length === 0).length;"),
        0
    );

    // A POST without the session's CSRF token is refused, even with the cookie.
    let cookies = b.call("GET", "/cookie", serde_json::json!({}));
    let cookie = cookies
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "tele_wizard"))
        .unwrap_or_else(|| panic!("no session cookie: {cookies}"));
    assert_eq!(cookie["httpOnly"], true);
    assert_eq!(cookie["secure"], true);
    let jar = format!("tele_wizard={}", cookie["value"].as_str().unwrap());
    assert_eq!(
        status_of(&[
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "-b",
            &jar,
            "-d",
            r#"{"deployment":"evil","provider":"onprem","flavor":"one"}"#,
            &format!("{origin}/api/v1/install"),
        ]),
        "403"
    );

    b.click("#to-capacity");
    b.wait_for(
        "the CAPACITY step",
        "!document.querySelector('#capacity').hidden",
        Duration::from_secs(5),
    );
    b.screenshot("2-capacity");
    assert_eq!(
        b.js("return document.querySelector('#flavor-one').checked;"),
        true
    );
    assert!(b.text("#flavors").contains("1 × node"));
    b.click("#start-install");
    b.wait_for(
        "the INSTALLATION step",
        "!document.querySelector('#installation').hidden",
        Duration::from_secs(10),
    );
    b.wait_for(
        "a phase running",
        "[...document.querySelectorAll('#phases .badge')].some(e => e.textContent.startsWith('running'))",
        Duration::from_secs(120),
    );
    b.screenshot("3-installation");
    // A reload in the middle comes back to the install as it stands.
    b.call("POST", "/refresh", serde_json::json!({}));
    b.wait_for(
        "the INSTALLATION step after a reload",
        "document.querySelector('#installation') && !document.querySelector('#installation').hidden && document.querySelectorAll('#phases .badge').length > 3",
        Duration::from_secs(30),
    );
    // The hook fails: the page shows the phase failed, its error, and Resume.
    b.wait_for(
        "the failed hook",
        "document.querySelector('#install-state').textContent === 'The install failed.'",
        Duration::from_secs(600),
    );
    b.screenshot("4-failed");
    let failure = b.text("#failure-error");
    assert!(
        failure.contains("no licence file: put it in place and resume"),
        "{failure}"
    );
    assert!(b.text("#failure-hint").contains("then press Resume"));
    assert_eq!(
        b.js("return [...document.querySelectorAll('#phases .badge')].some(e => e.textContent.startsWith('failed'));"),
        true,
        "{}",
        b.text("#phases")
    );
    // The admin puts it right and resumes from the page.
    std::fs::write(fix.join("licence"), "ok").unwrap();
    b.click("#resume");
    b.wait_for(
        "the install done",
        "document.querySelector('#install-state').textContent === 'The install is done.'",
        Duration::from_secs(600),
    );
    b.screenshot("5-done");
    let done = b.text("#done-list");
    assert!(done.contains("hello 1.0.0 on node"), "{done}");
    assert!(
        done.contains(
            &state
                .join("pki/kubeconfig/admin.conf")
                .display()
                .to_string()
        ),
        "{done}"
    );
    assert!(
        done.contains("Grafana") || done.contains("InfluxDB"),
        "{done}"
    );
    assert_eq!(
        b.js("return [...document.querySelectorAll('#phases .badge')].every(e => e.textContent.startsWith('done'));"),
        true,
        "{}",
        b.text("#phases")
    );
    // Nothing came from anywhere but the wizard.
    let elsewhere = b.js(&format!(
        "return performance.getEntriesByType('resource').map(e => e.name).filter(n => !n.startsWith('{origin}/'));"
    ));
    assert_eq!(elsewhere, serde_json::json!([]));
    // A phone's width: nothing wider than the screen.
    b.call(
        "POST",
        "/window/rect",
        serde_json::json!({"width": 390, "height": 844}),
    );
    assert_eq!(
        b.js("return document.documentElement.scrollWidth <= window.innerWidth;"),
        true
    );
    b.screenshot("6-phone");

    // The installer ends with the summary, and the wizard stops serving.
    let (status, out, rest) = wizard.wait();
    assert!(status.success(), "{out}\n{rest}");
    assert!(out.contains("hello 1.0.0 is installed on node"), "{out}");
    assert_eq!(status_of(&[&format!("{origin}/")]), "000");
    // Its certificate served only it: pki/ keeps the cluster's alone.
    assert!(!state.join("pki/wizard.crt").exists() && !state.join("pki/wizard.key").exists());
    // The cluster is there: the node is Ready.
    let nodes = stdout(&ok(Command::new(state.join("runtime/bin/kubectl"))
        .arg("--kubeconfig")
        .arg(state.join("pki/kubeconfig/admin.conf"))
        .args(["get", "nodes", "--no-headers"])));
    assert!(nodes.contains(" Ready "), "{nodes}");

    // An install started from the command line that failed (the hook's file
    // gone again): the wizard opens at it, shows where it stopped, and
    // resumes it.
    ok(tele()
        .args(["uninstall", "--yes", "--state-dir"])
        .arg(&state));
    std::fs::remove_file(fix.join("licence")).unwrap();
    let o = run(Command::new(bundle.join("install"))
        .arg("--state-dir")
        .arg(&state)
        .args(["--bin-dir", "none", "--autofix", "--timeout", "300"])
        .env("NO_COLOR", "1"));
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    let mut again = Command::new(bundle.join("install"));
    again
        .arg("--state-dir")
        .arg(&state)
        .args(["--wizard", "--wizard-port", &free_port().to_string()])
        .env("NO_COLOR", "1");
    let wizard = WizardInstaller::spawn(again);
    b.call(
        "POST",
        "/window/rect",
        serde_json::json!({"width": 1280, "height": 900}),
    );
    b.go(&wizard.url);
    b.wait_for(
        "the stopped install",
        "document.querySelector('#install-state') && document.querySelector('#install-state').textContent === 'The install failed.' && document.querySelectorAll('#phases .badge').length > 3",
        Duration::from_secs(30),
    );
    let failure = b.text("#failure-error");
    assert!(
        failure.contains("phase /hooks/postInstall failed") && failure.contains("no licence file"),
        "{failure}"
    );
    assert_eq!(
        b.js("return document.querySelector('#steps li[aria-current=step]').dataset.step;"),
        "installation"
    );
    std::fs::write(fix.join("licence"), "ok").unwrap();
    b.click("#resume");
    b.wait_for(
        "the resumed install done",
        "document.querySelector('#install-state').textContent === 'The install is done.'",
        Duration::from_secs(600),
    );
    let (status, out, rest) = wizard.wait();
    assert!(status.success(), "{out}\n{rest}");

    // An install running from the command line: a wizard started on its
    // state directory follows it live (the plan's phases, one running, and
    // who runs it) and shows it done, with its summary, when it ends.
    ok(tele()
        .args(["uninstall", "--yes", "--state-dir"])
        .arg(&state));
    let cli = Command::new(bundle.join("install"))
        .arg("--state-dir")
        .arg(&state)
        .args(["--bin-dir", "none", "--autofix", "--timeout", "300"])
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut cli = KillOnDrop(cli);
    let began = std::time::Instant::now();
    while !state.join("plan.json").exists() {
        assert!(began.elapsed() < Duration::from_secs(60), "no plan");
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut follower = Command::new(bundle.join("install"));
    follower
        .arg("--state-dir")
        .arg(&state)
        .args(["--wizard", "--wizard-port", &free_port().to_string()])
        .env("NO_COLOR", "1");
    let wizard = WizardInstaller::spawn(follower);
    b.go(&wizard.url);
    b.wait_for(
        "the command line's install followed",
        "document.querySelector('#install-state') && document.querySelector('#install-state').textContent === 'Installing from the command line…' && [...document.querySelectorAll('#phases .badge')].some(e => e.textContent.startsWith('running'))",
        Duration::from_secs(60),
    );
    let watching = b.text("#watching");
    assert!(
        watching.contains(&format!("process {}", cli.0.id())),
        "{watching}"
    );
    assert!(
        cli.0.try_wait().unwrap().is_none(),
        "the command line's install still runs"
    );
    // Its log too, as that install writes it (STATE_DIR/logs/install.log).
    b.wait_for(
        "the command line's log",
        "document.querySelector('#log').textContent.includes('/checks done in')",
        Duration::from_secs(60),
    );
    b.wait_for(
        "the followed install done",
        "document.querySelector('#install-state').textContent === 'The install is done.'",
        Duration::from_secs(600),
    );
    let cli_status = cli.0.wait().unwrap();
    assert!(cli_status.success(), "the command line's install failed");
    assert_eq!(
        b.js("return [...document.querySelectorAll('#phases .badge')].every(e => e.textContent.startsWith('done'));"),
        serde_json::Value::Bool(true),
        "every phase done"
    );
    let endpoints = b.text("#done");
    assert!(endpoints.contains("hello-web"), "{endpoints}");
    let (status, out, rest) = wizard.wait();
    assert!(status.success(), "{out}\n{rest}");
}
