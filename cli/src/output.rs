//! Everything the CLI prints goes through here: results on stdout (text or
//! one JSON document), progress and errors on stderr, progress bars only on a
//! terminal.
//!
//! Colour: commands may put styles in their text ([`paint`] with a
//! [`style`], or [`colour_verdicts`]) without asking where it goes. Each
//! stream keeps the styles only when it is a terminal and `NO_COLOR` is unset
//! or empty (<https://no-color.org>), and strips them otherwise (anstream).
//! `error:`, `warning:` and `hint:` labels at the start of a line on stderr
//! are coloured here.
//!
//! A closed pipe: when whatever reads stdout goes away (`tele images | head`),
//! tele exits at once, quietly and with status 0, as ripgrep does: the
//! reader took what it wanted, and an error message or a panic would be
//! noise. When stderr's reader goes away, tele stops writing there and
//! carries on: stderr carries the progress of work that changes the machine
//! (install, uninstall), and stopping that half-way would be worse than
//! losing the log; the exit status still tells how it ended.

use std::ffi::OsStr;
use std::fmt::Display;
use std::io::{self, BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anstream::{AutoStream, ColorChoice};
pub use anstyle::Style;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tele_bundle::digest::Digest;
use tele_bundler::image::Origin;
use tele_bundler::reporter::{Reporter, Stage};
use tele_bundler::BuildError;
use tele_installer::error::InstallError;
use tele_manifests::{ImageRef, ManifestError};

use crate::args::OutputFormat;

/// Exit code for bad input, a failed check, or a local failure.
pub const EXIT_INPUT: u8 = 1;
/// Exit code for a registry or network failure.
pub const EXIT_REGISTRY: u8 = 2;

/// The styles tele prints with, for [`paint`].
pub mod style {
    use anstyle::{AnsiColor, Color, Style};

    const fn fg(c: AnsiColor) -> Style {
        Style::new().fg_color(Some(Color::Ansi(c)))
    }

    /// `error:` labels.
    pub const ERROR: Style = fg(AnsiColor::Red).bold();
    /// `warning:` labels and `warn` results.
    pub const WARN: Style = fg(AnsiColor::Yellow).bold();
    /// `hint:` labels.
    pub const HINT: Style = fg(AnsiColor::Cyan).bold();
    /// What is well: `ok`, `pass`, `fixed`, a running service.
    pub const GOOD: Style = fg(AnsiColor::Green);
    /// What failed: `FAIL`, a service that is not running.
    pub const BAD: Style = fg(AnsiColor::Red).bold();
}

/// `text` in `style`, for a line given to [`Printer::out`], `note` or
/// `detail`: the Printer keeps the colour on a terminal and strips it
/// elsewhere. Not for JSON, files or anything else that bypasses the Printer.
pub fn paint(style: Style, text: impl Display) -> String {
    format!("{style}{text}{style:#}")
}

/// The style of a word that is a check's result, if it is one.
fn verdict_style(word: &str) -> Option<Style> {
    match word {
        "FAIL" | "FAILED" => Some(style::BAD),
        "WARN" | "warn" => Some(style::WARN),
        "ok" | "pass" | "fixed" => Some(style::GOOD),
        _ => None,
    }
}

/// `text` (one line or many) with every whole word that is a check's result
/// painted: `FAIL` and `FAILED` red, `WARN` and `warn` yellow, `ok`, `pass` and
/// `fixed` green. For tables rendered without colour elsewhere, such as the
/// installer's preflight table: `p.note(colour_verdicts(&table))`.
pub fn colour_verdicts(text: &str) -> String {
    let is_word = |c: char| c.is_alphanumeric() || c == '_' || c == '-';
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(first) = rest.chars().next() {
        let end = rest
            .find(|c| is_word(c) != is_word(first))
            .unwrap_or(rest.len());
        let (run, tail) = rest.split_at(end);
        match verdict_style(run) {
            Some(s) => out.push_str(&paint(s, run)),
            None => out.push_str(run),
        }
        rest = tail;
    }
    out
}

/// `text` with the `error:`, `warning:` or `hint:` label that starts a line
/// (after its indentation) painted.
fn paint_labels(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let body = line.trim_start();
        let indent = &line[..line.len() - body.len()];
        let label = [
            ("error:", style::ERROR),
            ("warning:", style::WARN),
            ("hint:", style::HINT),
        ]
        .into_iter()
        .find(|(l, _)| body.starts_with(l));
        match label {
            Some((l, s)) => {
                out.push_str(indent);
                out.push_str(&paint(s, l));
                out.push_str(&body[l.len()..]);
            }
            None => out.push_str(line),
        }
    }
    out
}

/// Whether a stream gets colour: only a terminal, and not when `NO_COLOR` is
/// set to anything but the empty string (<https://no-color.org>) nor when
/// `TERM` is `dumb`.
pub fn wants_colour(is_terminal: bool, no_color: Option<&OsStr>, term: Option<&OsStr>) -> bool {
    is_terminal && no_color.is_none_or(OsStr::is_empty) && term != Some(OsStr::new("dumb"))
}

