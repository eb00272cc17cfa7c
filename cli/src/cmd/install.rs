//! `install`, the bundle's own copy of tele. Installing a cluster is not part
//! of this version: it checks the bundle it sits in and says so.

use std::process::ExitCode;

use crate::args::OutputFormat;
use crate::output::{Printer, EXIT_INPUT};

/// Installs the bundle this binary sits in.
#[derive(Debug, clap::Parser)]
#[command(name = "install", version)]
struct InstallCli {}

pub fn run() -> ExitCode {
    use clap::Parser;
    let _ = InstallCli::parse();
    let p = Printer::new(false, false, OutputFormat::Text);
    let dir = match std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.to_path_buf()))
    {
        Some(d) => d,
        None => {
            return p.error(&anyhow::anyhow!(
                "cannot tell which directory this installer is in"
            ))
        }
    };
    match tele_bundler::bundle_reader::verify(&dir) {
        Ok(v) if v.problems.is_empty() => {
            p.note(format!(
                "bundle verified: {} files and {} blobs match bundle.json",
                v.files_checked, v.blobs_checked
            ));
        }
        Ok(v) => {
            for problem in &v.problems {
                p.note(format!("error: {problem}"));
            }
            return ExitCode::from(EXIT_INPUT);
        }
        Err(e) => return p.error(&e.into()),
    }
    p.note("error: this tele version can build and verify bundles but does not install clusters yet\n  hint: use a bundle built by a tele release with the installer");
    ExitCode::from(EXIT_INPUT)
}
