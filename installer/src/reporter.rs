//! Progress of an install leaves the library only through
//! [`InstallReporter`], which the CLI implements (text on a terminal, lines
//! in a log, nothing with `-q`).

use std::time::Duration;

/// Progress of an install.
pub trait InstallReporter {
    /// A phase starts.
    fn phase_started(&self, _id: &str, _description: &str) {}
    /// A phase ended well after `secs`.
    fn phase_completed(&self, _id: &str, _secs: f64) {}
    /// A phase was already done (completed before, or its check found its
    /// effect in place after an interruption).
    fn phase_skipped(&self, _id: &str, _why: &str) {}
    /// A phase failed.
    fn phase_failed(&self, _id: &str, _error: &str) {}
    /// Still waiting for `what`, `elapsed` of at most `limit`. Called often:
    /// the reporter decides how often to show it.
    fn waiting(&self, _what: &str, _elapsed: Duration, _limit: Duration) {}
    /// Text for the user (the preflight table, notes).
    fn note(&self, _text: &str) {}
}

/// A reporter that shows nothing.
pub struct Silent;

impl InstallReporter for Silent {}
