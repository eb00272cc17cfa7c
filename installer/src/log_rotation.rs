//! Rotation of the node services' log files (`STATE_DIR/logs/NAME.log`),
//! which the agent and the systemd units open for appending: a file past
//! its size bound is copied to `NAME.log.1` (older ones shifted to `.2`,
//! ... up to the count kept, the oldest dropped) and truncated in place.
//! Writers keep their descriptor; appending, they go on at the new end. Lines
//! written between the copy and the truncation are lost, as with
//! logrotate's `copytruncate`; nothing else is. The node health checker
//! runs it every round, under the agent and under systemd alike.

use std::fs;
use std::io;
use std::path::Path;

/// How a node keeps its services' logs: each rotated when bigger than
/// `max_mb` MiB, `files` rotated files kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogLimits {
    /// Size (MiB) past which a log is rotated.
    pub max_mb: u64,
    /// Rotated files kept per log.
    pub files: u32,
}

impl Default for LogLimits {
    fn default() -> Self {
        LogLimits {
            max_mb: 100,
            files: 5,
        }
    }
}

/// Rotates every `*.log` in `dir` (not below it) bigger than the bound;
/// returns the names of the logs rotated.
pub fn rotate(dir: &Path, limits: LogLimits) -> io::Result<Vec<String>> {
    let max = limits.max_mb.saturating_mul(1 << 20);
    let keep = limits.files.max(1);
    let mut rotated = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".log") || !entry.file_type()?.is_file() {
            continue;
        }
        if entry.metadata()?.len() <= max {
            continue;
        }
        let path = entry.path();
        let numbered = |n: u32| dir.join(format!("{name}.{n}"));
        let _ = fs::remove_file(numbered(keep));
        for n in (1..keep).rev() {
            if numbered(n).exists() {
                fs::rename(numbered(n), numbered(n + 1))?;
            }
        }
        let copy = numbered(1);
        fs::copy(&path, &copy)?;
        crate::durable::set_mode(&copy, 0o600)?;
        fs::OpenOptions::new().write(true).open(&path)?.set_len(0)?;
        rotated.push(name);
    }
    Ok(rotated)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    #[test]
    fn a_big_log_is_rotated_and_its_writer_goes_on_at_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("kubelet.log");
        // As the agent and systemd open it: appending.
        let mut writer = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let limits = LogLimits {
            max_mb: 1,
            files: 2,
        };
        let small = dir.path().join("etcd.log");
        fs::write(&small, b"small\n").unwrap();
        for round in 0..4u8 {
            writer
                .write_all(&vec![b'a' + round; (1 << 20) + 1])
                .unwrap();
            let rotated = rotate(dir.path(), limits).unwrap();
            assert_eq!(rotated, ["kubelet.log"], "round {round}");
            assert_eq!(fs::metadata(&log).unwrap().len(), 0);
            writer.write_all(b"next line\n").unwrap();
            assert_eq!(fs::read(&log).unwrap(), b"next line\n");
            writer.write_all(b"x").unwrap();
            fs::OpenOptions::new()
                .write(true)
                .open(&log)
                .unwrap()
                .set_len(0)
                .unwrap();
        }
        // The newest rotation first, two kept, the small log untouched.
        let first_byte = |n: u32| fs::read(dir.path().join(format!("kubelet.log.{n}"))).unwrap()[0];
        assert_eq!(first_byte(1), b'd');
        assert_eq!(first_byte(2), b'c');
        assert!(!dir.path().join("kubelet.log.3").exists());
        assert_eq!(fs::read(&small).unwrap(), b"small\n");
        assert!(rotate(dir.path(), limits).unwrap().is_empty());
    }
}
