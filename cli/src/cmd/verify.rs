//! `tele verify`

use std::process::ExitCode;

use crate::args::BundleArg;
use crate::output::{Printer, EXIT_INPUT};

pub fn run(a: BundleArg, p: &Printer) -> anyhow::Result<ExitCode> {
    let v = tele_bundle::verify::verify(&a.bundle)?;
    p.json(&serde_json::json!({"ok": v.problems.is_empty(), "verification": v}));
    if v.problems.is_empty() {
        p.out(format!(
            "ok: {} files and {} blobs match bundle.json",
            v.files_checked, v.blobs_checked
        ));
        return Ok(ExitCode::SUCCESS);
    }
    for problem in &v.problems {
        p.note(format!("error: {problem}"));
    }
    p.note(format!(
        "{} problem(s) in {}\n  hint: the bundle was altered or damaged in transit; copy it again from the vendor",
        v.problems.len(),
        a.bundle.display()
    ));
    Ok(ExitCode::from(EXIT_INPUT))
}
