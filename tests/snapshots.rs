//! The user-facing output of whole commands, pinned: exit code, stdout and
//! stderr of `build`, `inspect`, `verify`, `plan`, `status` and an install
//! whose preflight fails, in text and JSON. Times, temporary paths, digests
//! and versions are masked; everything else must stay as it is or the
//! snapshot in tests/snapshots/ is updated on purpose
//! (`INSTA_UPDATE=always cargo test --test snapshots`, then review the diff).

mod support;

use std::path::Path;
use std::process::{Command, Output};

use support::example::{runtime_dir, static_installer};
use support::*;

/// Exit code, stdout and stderr as one text.
fn transcript(o: &Output) -> String {
    format!(
        "exit: {}\n--- stdout\n{}--- stderr\n{}",
        o.status.code().map_or("signal".into(), |c| c.to_string()),
        stdout(o),
        stderr(o)
    )
}

/// Masks what differs between runs and machines.
fn settings(tmp: &Path) -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.add_filter(&regex_escape(&tmp.display().to_string()), "[TMP]");
    s.add_filter(r"sha256:[0-9a-f]{64}", "sha256:[DIGEST]");
    s.add_filter(r"\b[0-9a-f]{64}\b", "[HEX]");
    // Durations and instants first, so that their digits are never taken
    // for the version.
    s.add_filter(
        r#""(startedMs|finishedMs|seconds)": \d+(\.\d+)?"#,
        r#""$1": [TIME]"#,
    );
    s.add_filter(r"\b\d+(\.\d+)?\s?(ms|s)\b", "[TIME]");
    s.add_filter(
        &format!(r"\b{}\b", regex_escape(env!("CARGO_PKG_VERSION"))),
        "[VERSION]",
    );
    s.add_filter(r"v?1\.20\.\d+", "[K8S]");
    s.add_filter(r"\b\d+(\.\d+)? ?[KMGT]i?B/s\b", "[RATE]");
    // What the machine has: memory and disk sizes in preflight details.
    s.add_filter(r"\b\d+(\.\d+)? ?[KMGT]i?B of RAM", "[SIZE] of RAM");
    // The installer's size differs from build to build.
    s.add_filter(r"\b\d+\.\d+ MiB\b", "[SIZE]");
    s.add_filter(r#""bundleBytes": \d+"#, r#""bundleBytes": [SIZE]"#);
    s.add_filter(r#"("path": "install",\s+"size": )\d+"#, "$1[SIZE]");
    s.set_prepend_module_to_snapshot(false);
    s
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '/' || c == '_' || c == '-' {
                c.to_string()
            } else {
                format!("\\{c}")
            }
        })
        .collect()
}

/// A small app of two images that share a layer, built offline from files,
/// so that its bundle's sizes are the same on every machine.
fn small_app(dir: &Path) -> std::path::PathBuf {
    let f = ImageFactory::new(dir);
    f.app(
        "example.com/snap/base:1",
        None,
        &[("etc/motd", b"a shared layer\n")],
    );
    f.app(
        "example.com/snap/web:1",
        Some("example.com/snap/base:1"),
        &[("www/index.html", b"<h1>pinned</h1>\n")],
    );
    let deployment = deployment("web", "example.com/snap/web:1");
    write_app(
        &dir.join("app"),
        "snap",
        &["example.com/snap/base:1"],
        &[("resources/web.yaml", deployment.as_str())],
    )
}

#[test]
fn build_inspect_and_verify_output() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = small_app(dir.path());
    let out = dir.path().join("snap.tar");
    let source = format!("--image-source=oci:{}", dir.path().join("layout").display());
    let cache = dir.path().join("cache");
    let installer = static_installer();
    let build = |format: &str, out: &Path| {
        run(tele()
            .arg("build")
            .arg(&manifest)
            .arg(&source)
            .arg("--installer")
            .arg(&installer)
            .arg("--cache-dir")
            .arg(&cache)
            .args(["--output-format", format, "-o"])
            .arg(out))
    };
    let s = settings(dir.path());
    s.bind(|| {
        insta::assert_snapshot!("build_text", transcript(&build("text", &out)));
        let json_out = dir.path().join("snap-json.tar");
        insta::assert_snapshot!("build_json", transcript(&build("json", &json_out)));
        for (name, cmd) in [("inspect", "inspect"), ("verify", "verify")] {
            let text = run(tele().arg(cmd).arg(&out));
            insta::assert_snapshot!(format!("{name}_text"), transcript(&text));
            let json = run(tele().arg(cmd).arg(&out).args(["--output-format", "json"]));
            insta::assert_snapshot!(format!("{name}_json"), transcript(&json));
        }
    });
}

/// `./install` of a bundle whose node profile asks for more memory than any
/// machine has: preflight fails (exit 3) and changes nothing; `tele plan` and
/// `tele status` then describe the stopped install.
#[test]
fn failed_preflight_plan_and_status_output() {
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("app");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(
        app.join("app.yaml"),
        "apiVersion: bundle.gravitational.io/v2\nkind: Bundle\nmetadata:\n  name: greedy\n  resourceVersion: 1.0.0\nnodeProfiles:\n  - name: node\n    requirements:\n      ram:\n        min: 64TB\n",
    )
    .unwrap();
    let installer = static_installer();
    let tar = dir.path().join("greedy.tar");
    ok(tele()
        .env_remove("TELE_NO_RUNTIME")
        .arg("build")
        .arg(app.join("app.yaml"))
        .arg("--runtime")
        .arg(runtime_dir())
        .arg("--installer")
        .arg(&installer)
        .arg("--cache-dir")
        .arg(dir.path().join("cache"))
        .arg("-o")
        .arg(&tar));
    let bundle = extract(&tar, &dir.path().join("x"));
    let state = dir.path().join("state");
    let install = |format: &str| {
        let mut c = Command::new(bundle.join("install"));
        c.arg("--state-dir")
            .arg(&state)
            .args(["--bin-dir", "none", "--advertise-addr", "127.0.0.1"])
            .args(["--node-name", "snap-node", "--output-format", format])
            // The machine's cloud would otherwise show in status.
            .args(["--cloud-provider", "onprem"]);
        // Only the memory check runs: the others describe the machine.
        for check in tele_installer::preflight::check_names() {
            if *check != "ram" {
                c.args(["--skip-check", check]);
            }
        }
        c.env("NO_COLOR", "1");
        run(&mut c)
    };
    let s = settings(dir.path());
    s.bind(|| {
        let text = install("text");
        assert_eq!(text.status.code(), Some(3), "{}", stderr(&text));
        insta::assert_snapshot!("preflight_failed_text", transcript(&text));
        let json = install("json");
        assert_eq!(json.status.code(), Some(3));
        insta::assert_snapshot!("preflight_failed_json", transcript(&json));
        for format in ["text", "json"] {
            let plan = run(tele()
                .args(["plan", "--output-format", format, "--state-dir"])
                .arg(&state));
            insta::assert_snapshot!(format!("plan_{format}"), transcript(&plan));
            let status = run(tele()
                .args(["status", "--output-format", format, "--state-dir"])
                .arg(&state));
            insta::assert_snapshot!(format!("status_{format}"), transcript(&status));
        }
    });
    let _ = tele()
        .args(["uninstall", "--yes", "--state-dir"])
        .arg(&state)
        .output();
}
