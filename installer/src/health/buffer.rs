//! The on-disk buffer of line-protocol lines that InfluxDB has not accepted
//! yet.
//!
//! Segments are files named `<first round's time in ns, 20 digits>-<pid>.lp`
//! so that names sort oldest first. A process only ever appends to a segment
//! it created: a line torn by a crash is then always the last one of its
//! segment, and is dropped when read (it has no line break). Every append is
//! fsync'd. A segment is deleted only after InfluxDB accepted all of it;
//! sending one again after a partial send writes no duplicates, because
//! InfluxDB keeps one point per series and timestamp.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A segment is closed once it is this big.
const SEGMENT_BYTES: u64 = 1 << 20;

/// One segment on disk.
#[derive(Debug, Clone)]
pub(crate) struct Segment {
    pub path: PathBuf,
    pub size: u64,
}

/// The buffer directory and the segment this process appends to.
#[derive(Debug)]
pub(crate) struct DiskBuffer {
    dir: PathBuf,
    max_bytes: u64,
    current: Option<Segment>,
}

impl DiskBuffer {
    pub fn new(dir: PathBuf, max_bytes: u64) -> DiskBuffer {
        DiskBuffer {
            dir,
            max_bytes,
            current: None,
        }
    }

    /// The segments, oldest first (leftover temp files are ignored).
    pub fn segments(&self) -> Vec<Segment> {
        let mut out: Vec<Segment> = fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".lp"))
            .map(|e| Segment {
                size: e.metadata().map(|m| m.len()).unwrap_or(0),
                path: e.path(),
            })
            .collect();
        out.sort_by(|a, b| a.path.cmp(&b.path));
        out
    }

    pub fn is_empty(&self) -> bool {
        self.segments().is_empty()
    }

    /// Appends `lines` (durably), then drops the oldest segments while the
    /// buffer is over its bound. Returns how many lines were dropped.
    pub fn append(&mut self, time_ns: i128, lines: &[String]) -> std::io::Result<usize> {
        fs::create_dir_all(&self.dir)?;
        let fresh = match &self.current {
            Some(s) => s.size >= SEGMENT_BYTES || !s.path.exists(),
            None => true,
        };
        if fresh {
            let name = format!("{:020}-{}.lp", time_ns.max(0), std::process::id());
            self.current = Some(Segment {
                path: self.dir.join(name),
                size: 0,
            });
        }
        let seg = self.current.as_mut().expect("current segment");
        let mut bytes = String::new();
        for l in lines {
            bytes.push_str(l);
            bytes.push('\n');
        }
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&seg.path)?;
        f.write_all(bytes.as_bytes())?;
        f.sync_data()?;
        seg.size += bytes.len() as u64;
        if fresh {
            crate::durable::sync_dir(&self.dir);
        }
        Ok(self.enforce_bound())
    }

    fn enforce_bound(&mut self) -> usize {
        let mut segs = self.segments();
        let mut total: u64 = segs.iter().map(|s| s.size).sum();
        let mut dropped = 0;
        while total > self.max_bytes && segs.len() > 1 {
            let oldest = segs.remove(0);
            dropped += read_lines(&oldest.path).len();
            if fs::remove_file(&oldest.path).is_ok() {
                total -= oldest.size;
            }
        }
        if dropped > 0 {
            crate::durable::sync_dir(&self.dir);
        }
        dropped
    }

    /// Removes a segment InfluxDB accepted.
    pub fn remove(&mut self, seg: &Segment) -> std::io::Result<()> {
        if self.current.as_ref().is_some_and(|c| c.path == seg.path) {
            self.current = None;
        }
        fs::remove_file(&seg.path)?;
        crate::durable::sync_dir(&self.dir);
        Ok(())
    }
}

/// The complete lines of a segment: a torn last line is left out.
pub(crate) fn read_lines(path: &Path) -> Vec<String> {
    let Ok(text) = fs::read_to_string(path) else {
        return Vec::new();
    };
    let complete = match text.rfind('\n') {
        Some(i) => &text[..i],
        None => "",
    };
    complete
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(String::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_and_bounds() {
        let tmp = tempfile::tempdir().unwrap();
        let mut b = DiskBuffer::new(tmp.path().join("buf"), 100);
        assert!(b.is_empty());
        let lines: Vec<String> = (0..4).map(|i| format!("m v={i}i {i}")).collect();
        assert_eq!(b.append(1, &lines).unwrap(), 0);
        assert_eq!(read_lines(&b.segments()[0].path), lines);
        // A new process (no current segment) starts a new segment.
        let mut b2 = DiskBuffer::new(tmp.path().join("buf"), 100);
        b2.append(2, &lines).unwrap();
        assert_eq!(b2.segments().len(), 2);
        // Over the bound: the oldest segment goes.
        let mut b3 = DiskBuffer::new(tmp.path().join("buf"), 100);
        let big: Vec<String> = (0..10).map(|i| format!("m v={i}i {i}")).collect();
        assert_eq!(b3.append(3, &big).unwrap(), 8);
        let segs = b3.segments();
        assert_eq!(segs.len(), 1);
        b3.remove(&segs[0]).unwrap();
        assert!(b3.is_empty());
    }

    #[test]
    fn torn_last_line_is_dropped() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("x.lp");
        fs::write(&p, "a v=1i 1\nb v=2i 2\nc v=").unwrap();
        assert_eq!(read_lines(&p), vec!["a v=1i 1", "b v=2i 2"]);
    }
}
