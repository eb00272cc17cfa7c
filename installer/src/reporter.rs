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

/// Passes every event on to another reporter and appends it as a line, with
/// the time, to the install's log (`STATE_DIR/logs/install.log`, 0600): what
/// the terminal showed stays on the node, and a wizard following an install
/// that another process runs shows it. Waits are not logged (the phase's
/// start and end are). A log that cannot be written is given up silently:
/// the install does not depend on it.
pub struct Logged<'a> {
    inner: &'a dyn InstallReporter,
    file: std::sync::Mutex<Option<std::fs::File>>,
}

/// The install's log in `state`.
pub fn install_log(state: &crate::state_dir::StateDir) -> std::path::PathBuf {
    state.log("install")
}

impl<'a> Logged<'a> {
    /// Logging into `state`'s install log, passing on to `inner`.
    pub fn new(inner: &'a dyn InstallReporter, state: &crate::state_dir::StateDir) -> Logged<'a> {
        use std::os::unix::fs::OpenOptionsExt as _;
        let file = std::fs::create_dir_all(state.logs_dir())
            .and_then(|()| {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .mode(0o600)
                    .open(install_log(state))
            })
            .ok();
        Logged {
            inner,
            file: std::sync::Mutex::new(file),
        }
    }

    fn line(&self, text: &str) {
        use std::io::Write as _;
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        let Some(f) = file.as_mut() else {
            return;
        };
        let at = time::OffsetDateTime::now_utc();
        let stamp = format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            at.year(),
            u8::from(at.month()),
            at.day(),
            at.hour(),
            at.minute(),
            at.second()
        );
        let mut out = String::new();
        for l in text.lines() {
            out.push_str(&format!("{stamp} {l}\n"));
        }
        if f.write_all(out.as_bytes()).is_err() {
            *file = None;
        }
    }
}

impl InstallReporter for Logged<'_> {
    fn phase_started(&self, id: &str, description: &str) {
        self.inner.phase_started(id, description);
        self.line(&format!("{id} {description} ..."));
    }
    fn phase_completed(&self, id: &str, secs: f64) {
        self.inner.phase_completed(id, secs);
        self.line(&format!("{id} done in {secs:.1}s"));
    }
    fn phase_skipped(&self, id: &str, why: &str) {
        self.inner.phase_skipped(id, why);
        self.line(&format!("{id} skipped: {why}"));
    }
    fn phase_failed(&self, id: &str, error: &str) {
        self.inner.phase_failed(id, error);
        self.line(&format!("{id} FAILED: {error}"));
    }
    fn waiting(&self, what: &str, elapsed: Duration, limit: Duration) {
        self.inner.waiting(what, elapsed, limit);
    }
    fn note(&self, text: &str) {
        self.inner.note(text);
        self.line(text);
    }
}

/// The last lines of the install's log in `state` (at most `max`, read
/// from at most its last 64 KiB).
pub fn install_log_tail(state: &crate::state_dir::StateDir, max: usize) -> Vec<String> {
    use std::io::{Read as _, Seek as _};
    let Ok(mut f) = std::fs::File::open(install_log(state)) else {
        return Vec::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let from = len.saturating_sub(64 * 1024);
    if f.seek(std::io::SeekFrom::Start(from)).is_err() {
        return Vec::new();
    }
    let mut bytes = Vec::new();
    if f.take(64 * 1024).read_to_end(&mut bytes).is_err() {
        return Vec::new();
    }
    let text = String::from_utf8_lossy(&bytes);
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    // A read from the middle of the file starts inside a line.
    if from > 0 && !lines.is_empty() {
        lines.remove(0);
    }
    let skip = lines.len().saturating_sub(max);
    lines.split_off(skip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_passed_on_and_logged_0600() {
        struct Count(std::sync::Mutex<usize>);
        impl InstallReporter for Count {
            fn note(&self, _: &str) {
                *self.0.lock().unwrap() += 1;
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let state = crate::state_dir::StateDir::new(dir.path());
        let inner = Count(std::sync::Mutex::new(0));
        let logged = Logged::new(&inner, &state);
        logged.phase_started("/checks", "preflight checks");
        logged.note("two\nlines");
        logged.phase_completed("/checks", 0.25);
        logged.waiting("kubelet", Duration::from_secs(1), Duration::from_secs(9));
        assert_eq!(*inner.0.lock().unwrap(), 1);
        let tail = install_log_tail(&state, 10);
        assert_eq!(tail.len(), 4, "{tail:?}");
        assert!(
            tail[0].ends_with("Z /checks preflight checks ..."),
            "{tail:?}"
        );
        assert!(tail[2].ends_with(" lines"));
        assert!(
            tail[3].ends_with("/checks done in 0.2s") || tail[3].ends_with("/checks done in 0.3s")
        );
        assert_eq!(install_log_tail(&state, 2).len(), 2);
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(install_log(&state))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
    }
}
