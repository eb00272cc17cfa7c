//! Signed bundles end to end: `tele keygen`, `tele build --sign-key`,
//! `tele verify --key`, `./install --key` and `--signed-only`, an installer
//! with the vendor's key built in (scripts/test builds one), and the check
//! an admin makes with OpenSSL alone, as docs/signing.md describes it.

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use support::*;

/// An app-only bundle of one busybox image, signed with `key` when given,
/// as a tarball in `dir`.
fn bundle(dir: &Path, name: &str, key: Option<&Path>) -> (PathBuf, std::process::Output) {
    let f = ImageFactory::new(&dir.join(format!("{name}-images")));
    f.base("example.com/test/base:1");
    let manifest = write_app(
        &dir.join(format!("{name}-app")),
        "shop",
        &["example.com/test/base:1"],
        &[],
    );
    let out = dir.join(format!("{name}.tar"));
    let mut c = tele();
    c.arg("build")
        .arg(&manifest)
        .arg(format!("--image-source=oci:{}", f.layout.display()))
        .arg("--cache-dir")
        .arg(dir.join("cache"))
        .arg("-o")
        .arg(&out);
    if let Some(k) = key {
        c.arg("--sign-key").arg(k);
    }
    let o = ok(&mut c);
    (out, o)
}

fn keygen(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let base = dir.join(name);
    ok(tele().arg("keygen").arg("-o").arg(&base));
    (
        dir.join(format!("{name}.key")),
        dir.join(format!("{name}.pub")),
    )
}

fn verify(bundle: &Path, key: Option<&Path>) -> std::process::Output {
    let mut c = tele();
    c.arg("verify").arg(bundle);
    if let Some(k) = key {
        c.arg("--key").arg(k);
    }
    run(&mut c)
}

/// `tele install` of the extracted bundle `dir` with `args`, into a state
/// directory that must stay absent when the install refuses.
fn install(tele_bin: &Path, dir: &Path, state: &Path, args: &[&str]) -> std::process::Output {
    run(Command::new(tele_bin)
        .env("NO_COLOR", "1")
        .arg("install")
        .arg(dir)
        .arg("--state-dir")
        .arg(state)
        .args(["--bin-dir", "none"])
        .args(args))
}

