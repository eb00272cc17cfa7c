//! Reading processes, mounts and log tails: one reader for the agent, the
//! service managers, preflight, status and uninstall. [`Procfs`] reads a
//! procfs at any root (tests use a fake tree); the free functions read the
//! machine's `/proc`.

use std::fs;
use std::path::{Path, PathBuf};

/// A procfs tree.
#[derive(Clone, Debug)]
pub struct Procfs {
    root: PathBuf,
}

impl Procfs {
    /// The machine's `/proc`.
    pub fn host() -> Procfs {
        Procfs::at("/proc")
    }

    /// A procfs mounted (or faked) at `root`.
    pub fn at(root: impl Into<PathBuf>) -> Procfs {
        Procfs { root: root.into() }
    }

    fn pid_dir(&self, pid: i32) -> PathBuf {
        self.root.join(pid.to_string())
    }

    /// Every pid, in ascending order.
    pub fn pids(&self) -> Vec<i32> {
        let mut pids: Vec<i32> = fs::read_dir(&self.root)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .collect();
        pids.sort_unstable();
        pids
    }

    /// A process's command line, split at NULs.
    pub fn cmdline(&self, pid: i32) -> Option<Vec<String>> {
        let raw = fs::read(self.pid_dir(pid).join("cmdline")).ok()?;
        Some(
            raw.split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect(),
        )
    }

    /// A process's command name (`comm`), `?` when unreadable.
    pub fn comm(&self, pid: i32) -> String {
        fs::read_to_string(self.pid_dir(pid).join("comm"))
            .map(|c| c.trim().to_string())
            .unwrap_or_else(|_| "?".to_string())
    }

    /// The targets of a process's open file descriptors.
    pub fn fd_targets(&self, pid: i32) -> Vec<PathBuf> {
        fs::read_dir(self.pid_dir(pid).join("fd"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|fd| fs::read_link(fd.path()).ok())
            .collect()
    }

    /// A process's state letter and parent pid, from `stat`.
    fn stat(&self, pid: i32) -> Option<(char, i32)> {
        let text = fs::read_to_string(self.pid_dir(pid).join("stat")).ok()?;
        // The command name may hold spaces and parentheses: fields follow the last `)`.
        let mut rest = text.rsplit(')').next()?.split_whitespace();
        let state = rest.next()?.chars().next()?;
        let ppid = rest.next()?.parse().ok()?;
        Some((state, ppid))
    }

    /// True when the process exists and is not a zombie.
    pub fn is_alive(&self, pid: i32) -> bool {
        self.stat(pid).is_some_and(|(s, _)| s != 'Z' && s != 'X')
    }

    /// The network namespace a process is in (`net:[INODE]`), or this
    /// procfs's own (`self`) when `pid` is None.
    pub fn net_ns(&self, pid: Option<i32>) -> Option<PathBuf> {
        let dir = match pid {
            Some(p) => self.pid_dir(p),
            None => self.root.join("self"),
        };
        fs::read_link(dir.join("ns").join("net")).ok()
    }

    /// True when the process is a zombie (exited, not yet reaped).
    pub fn is_zombie(&self, pid: i32) -> bool {
        self.stat(pid).is_some_and(|(s, _)| s == 'Z')
    }

    /// The parent of a process.
    pub fn parent(&self, pid: i32) -> Option<i32> {
        self.stat(pid).map(|(_, p)| p)
    }
}

/// Every pid in `/proc`.
pub fn pids() -> Vec<i32> {
    Procfs::host().pids()
}

/// A process's command line, split at NULs.
pub fn cmdline(pid: i32) -> Option<Vec<String>> {
    Procfs::host().cmdline(pid)
}

/// The binary a process runs (`/proc/PID/exe`).
pub fn exe(pid: i32) -> Option<PathBuf> {
    fs::read_link(format!("/proc/{pid}/exe")).ok()
}

/// True when the process exists and is not a zombie.
pub fn is_alive(pid: i32) -> bool {
    Procfs::host().is_alive(pid)
}

/// The parent of a process.
pub fn parent(pid: i32) -> Option<i32> {
    Procfs::host().parent(pid)
}

/// The direct children of `parent`.
pub fn children_of(parent_pid: i32) -> Vec<i32> {
    pids()
        .into_iter()
        .filter(|p| parent(*p) == Some(parent_pid))
        .collect()
}

/// Pids (other than this process) whose command line has `arg` as one argument.
pub fn processes_with_arg(arg: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    pids()
        .into_iter()
        .filter(|p| *p != me)
        .filter(|p| cmdline(*p).is_some_and(|c| c.iter().any(|a| a == arg)))
        .collect()
}

/// True when `pid` is alive and runs `binary` (same path, or same file name
/// when the binary was replaced on disk and `exe` reads `... (deleted)`).
pub fn runs(pid: i32, binary: &Path) -> bool {
    if !is_alive(pid) {
        return false;
    }
    exe(pid).is_some_and(|e| {
        e == binary
            || e.file_name() == binary.file_name()
            || e.to_string_lossy()
                .strip_suffix(" (deleted)")
                .is_some_and(|s| Path::new(s) == binary)
    })
}

/// Every mount point of this mount namespace.
pub fn mount_points() -> Vec<PathBuf> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(p.replace("\\040", " ")))
        .collect()
}

/// The last `n` lines of a (log) file, reading at most its last 64 KiB.
pub fn tail(path: &Path, n: usize) -> Vec<String> {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = fs::File::open(path) else {
        return Vec::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(64 << 10);
    let _ = f.seek(SeekFrom::Start(start));
    let mut buf = Vec::new();
    let _ = f.take(64 << 10).read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let lines: Vec<&str> = text.lines().collect();
    let skip = lines.len().saturating_sub(n);
    lines[skip..]
        .iter()
        .map(|l| l.chars().take(400).collect())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_runs_its_binary() {
        let me = std::process::id() as i32;
        assert!(is_alive(me));
        assert!(runs(me, &std::env::current_exe().unwrap()));
        assert!(parent(me).is_some());
        assert!(!cmdline(me).unwrap().is_empty());
        assert!(mount_points().contains(&PathBuf::from("/")));
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("log");
        fs::write(&f, "a\nb\nc\n").unwrap();
        assert_eq!(tail(&f, 2), ["b", "c"]);
        assert!(tail(&dir.path().join("none"), 2).is_empty());
    }
}
