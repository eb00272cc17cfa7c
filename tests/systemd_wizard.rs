//! The install wizard for a flavor of two nodes, on hosts whose PID 1 is
//! systemd (systemd-nspawn containers on one bridge): `./install --wizard`
//! on the first host, Debian's headless Chromium on this machine driving the
//! page over WebDriver, the second host joining with the command the page
//! shows, and the page showing that node as it joins until the flavor's two
//! nodes are Ready. The single-node path, a failed phase resumed from the
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
    b.click("#start-install");
    b.wait_for(
        "the first node installed, waiting for the second",
        "!document.querySelector('#joining').hidden && document.querySelectorAll('.join-command').length > 0",
        Duration::from_secs(600),
    );
    b.wait_for(
        "the flavor's count",
        "document.querySelector('#joining-count').textContent.includes(\"two flavor's nodes: 1 of 2 node Ready\")",
        Duration::from_secs(10),
    );
    assert!(
        b.text("#nodes").contains("10.213.0.91"),
        "{}",
        b.text("#nodes")
    );
    b.screenshot("7-joining");
    let command = b
        .js("return document.querySelector('.join-command').textContent;")
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        command.starts_with("sudo ./install join 10.213.0.91 --token "),
        "{command}"
    );

    // The second machine runs the command as shown (as root: no sudo needed).
    let join = second.sh(&format!(
        "cd /opt/hello && {} --autofix",
        command.trim_start_matches("sudo ")
    ));
    assert!(
        join.status.success(),
        "join:\n{}\n{}",
        stdout(&join),
        stderr(&join)
    );

    // The page sees it join, Ready, and the flavor complete.
    b.wait_for(
        "the install done with both nodes",
        "document.querySelector('#install-state').textContent === 'The install is done.'",
        Duration::from_secs(300),
    );
    b.screenshot("8-two-nodes-done");
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
