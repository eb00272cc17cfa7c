//! The harness for real systemd hosts (tests/support/systemd_host.rs), proved
//! with what a test of `./install` on such a host relies on: two Debian 12
//! containers boot at once with systemd as PID 1; a service enabled in one
//! answers the other over the test bridge; runc could make cgroups and kubelet
//! finds its /proc/sys values, while the machine's /proc/sys stays untouched;
//! after a reboot the enabled service is back with nothing run by hand; and
//! powered off, the hosts leave no network link or cgroup behind.
//! Needs root and the root filesystem from scripts/systemd-host-rootfs.
#![allow(clippy::print_stderr)]

mod support;

use std::fs;
use std::path::Path;
use std::time::Instant;

use support::systemd_host::{HostOptions, SystemdHost, BOOT_TIMEOUT};

/// A small HTTP server: socat answers every connection on port 8080 with the
/// host's name.
const HELLO: &str = r#"#!/bin/sh
while IFS= read -r line && [ "$line" != "$(printf '\r')" ]; do :; done
printf 'HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nhello from %s\n' "$(cat /etc/hostname)"
"#;

const HELLO_UNIT: &str = "[Unit]
Description=hello over HTTP on port 8080
After=network.target

[Service]
ExecStart=/usr/bin/socat TCP-LISTEN:8080,fork,reuseaddr EXEC:/usr/local/bin/hello-http
Restart=always

[Install]
WantedBy=multi-user.target
";

/// curl from `host` to `ip`:8080, retried for up to 10 s; the answer.
fn fetch(host: &SystemdHost, ip: &str) -> String {
    host.ok_sh(&format!(
        "for i in $(seq 50); do curl -fsS --max-time 2 http://{ip}:8080/ && exit 0; sleep 0.2; done; exit 1"
    ))
}

