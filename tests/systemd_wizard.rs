//! The install wizard for a flavor of two nodes, on hosts whose PID 1 is
//! systemd (systemd-nspawn containers on one bridge): `./install --wizard`
//! on the first host, Debian's headless Chromium on this machine driving the
//! page over WebDriver, the second host running the join command the page
//! shows in CAPACITY before the first node is installed: it waits there with
//! its preflight results (and takes the profile the page gives it), the
//! Install button waits for it, and once the first node is installed it
//! joins, the page showing it until the flavor's two nodes are Ready. The single-node path, a failed phase resumed from the
//! page and the wizard's access rules are in tests/wizard.rs.

mod support;

use std::time::Duration;

use support::browser::{status_of, Browser, WizardInstaller};
use support::example::example_bundle;
use support::systemd_host::{HostOptions, SystemdHost};
use support::*;

#[test]
fn a_second_node_joins_with_the_command_the_wizard_shows() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = example_bundle(dir.path());
    let mut first = SystemdHost::boot(
        "tele-wz1",
        HostOptions::new("10.213.0.91/24").bind_ro(&bundle, "/opt/hello"),
    );
    let mut second = SystemdHost::boot(
        "tele-wz2",
        HostOptions::new("10.213.0.92/24").bind_ro(&bundle, "/opt/hello"),
    );
    first.wait_running(Duration::from_secs(120));
    second.wait_running(Duration::from_secs(120));

    let installer = first.command(&[
        "/opt/hello/install",
        "--wizard",
        "--autofix",
        "--timeout",
        "300",
    ]);
    let wizard = WizardInstaller::spawn(installer);
    let url = wizard.url.clone();
    assert!(
        url.starts_with("https://10.213.0.91:61009/?token="),
        "{url}"
    );

    let b = Browser::start();
    b.open_wizard(&url);
    b.type_into("#deployment", "hello-two");
    b.click("#to-capacity");
    b.wait_for(
        "the CAPACITY step",
        "!document.querySelector('#capacity').hidden",
        Duration::from_secs(5),
    );
    b.click("#flavor-two");

    // CAPACITY shows the command of the flavor's other node; the Install
    // button waits for that machine.
    b.wait_for(
        "the join command in CAPACITY",
        "document.querySelectorAll('.line-command').length === 1",
        Duration::from_secs(10),
    );
    assert_eq!(
        b.js("return document.querySelector('#start-install').disabled;"),
        true
    );
    assert!(
        b.text("#line-count").contains("Waiting for 1 more node"),
        "{}",
        b.text("#line-count")
    );
    let command = b
        .js("return document.querySelector('.line-command').textContent;")
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        command.starts_with("sudo ./install join 10.213.0.91 --token ")
            && command.ends_with(" --role node"),
        "{command}"
    );

    // The second machine runs the command as shown (as root: no sudo
    // needed), before the first node is installed: it waits in line.
    let join = second
        .command(&[
            "sh",
            "-c",
            &format!(
                "cd /opt/hello && {} --autofix",
                command.trim_start_matches("sudo ")
            ),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    b.wait_for(
        "the second machine waiting with its preflight results",
        "document.querySelector('#line-nodes tr td:nth-child(2)') && document.querySelector('#line-nodes').textContent.includes('10.213.0.92') && document.querySelector('#line-nodes summary').textContent.startsWith('passed')",
        Duration::from_secs(120),
    );
    assert!(
        b.text("#line-count").contains("machines are here"),
        "{}",
        b.text("#line-count")
    );
    assert_eq!(
        b.js("return document.querySelector('#start-install').disabled;"),
        false
    );
    b.js("document.querySelector('#line-nodes summary').click(); document.querySelector('#line-count').scrollIntoView(); return 1;");
    b.screenshot("7-nodes-waiting");

    // Given another profile on the page, the machine takes it (its checks
    // run again for it, with that profile's token), and back.
    let asked = |profile: &str| {
        format!(
            "(function () {{ var x = new XMLHttpRequest(); x.open('GET', '/api/v1/capacity', false); x.send(); \
             var n = JSON.parse(x.responseText).nodes[0]; return n.asked === '{profile}' && n.checks !== null; }})()"
        )
    };
    for profile in ["master", "node"] {
        let r = b.js(&format!(
            "var x = new XMLHttpRequest(); x.open('POST', '/api/v1/assign', false); \
             x.setRequestHeader('Content-Type', 'application/json'); x.setRequestHeader('X-CSRF-Token', csrf); \
             x.send(JSON.stringify({{node: 'tele-wz2', profile: '{profile}'}})); return x.status;"
        ));
        assert_eq!(r, 200, "assign {profile}");
        b.wait_for(
            &format!("the machine taking the profile {profile}"),
            &asked(profile),
            Duration::from_secs(30),
        );
    }

    b.click("#start-install");
    b.wait_for(
        "the install running",
        "!document.querySelector('#installation').hidden",
        Duration::from_secs(10),
    );
    // The page sees it join, Ready, and the flavor complete.
    b.wait_for(
        "the install done with both nodes",
        "document.querySelector('#install-state').textContent === 'The install is done.'",
        Duration::from_secs(300),
    );
    b.screenshot("8-two-nodes-done");
    let joined = join.wait_with_output().unwrap();
    assert!(
        joined.status.success(),
        "join:\n{}\n{}",
        stdout(&joined),
        stderr(&joined)
    );
    let said = format!("{}{}", stdout(&joined), stderr(&joined));
    assert!(
        said.contains("waiting in the install wizard's CAPACITY step"),
        "{said}"
    );
    assert!(
        said.contains("the admin gave this node the profile master"),
        "{said}"
    );
    let (status, out, rest) = wizard.wait();
    assert!(status.success(), "{out}\n{rest}");
    assert_eq!(status_of(&["https://10.213.0.91:61009/"]), "000");
    let status = first.ok_sh("tele status || true");
    assert!(
        status.contains("flavor:    two (complete): 2 of 2 node"),
        "{status}"
    );
    let nodes = first.ok_sh("kubectl get nodes --no-headers");
    assert_eq!(
        nodes.lines().filter(|l| l.contains(" Ready ")).count(),
        2,
        "{nodes}"
    );
}
