//! Builds the vendor's public key into tele when `TELE_TRUSTED_KEY_FILE`
//! names one (a PEM file, `tele keygen`'s NAME.pub): an installer built so
//! installs only bundles signed by that key. Otherwise tele has no
//! built-in key.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=TELE_TRUSTED_KEY_FILE");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let pem = match std::env::var_os("TELE_TRUSTED_KEY_FILE") {
        Some(path) if !path.is_empty() => {
            let path = PathBuf::from(path);
            println!("cargo:rerun-if-changed={}", path.display());
            let pem = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("TELE_TRUSTED_KEY_FILE={}: {e}", path.display()));
            assert!(
                pem.contains("-----BEGIN PUBLIC KEY-----"),
                "TELE_TRUSTED_KEY_FILE={} is not a PEM public key (tele keygen's NAME.pub)",
                path.display()
            );
            pem
        }
        _ => String::new(),
    };
    std::fs::write(out.join("trusted-key.pem"), pem).expect("OUT_DIR is writable");
}
