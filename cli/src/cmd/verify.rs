//! `tele verify`

use std::process::ExitCode;

use tele_bundle::signature::{read_key_file, PublicKey};
use tele_bundle::verify::SignatureStatus;

use crate::args::VerifyArgs;
use crate::output::{Printer, EXIT_INPUT};

/// The public key of `--key`, read and parsed, or an error that names it.
pub fn load_public_key(path: &std::path::Path) -> anyhow::Result<PublicKey> {
    read_key_file(path)
        .and_then(|pem| PublicKey::from_pem(&pem))
        .map_err(|e| {
            tele_bundler::error::BuildError::input(
                format!("--key {}: {e}", path.display()),
                "give the vendor's public key (the NAME.pub that `tele keygen` wrote)",
            )
            .into()
        })
}

pub fn run(a: VerifyArgs, p: &Printer) -> anyhow::Result<ExitCode> {
    let key = a.key.as_deref().map(load_public_key).transpose()?;
    let v = tele_bundle::verify::verify_signed(&a.bundle, key.as_ref())?;
    p.json(&serde_json::json!({"ok": v.problems.is_empty(), "verification": v}));
    if v.problems.is_empty() {
        p.out(format!(
            "ok: {} files and {} blobs match bundle.json",
            v.files_checked, v.blobs_checked
        ));
        match &v.signature {
            SignatureStatus::Valid { key } => p.out(format!("ok: signed by {key}")),
            SignatureStatus::NotChecked => p.out(
                "signed, not checked: give the vendor's public key with --key PUB to check who signed it",
            ),
            _ => p.out("not signed: nothing shows who made this bundle"),
        }
        return Ok(ExitCode::SUCCESS);
    }
    for problem in &v.problems {
        p.note(format!("error: {}", crate::output::untrusted(problem)));
    }
    let hint = if matches!(v.signature, SignatureStatus::Invalid { .. }) {
        "the bundle is not the one the vendor signed (or the key is not the vendor's): get both again, through a channel you trust"
    } else {
        "the bundle was altered or damaged in transit; copy it again from the vendor"
    };
    p.note(format!(
        "{} problem(s) in {}\n  hint: {hint}",
        v.problems.len(),
        a.bundle.display()
    ));
    Ok(ExitCode::from(EXIT_INPUT))
}
