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
        // Offsets come from the file: any of them may be hostile.
        let entry = i
            .checked_mul(phentsize)
            .and_then(|o| o.checked_add(phoff))
            .and_then(|o| Some((o, o.checked_add(4)?)));
        let Some(kind) = entry.and_then(|(o, end)| h.get(o..end)) else {
            return "unknown";
        };
        if u32::from_le_bytes(kind.try_into().expect("4 bytes")) == 3 {
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

    #[test]
    fn a_crafted_header_is_unknown_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("evil");
        for phoff in [u64::MAX - 1, u64::MAX / 2, 1 << 40, 60] {
            let mut h = vec![0u8; 64];
            h[..6].copy_from_slice(b"\x7fELF\x02\x01");
            h[32..40].copy_from_slice(&phoff.to_le_bytes());
            h[54..56].copy_from_slice(&0xffffu16.to_le_bytes());
            h[56..58].copy_from_slice(&0xffffu16.to_le_bytes());
            std::fs::write(&p, &h).unwrap();
            assert_eq!(super::linkage(&p), "unknown", "phoff {phoff}");
        }
    }
}