#[test]
fn a_signed_bundle_is_checked_against_the_vendors_key_and_a_forged_one_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let (key, public) = keygen(t.path(), "vendor");
    // The private key is the vendor's alone; keys are never overwritten.
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&key), 0o600);
    assert_eq!(mode(&public), 0o644);
    let o = run(tele().arg("keygen").arg("-o").arg(t.path().join("vendor")));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("keys are never overwritten"),
        "{}",
        stderr(&o)
    );
    let (_, other_public) = keygen(t.path(), "other");

    let (signed, o) = bundle(t.path(), "signed", Some(&key));
    assert!(stdout(&o).contains("signed by SHA256:"), "{}", stdout(&o));
    let (unsigned, o) = bundle(t.path(), "unsigned", None);
    assert!(stdout(&o).contains("not signed"), "{}", stdout(&o));

    // verify: the right key, no key, another key, an unsigned bundle.
    let o = verify(&signed, Some(&public));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("ok: signed by SHA256:"),
        "{}",
        stdout(&o)
    );
    let o = verify(&signed, None);
    assert!(o.status.success());
    assert!(stdout(&o).contains("signed, not checked"), "{}", stdout(&o));
    let o = verify(&signed, Some(&other_public));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("error: signature: the signature does not match the key SHA256:"),
        "{}",
        stderr(&o)
    );
    let o = verify(&unsigned, Some(&public));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("the bundle is not signed"),
        "{}",
        stderr(&o)
    );
    // A private key where the public one belongs is named for what it is.
    let o = verify(&signed, Some(&key));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("this is a private key"),
        "{}",
        stderr(&o)
    );

    // A forgery: the app changed and bundle.json made to match it. The
    // files check out; only the signature tells.
    let dir = extract(&signed, &t.path().join("x"));
    let app = fs::read_to_string(dir.join("app.yaml")).unwrap() + "# changed\n";
    fs::write(dir.join("app.yaml"), &app).unwrap();
    let mut meta: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("bundle.json")).unwrap()).unwrap();
    for f in meta["files"].as_array_mut().unwrap() {
        if f["path"] == "app.yaml" {
            f["size"] = app.len().into();
            f["sha256"] = tele_bundle::digest::Digest::of_bytes(app.as_bytes())
                .hex()
                .into();
        }
    }
    fs::write(
        dir.join("bundle.json"),
        serde_json::to_vec_pretty(&meta).unwrap(),
    )
    .unwrap();
    assert!(verify(&dir, None).status.success());
    let o = verify(&dir, Some(&public));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("bundle.json is not what was signed"),
        "{}",
        stderr(&o)
    );

    // The install refuses before anything changes: no state directory.
    let state = t.path().join("state");
    let tele_bin = Path::new(env!("CARGO_BIN_EXE_tele"));
    let o = install(tele_bin, &dir, &state, &["--key", public.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("the bundle's signature does not hold, nothing was changed"),
        "{}",
        stderr(&o)
    );
    assert!(!state.exists());
    let good = extract(&signed, &t.path().join("good"));
    let plain = extract(&unsigned, &t.path().join("plain"));
    let o = install(
        tele_bin,
        &plain,
        &state,
        &["--key", public.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("the bundle is not signed"),
        "{}",
        stderr(&o)
    );
    let o = install(tele_bin, &plain, &state, &["--signed-only"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("--signed-only needs the vendor's public key"),
        "{}",
        stderr(&o)
    );
    assert!(!state.exists());
    // With the right key the signature holds and the install goes on (to
    // the next check: these test bundles carry no Kubernetes).
    let o = install(
        tele_bin,
        &good,
        &state,
        &["--key", public.to_str().unwrap()],
    );
    assert!(
        stderr(&o).contains("bundle signed by the vendor's key SHA256:"),
        "{}",
        stderr(&o)
    );
    assert!(
        stderr(&o).contains("carries no Kubernetes runtime"),
        "{}",
        stderr(&o)
    );
    // Unsigned, without a key: installed with a warning.
    let o = install(tele_bin, &plain, &state, &[]);
    assert!(
        stderr(&o).contains("warning: the bundle is not signed"),
        "{}",
        stderr(&o)
    );

    // What an admin without tele runs (docs/signing.md).
    let o = run(Command::new("sh").current_dir(&good).arg("-c").arg(format!(
        "jq -r .messageSignature.signature bundle.sigstore.json | base64 -d > /tmp/tele-test-bundle.sig && \
         openssl dgst -sha256 -verify {} -signature /tmp/tele-test-bundle.sig bundle.json",
        public.display()
    )));
    assert_eq!(stdout(&o).trim(), "Verified OK", "{}", stderr(&o));
    let o = run(Command::new("sh").current_dir(&dir).arg("-c").arg(format!(
        "openssl dgst -sha256 -verify {} -signature /tmp/tele-test-bundle.sig bundle.json",
        public.display()
    )));
    assert_eq!(stdout(&o).trim(), "Verification failure", "{}", stderr(&o));
}

/// A tele built with the vendor's key (`TELE_TRUSTED_KEY_FILE`), and that
/// key's private half: scripts/test makes them in target/keyed.
fn keyed() -> (PathBuf, PathBuf) {
    let dir = std::env::var_os("TELE_KEYED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/keyed"));
    let (bin, key) = (dir.join("tele"), dir.join("vendor.key"));
    assert!(
        bin.is_file() && key.is_file(),
        "no tele with a built-in key in {}: scripts/test builds one (TELE_TRUSTED_KEY_FILE=vendor.pub cargo build -p tele-cli)",
        dir.display()
    );
    (bin, key)
}

#[test]
fn an_installer_with_the_vendors_key_built_in_installs_only_what_that_key_signed() {
    let (keyed_tele, vendor_key) = keyed();
    let t = tempfile::tempdir().unwrap();
    let (other_key, _) = keygen(t.path(), "other");
    let state = t.path().join("state");
    let (unsigned, _) = bundle(t.path(), "unsigned", None);
    let (forged, _) = bundle(t.path(), "forged", Some(&other_key));
    let (signed, _) = bundle(t.path(), "signed", Some(&vendor_key));
    for (name, tarball, want) in [
        ("unsigned", &unsigned, "the bundle is not signed"),
        ("forged", &forged, "the signature does not match the key"),
    ] {
        let dir = extract(tarball, &t.path().join(name));
        let o = install(&keyed_tele, &dir, &state, &[]);
        assert_eq!(o.status.code(), Some(1), "{name}: {}", stderr(&o));
        assert!(stderr(&o).contains(want), "{name}: {}", stderr(&o));
        assert!(!state.exists());
    }
    let dir = extract(&signed, &t.path().join("signed"));
    let o = install(&keyed_tele, &dir, &state, &[]);
    assert!(
        stderr(&o).contains("bundle signed by the vendor's key SHA256:"),
        "{}",
        stderr(&o)
    );
}