/// [`wants_colour`] for a stream, from this process's environment.
fn colour_choice(is_terminal: bool) -> ColorChoice {
    let no_color = std::env::var_os("NO_COLOR");
    let term = std::env::var_os("TERM");
    if wants_colour(is_terminal, no_color.as_deref(), term.as_deref()) {
        ColorChoice::Always
    } else {
        ColorChoice::Never
    }
}

/// Writes `text` to stdout. A closed pipe ends the process quietly with
/// status 0 (see the module's comment); another failure is reported on
/// stderr and ends it with [`EXIT_INPUT`], since the result was lost.
fn write_stdout(colour: ColorChoice, text: &str) {
    let mut out = AutoStream::new(io::stdout().lock(), colour);
    let written = out.write_all(text.as_bytes()).and_then(|()| out.flush());
    drop(out);
    if let Err(e) = written {
        if e.kind() == io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        write_stderr(
            ColorChoice::Never,
            &format!("error: cannot write to standard output: {e}\n"),
        );
        std::process::exit(i32::from(EXIT_INPUT));
    }
}

/// Set when stderr's reader has gone: nothing more is written there.
static STDERR_CLOSED: AtomicBool = AtomicBool::new(false);

/// Writes `text` to stderr; once that fails (a closed pipe), stderr is left
/// alone and the work goes on (see the module's comment).
fn write_stderr(colour: ColorChoice, text: &str) {
    if STDERR_CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut err = AutoStream::new(io::stderr().lock(), colour);
    if err
        .write_all(text.as_bytes())
        .and_then(|()| err.flush())
        .is_err()
    {
        STDERR_CLOSED.store(true, Ordering::Relaxed);
    }
}

