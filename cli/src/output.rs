//! Everything the CLI prints goes through here: results on stdout (text or
//! one JSON document), progress and errors on stderr, progress bars only on a
//! terminal.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tele_bundle::digest::Digest;
use tele_bundler::image::Origin;
use tele_bundler::reporter::{Reporter, Stage};
use tele_bundler::BuildError;
use tele_manifests::{ImageRef, ManifestError};

use crate::args::OutputFormat;

/// Exit code for bad input, a failed check, or a local failure.
pub const EXIT_INPUT: u8 = 1;
/// Exit code for a registry or network failure.
pub const EXIT_REGISTRY: u8 = 2;

/// Decides what is printed where.
pub struct Printer {
    quiet: bool,
    verbose: bool,
    format: OutputFormat,
    tty: bool,
}

impl Printer {
    /// A printer for the global flags.
    pub fn new(quiet: bool, verbose: bool, format: OutputFormat) -> Printer {
        Printer {
            quiet,
            verbose,
            format,
            tty: std::io::stderr().is_terminal(),
        }
    }

    /// True when the result goes out as JSON.
    pub fn is_json(&self) -> bool {
        self.format == OutputFormat::Json
    }

    /// A line of the text result (stdout).
    pub fn out(&self, line: impl AsRef<str>) {
        if !self.is_json() && !self.quiet {
            println!("{}", line.as_ref());
        }
    }

    /// The JSON result (stdout).
    pub fn json(&self, value: &impl serde::Serialize) {
        if self.is_json() {
            println!("{}", serde_json::to_string_pretty(value).expect("json"));
        }
    }

    /// A note for the user (stderr), hidden by -q.
    pub fn note(&self, line: impl AsRef<str>) {
        if !self.quiet {
            eprintln!("{}", line.as_ref());
        }
    }

    /// A detail shown with -v.
    pub fn detail(&self, line: impl AsRef<str>) {
        if self.verbose {
            eprintln!("{}", line.as_ref());
        }
    }

    /// Prints an error with its hint and returns the exit code it means.
    pub fn error(&self, e: &anyhow::Error) -> ExitCode {
        let (code, lines, hint) = describe(e);
        for l in &lines {
            eprintln!("error: {l}");
        }
        if let Some(h) = &hint {
            eprintln!("  hint: {h}");
        }
        if self.is_json() {
            self.json(
                &serde_json::json!({"ok": false, "exitCode": code, "errors": lines, "hint": hint}),
            );
        }
        ExitCode::from(code)
    }

    /// A reporter for a build: bars on a terminal, plain lines otherwise.
    pub fn reporter(&self) -> BuildReporter {
        let mode = if self.quiet {
            Mode::Silent
        } else if self.tty {
            Mode::Bars(MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
        } else {
            Mode::Lines
        };
        BuildReporter {
            mode,
            verbose: self.verbose,
            bars: Mutex::new(Vec::new()),
        }
    }
}

/// Exit code, message lines and hint for an error.
fn describe(e: &anyhow::Error) -> (u8, Vec<String>, Option<String>) {
    let manifest =
        e.downcast_ref::<ManifestError>()
            .or_else(|| match e.downcast_ref::<BuildError>() {
                Some(BuildError::Manifest(m)) => Some(m),
                _ => None,
            });
    if let Some(ManifestError::Invalid(diags)) = manifest {
        // Each diagnostic prints as FILE:LINE:COLUMN: message, with its own hint.
        return (
            EXIT_INPUT,
            diags.iter().map(|d| d.to_string()).collect(),
            None,
        );
    }
    if let Some(b) = e.downcast_ref::<BuildError>() {
        let code = if b.is_registry() {
            EXIT_REGISTRY
        } else {
            EXIT_INPUT
        };
        return (code, vec![b.to_string()], b.hint());
    }
    if let Some(b) = e.downcast_ref::<tele_bundle::Error>() {
        return (EXIT_INPUT, vec![b.to_string()], b.hint().map(String::from));
    }
    (EXIT_INPUT, vec![format!("{e:#}")], None)
}

enum Mode {
    Silent,
    Lines,
    Bars(MultiProgress),
}

/// Build progress for the terminal or a log.
pub struct BuildReporter {
    mode: Mode,
    verbose: bool,
    bars: Mutex<Vec<(Stage, ProgressBar, Instant)>>,
}

fn stage_name(s: Stage) -> &'static str {
    match s {
        Stage::Resolve => "resolve",
        Stage::Fetch => "fetch",
        Stage::Write => "write",
    }
}

/// Bytes in MiB/GiB for people.
pub fn human_bytes(n: u64) -> String {
    indicatif::HumanBytes(n).to_string()
}

impl Reporter for BuildReporter {
    fn start(&self, stage: Stage, total: u64) {
        let what = match stage {
            Stage::Resolve => format!("resolving {total} images"),
            Stage::Fetch => format!("fetching {}", human_bytes(total)),
            Stage::Write => format!("writing the bundle ({})", human_bytes(total)),
        };
        let bar = match &self.mode {
            Mode::Silent => ProgressBar::hidden(),
            Mode::Lines => {
                eprintln!("{what}");
                ProgressBar::hidden()
            }
            Mode::Bars(multi) => {
                let template = if stage == Stage::Resolve {
                    "{prefix:>8} [{bar:30}] {pos}/{len} images {elapsed}"
                } else {
                    "{prefix:>8} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}"
                };
                let bar = multi.add(ProgressBar::new(total));
                bar.set_style(
                    ProgressStyle::with_template(template)
                        .expect("template")
                        .progress_chars("=> "),
                );
                bar.set_prefix(stage_name(stage));
                bar.enable_steady_tick(Duration::from_millis(200));
                bar
            }
        };
        bar.set_length(total);
        self.bars
            .lock()
            .expect("lock")
            .push((stage, bar, Instant::now()));
    }

    fn advance(&self, stage: Stage, n: u64) {
        if let Some((_, bar, _)) = self
            .bars
            .lock()
            .expect("lock")
            .iter()
            .find(|(s, _, _)| *s == stage)
        {
            bar.inc(n);
        }
    }

    fn finish(&self, stage: Stage) {
        let mut bars = self.bars.lock().expect("lock");
        if let Some(i) = bars.iter().position(|(s, _, _)| *s == stage) {
            let (_, bar, started) = bars.remove(i);
            bar.finish();
            if matches!(self.mode, Mode::Lines) {
                eprintln!(
                    "{} done in {:.1}s",
                    stage_name(stage),
                    started.elapsed().as_secs_f64()
                );
            }
        }
    }

    fn resolved(&self, image: &ImageRef, digest: &Digest, origin: &Origin) {
        if self.verbose {
            self.line(&format!("resolved {image} -> {digest} ({origin})"));
        }
    }

    fn note(&self, message: &str) {
        if !matches!(self.mode, Mode::Silent) {
            self.line(message);
        }
    }
}

impl BuildReporter {
    fn line(&self, text: &str) {
        match &self.mode {
            Mode::Bars(m) => {
                let _ = m.println(text);
            }
            _ => eprintln!("{text}"),
        }
    }
}
