//! Tells whether a Linux binary is statically linked (it has no PT_INTERP).

use std::io::Read;
use std::path::Path;

/// `static`, `dynamic`, or `unknown` for what is not a 64-bit little-endian ELF.
pub fn linkage(path: &Path) -> &'static str {
    let mut head = vec![0u8; 64 * 1024];
    let n = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .unwrap_or(0);
    let h = &head[..n];
    if h.len() < 64 || &h[..4] != b"\x7fELF" || h[4] != 2 || h[5] != 1 {
        return "unknown";
    }
    let u16_at = |o: usize| u16::from_le_bytes([h[o], h[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(h[32..40].try_into().expect("8 bytes")) as usize;
    let (phentsize, phnum) = (u16_at(54), u16_at(56));
    for i in 0..phnum {
        let o = phoff + i * phentsize;
        if o + 4 > h.len() {
            return "unknown";
        }
        if u32::from_le_bytes(h[o..o + 4].try_into().expect("4 bytes")) == 3 {
            return "dynamic";
        }
    }
    "static"
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_test_binary_itself_is_recognised() {
        let me = std::env::current_exe().unwrap();
        assert_ne!(super::linkage(&me), "unknown");
        assert_eq!(
            super::linkage(std::path::Path::new("/etc/hostname")),
            "unknown"
        );
    }
}
