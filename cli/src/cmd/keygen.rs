//! `tele keygen`: a key pair that signs bundles.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use tele_bundle::signature::SigningKey;

use crate::args::KeygenArgs;
use crate::output::Printer;

/// `NAME` with `ext` added (`vendor` -> `vendor.key`).
fn with_ext(name: &Path, ext: &str) -> PathBuf {
    let mut s = name.as_os_str().to_owned();
    s.push(ext);
    PathBuf::from(s)
}

/// Writes `content` to a new file `path` with `mode`, durably; an existing
/// file is never replaced.
fn write_new(path: &Path, content: &str, mode: u32) -> anyhow::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| {
            let hint = if e.kind() == std::io::ErrorKind::AlreadyExists {
                " (it exists: keys are never overwritten; choose another --output NAME)"
            } else {
                ""
            };
            anyhow::anyhow!("cannot create {}: {e}{hint}", path.display())
        })?;
    f.write_all(content.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

pub fn run(a: KeygenArgs, p: &Printer) -> anyhow::Result<ExitCode> {
    let private = with_ext(&a.output, ".key");
    let public = with_ext(&a.output, ".pub");
    for f in [&private, &public] {
        if f.exists() {
            anyhow::bail!(
                "{} exists: keys are never overwritten; choose another --output NAME",
                f.display()
            );
        }
    }
    let key = SigningKey::generate();
    write_new(&public, &key.public_key().to_pem(), 0o644)?;
    if let Err(e) = write_new(&private, &key.to_pem(), 0o600) {
        let _ = std::fs::remove_file(&public);
        return Err(e);
    }
    let fingerprint = key.public_key().fingerprint();
    p.json(&serde_json::json!({
        "ok": true,
        "privateKey": private,
        "publicKey": public,
        "fingerprint": fingerprint,
    }));
    p.out(format!(
        "wrote {} (private, 0600: keep it secret; it signs bundles: tele build --sign-key {})",
        private.display(),
        private.display()
    ));
    p.out(format!(
        "wrote {} (public: give it to admins: ./install --key {})",
        public.display(),
        public
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    p.out(format!("fingerprint {fingerprint}"));
    Ok(ExitCode::SUCCESS)
}