/// True for an answer that means yes: `y` or `yes`, in any case.
fn is_yes(answer: &str) -> bool {
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

/// Decides what is printed where.
pub struct Printer {
    quiet: bool,
    verbose: bool,
    format: OutputFormat,
    /// stderr is a terminal: progress bars.
    tty: bool,
    out_colour: ColorChoice,
    err_colour: ColorChoice,
}

impl Printer {
    /// A printer for the global flags.
    pub fn new(quiet: bool, verbose: bool, format: OutputFormat) -> Printer {
        let tty = io::stderr().is_terminal();
        Printer {
            quiet,
            verbose,
            format,
            tty,
            out_colour: colour_choice(io::stdout().is_terminal()),
            err_colour: colour_choice(tty),
        }
    }

    /// True when the result goes out as JSON.
    pub fn is_json(&self) -> bool {
        self.format == OutputFormat::Json
    }

    /// A line of the text result (stdout).
    pub fn out(&self, line: impl AsRef<str>) {
        if !self.is_json() && !self.quiet {
            write_stdout(self.out_colour, &format!("{}\n", line.as_ref()));
        }
    }

    /// The JSON result (stdout), written as it is.
    pub fn json(&self, value: &impl serde::Serialize) {
        if self.is_json() {
            let text = serde_json::to_string_pretty(value).expect("json");
            write_stdout(ColorChoice::AlwaysAnsi, &format!("{text}\n"));
        }
    }

    /// A note for the user (stderr), hidden by -q.
    pub fn note(&self, line: impl AsRef<str>) {
        if !self.quiet {
            self.err_line(line.as_ref());
        }
    }

    /// A detail shown with -v.
    pub fn detail(&self, line: impl AsRef<str>) {
        if self.verbose {
            self.err_line(line.as_ref());
        }
    }

    fn err_line(&self, text: &str) {
        write_stderr(self.err_colour, &format!("{}\n", paint_labels(text)));
    }

    /// Asks `question` on stderr (even with -q) and reads the answer from
    /// stdin: true for `y` or `yes`, false for anything else or no answer.
    pub fn confirm(&self, question: &str) -> io::Result<bool> {
        write_stderr(self.err_colour, &format!("{question} [y/N] "));
        let mut answer = String::new();
        if io::stdin().lock().read_line(&mut answer)? == 0 {
            // End of input: what follows starts on a line of its own.
            write_stderr(self.err_colour, "\n");
        }
        Ok(is_yes(&answer))
    }

    /// Prints an error with its hint and returns the exit code it means.
    pub fn error(&self, e: &anyhow::Error) -> ExitCode {
        self.error_with(e, serde_json::Value::Null)
    }

    /// [`Printer::error`], with `extra` fields in the JSON document.
    pub fn error_with(&self, e: &anyhow::Error, extra: serde_json::Value) -> ExitCode {
        let (code, lines, hint) = describe(e);
        for l in &lines {
            self.err_line(&format!("error: {l}"));
        }
        if let Some(h) = &hint {
            self.err_line(&format!("  hint: {h}"));
        }
        if self.is_json() {
            let mut doc =
                serde_json::json!({"ok": false, "exitCode": code, "errors": lines, "hint": hint});
            if let (Some(d), serde_json::Value::Object(extra)) = (doc.as_object_mut(), extra) {
                d.extend(extra);
            }
            self.json(&doc);
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
            colour: self.err_colour,
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
    if let Some(ie) = e.downcast_ref::<InstallError>() {
        let line = match ie {
            InstallError::Preflight { results } => {
                let failed: Vec<&str> = results
                    .iter()
                    .filter(|r| r.status == tele_installer::preflight::Status::Fail)
                    .map(|r| r.name.as_str())
                    .collect();
                format!("{ie}: {}", failed.join(", "))
            }
            _ => ie.to_string(),
        };
        return (ie.exit_code(), vec![line], ie.hint());
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
    colour: ColorChoice,
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
/// Text from a file tele did not write (a bundle's bundle.json, a tar
/// entry's name) as it may be shown on a terminal: control characters,
/// escape sequences and line breaks among them, are written escaped.
pub fn untrusted(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

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
                write_stderr(self.colour, &format!("{what}\n"));
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
                let secs = started.elapsed().as_secs_f64();
                write_stderr(
                    self.colour,
                    &format!("{} done in {secs:.1}s\n", stage_name(stage)),
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
                // indicatif writes as it is given: colour only where wanted.
                let text = match self.colour {
                    ColorChoice::Never => text.to_string(),
                    _ => paint_labels(text),
                };
                let _ = m.println(text);
            }
            _ => write_stderr(self.colour, &format!("{}\n", paint_labels(text))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a stream that strips colour writes.
    fn stripped(text: &str) -> String {
        let mut out = AutoStream::new(Vec::new(), ColorChoice::Never);
        out.write_all(text.as_bytes()).unwrap();
        String::from_utf8(out.into_inner()).unwrap()
    }

    /// What a stream that keeps colour writes.
    fn kept(text: &str) -> String {
        let mut out = AutoStream::new(Vec::new(), ColorChoice::Always);
        out.write_all(text.as_bytes()).unwrap();
        String::from_utf8(out.into_inner()).unwrap()
    }

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        let os = |s: &'static str| Some(OsStr::new(s));
        let xterm = os("xterm-256color");
        // (terminal, NO_COLOR, colour?)
        let cases = [
            (true, None, true),
            (true, os(""), true),
            (true, os("1"), false),
            (true, os("0"), false),
            (true, os("false"), false),
            (false, None, false),
            (false, os(""), false),
            (false, os("1"), false),
        ];
        for (tty, no_color, want) in cases {
            assert_eq!(
                wants_colour(tty, no_color, xterm),
                want,
                "terminal={tty} NO_COLOR={no_color:?}"
            );
        }
        assert!(!wants_colour(true, None, os("dumb")));
        assert!(wants_colour(true, None, None));
    }

    #[test]
    fn painted_text_is_plain_where_colour_is_not_wanted() {
        let line = format!("  {} {}", paint(style::BAD, "FAIL"), "disk full");
        assert!(line.contains('\x1b'));
        assert_eq!(stripped(&line), "  FAIL disk full");
        assert_eq!(kept(&line), line);
    }

    #[test]
    fn verdicts_are_painted_as_whole_words_only() {
        let table = "CHECK   RESULT  DETAIL\nos      pass    Debian\nports   FAIL    6443 in use: passwd okay\nram     warn    1 GiB\ndisk    ok\n";
        let painted = colour_verdicts(table);
        assert_eq!(stripped(&painted), table, "only styles are added");
        assert!(painted.contains(&paint(style::GOOD, "pass")));
        assert!(painted.contains(&paint(style::BAD, "FAIL")));
        assert!(painted.contains(&paint(style::WARN, "warn")));
        assert!(painted.contains(&paint(style::GOOD, "ok")));
        assert!(painted.contains(" passwd okay"), "{painted:?}");
        assert_eq!(
            colour_verdicts("fail-over ok-ish FAILURE"),
            "fail-over ok-ish FAILURE"
        );
        assert_eq!(colour_verdicts(""), "");
    }

    #[test]
    fn labels_at_the_start_of_a_line_are_painted() {
        let text =
            "error: no plan in /x\nhint: give --state-dir\n  hint: indented\nnot an error: here";
        let painted = paint_labels(text);
        assert_eq!(stripped(&painted), text);
        assert!(painted.starts_with(&paint(style::ERROR, "error:")));
        assert!(painted.contains(&format!("\n{} give", paint(style::HINT, "hint:"))));
        assert!(painted.contains(&format!("\n  {} indented", paint(style::HINT, "hint:"))));
        assert!(painted.ends_with("not an error: here"));
        assert!(paint_labels("warning: w").starts_with(&paint(style::WARN, "warning:")));
    }

    #[test]
    fn only_y_or_yes_confirms() {
        for yes in ["y\n", "Y\n", "yes\n", " YES \n"] {
            assert!(is_yes(yes), "{yes:?}");
        }
        for no in ["", "\n", "n\n", "no\n", "yep\n", "y es\n"] {
            assert!(!is_yes(no), "{no:?}");
        }
    }
}
