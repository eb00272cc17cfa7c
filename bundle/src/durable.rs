//! Crash-safe writes: the files tele writes whole (bundle metadata, image
//! layouts, the install's state) go through here, so that a kill or a power
//! loss at any moment leaves either the old content or the new, never a
//! half-written file.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Writes `bytes` to `path` with `mode`: temporary file in the same
/// directory, fsync, rename, fsync of the directory.
pub fn write_durably(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
    tmp.as_file()
        .set_permissions(fs::Permissions::from_mode(mode))?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    sync_dir(dir);
    Ok(())
}

/// Writes `bytes` only when the file's content or mode differs; true when it wrote.
pub fn write_if_changed(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<bool> {
    let same = fs::read(path).is_ok_and(|old| old == bytes)
        && fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o7777 == mode);
    if same {
        return Ok(false);
    }
    write_durably(path, bytes, mode)?;
    Ok(true)
}

/// Copies `from` to `to` crash-safely with `mode` (temporary file, fsync, rename).
pub fn copy_durably(from: &Path, to: &Path, mode: u32) -> std::io::Result<()> {
    let dir = to.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
    let mut src = fs::File::open(from)?;
    let mut dst = tmp.as_file();
    std::io::copy(&mut src, &mut dst)?;
    dst.set_permissions(fs::Permissions::from_mode(mode))?;
    dst.sync_all()?;
    tmp.persist(to).map_err(|e| e.error)?;
    sync_dir(dir);
    Ok(())
}

/// Copies `from` to `to` like [`copy_durably`], only if the content copied
/// has sha256 `want` (hex): the check is of the bytes written, so a source
/// changed after an earlier check cannot slip through. On a mismatch `to` is
/// left untouched and the error says both digests.
pub fn copy_checked(from: &Path, to: &Path, mode: u32, want: &str) -> std::io::Result<()> {
    let dir = to.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
    let mut src = std::io::BufReader::with_capacity(1 << 20, fs::File::open(from)?);
    let mut w = crate::digest::HashingWriter::new(tmp.as_file());
    std::io::copy(&mut src, &mut w)?;
    let (got, _, dst) = w.finish();
    if got.hex() != want {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "{} has sha256 {}, expected {want}",
                from.display(),
                got.hex()
            ),
        ));
    }
    dst.set_permissions(fs::Permissions::from_mode(mode))?;
    dst.sync_all()?;
    tmp.persist(to).map_err(|e| e.error)?;
    sync_dir(dir);
    Ok(())
}

/// Moves a finished temporary file to `dest` for good: fsync of its
/// content, rename, fsync of the directory.
pub fn persist(file: &fs::File, tmp: tempfile::TempPath, dest: &Path) -> std::io::Result<()> {
    file.sync_all()?;
    tmp.persist(dest).map_err(|e| e.error)?;
    sync_dir(dest.parent().unwrap_or(Path::new(".")));
    Ok(())
}

/// Sets a file's permission bits.
pub fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

/// fsyncs a directory, so that a rename or a new file in it survives a crash.
pub fn sync_dir(dir: &Path) {
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_leave_no_temporary_files_and_keep_the_mode() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a/b.json");
        write_durably(&f, b"one", 0o600).unwrap();
        assert!(!write_if_changed(&f, b"one", 0o600).unwrap());
        assert!(write_if_changed(&f, b"two", 0o600).unwrap());
        assert_eq!(fs::read(&f).unwrap(), b"two");
        let mode = fs::metadata(&f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        copy_durably(&f, &dir.path().join("c"), 0o755).unwrap();
        assert_eq!(fs::read(dir.path().join("c")).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(dir.path().join("a")).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary files left");
    }
}