#[test]
fn two_hosts_boot_serve_each_other_and_come_back_after_a_reboot() {
    let machine_overcommit = fs::read_to_string("/proc/sys/vm/overcommit_memory").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("bundle");
    fs::create_dir_all(&shared).unwrap();
    fs::write(shared.join("README"), "read-only bundle\n").unwrap();
    let out = dir.path().join("out");
    fs::create_dir_all(&out).unwrap();

    let start = Instant::now();
    let mut a = SystemdHost::boot(
        "tt-smoke-a",
        HostOptions::new("10.213.0.11/24")
            .bind_ro(&shared, "/opt/bundle")
            .bind_rw(&out, "/opt/out"),
    );
    let mut b = SystemdHost::boot("tt-smoke-b", HostOptions::new("10.213.0.12/24"));
    a.wait_running(BOOT_TIMEOUT);
    b.wait_running(BOOT_TIMEOUT);
    for h in [&a, &b] {
        eprintln!("host {} booted in {:?}", h.name(), h.boot_time().unwrap());
    }
    eprintln!("both hosts copied and running in {:?}", start.elapsed());

    for h in [&a, &b] {
        assert_eq!(h.ok_sh("cat /proc/1/comm").trim(), "systemd");
        assert_eq!(h.ok_sh("hostname").trim(), h.name());
        let state = h.ok_sh("systemctl is-system-running || true");
        assert!(
            ["running", "degraded"].contains(&state.trim()),
            "{}: {state}",
            h.name()
        );
        assert!(
            h.ok_sh("ip -4 -o addr show host0")
                .contains(&format!("{}/24", h.ip())),
            "{} has its address",
            h.name()
        );
        // runc makes cgroups in the v1 controllers: they are writable.
        h.ok_sh("mkdir /sys/fs/cgroup/cpu/tele-smoke && rmdir /sys/fs/cgroup/cpu/tele-smoke");
        h.ok_sh("mkdir /sys/fs/cgroup/memory/tele-smoke && rmdir /sys/fs/cgroup/memory/tele-smoke");
        // What kubelet would set is set, on files of the host's own.
        assert_eq!(
            h.ok_sh(
                "cat /proc/sys/vm/overcommit_memory /proc/sys/vm/panic_on_oom \
                 /proc/sys/kernel/panic /proc/sys/kernel/panic_on_oops"
            )
            .split_whitespace()
            .collect::<Vec<_>>(),
            ["1", "0", "10", "1"]
        );
        // The rest of /proc/sys is the machine's, and read-only.
        h.ok_sh(
            "v=$(cat /proc/sys/vm/swappiness); ! (echo $v >/proc/sys/vm/swappiness) 2>/dev/null",
        );
    }
    assert_eq!(
        fs::read_to_string("/proc/sys/vm/overcommit_memory").unwrap(),
        machine_overcommit,
        "the machine's own vm.overcommit_memory is untouched"
    );
    let id_a = a.ok_sh("cat /etc/machine-id");
    assert_eq!(id_a.trim().len(), 32, "machine id {id_a:?}");
    assert_ne!(
        id_a,
        b.ok_sh("cat /etc/machine-id"),
        "each host has its own id"
    );

    // Binds: read-only and read-write.
    assert_eq!(a.ok_sh("cat /opt/bundle/README"), "read-only bundle\n");
    assert!(!a.sh("touch /opt/bundle/x").status.success());
    a.ok_sh("hostname >/opt/out/written-by");
    assert_eq!(
        fs::read_to_string(out.join("written-by")).unwrap(),
        "tt-smoke-a\n"
    );

    // A service enabled in A, reached from B over the bridge.
    let hello = a.root().join("usr/local/bin/hello-http");
    fs::write(&hello, HELLO).unwrap();
    a.ok_sh("chmod 755 /usr/local/bin/hello-http");
    fs::write(
        a.root().join("etc/systemd/system/hello-http.service"),
        HELLO_UNIT,
    )
    .unwrap();
    a.ok_sh("systemctl enable --now hello-http.service");
    assert_eq!(a.ok_sh("systemctl is-active hello-http").trim(), "active");
    assert_eq!(fetch(&b, &a.ip().to_string()), "hello from tt-smoke-a\n");
    // ... and from the machine itself.
    let from_machine = support::ok(std::process::Command::new("curl").args([
        "-fsS",
        "--max-time",
        "5",
        &format!("http://{}:8080/", a.ip()),
    ]));
    assert_eq!(support::stdout(&from_machine), "hello from tt-smoke-a\n");

    // Reboot A: the service is back with nothing run by hand, same machine id.
    let t = Instant::now();
    a.reboot();
    eprintln!(
        "host {} rebooted in {:?} (booted in {:?})",
        a.name(),
        t.elapsed(),
        a.boot_time().unwrap()
    );
    assert_eq!(a.ok_sh("cat /etc/machine-id"), id_a);
    assert_eq!(a.ok_sh("systemctl is-enabled hello-http").trim(), "enabled");
    assert_eq!(a.ok_sh("systemctl is-active hello-http").trim(), "active");
    assert_eq!(fetch(&b, &a.ip().to_string()), "hello from tt-smoke-a\n");
    assert_eq!(
        a.ok_sh("cat /proc/sys/vm/overcommit_memory").trim(),
        "1",
        "the boot-time fixes run again after a reboot"
    );
    a.ok_sh("mkdir /sys/fs/cgroup/cpu/tele-smoke && rmdir /sys/fs/cgroup/cpu/tele-smoke");

    // Powered off (as on drop), nothing is left on the machine.
    let mut left = Vec::new();
    for h in [&a, &b] {
        left.extend(h.cgroups().to_vec());
        left.push(format!("/sys/class/net/vb-{}", h.name()).into());
        left.push(Path::new("/run/systemd/nspawn/propagate").join(h.name()));
    }
    let t = Instant::now();
    drop(a);
    drop(b);
    eprintln!("both hosts powered off in {:?}", t.elapsed());
    for p in left {
        assert!(!p.exists(), "{} is left behind", p.display());
    }
}

#[test]
fn a_host_dropped_by_a_panicking_test_leaves_nothing_behind() {
    let mut left = Vec::new();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut h = SystemdHost::boot("tt-panic", HostOptions::new("10.213.0.13/24"));
        h.wait_running(BOOT_TIMEOUT);
        left.extend(h.cgroups().to_vec());
        left.push(Path::new("/sys/class/net/vb-tt-panic").to_path_buf());
        left.push(h.root());
        assert!(
            left.iter().all(|p| p.exists()),
            "{left:?} exist while it runs"
        );
        h.ok_sh("exit 3");
    }));
    let message = result.expect_err("the script fails, so the closure panics");
    let message = message
        .downcast_ref::<String>()
        .expect("a formatted panic message");
    assert!(message.contains("`exit 3` failed"), "{message}");
    assert!(!left.is_empty());
    for p in left {
        assert!(!p.exists(), "{} is left behind", p.display());
    }
}
