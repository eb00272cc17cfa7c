//! SIGINT and SIGTERM during an install: long waits notice them and end
//! with [`Interrupted`], so the phase is recorded as interrupted and
//! `--resume` carries on.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();

/// The install was interrupted by a signal.
#[derive(Debug, thiserror::Error)]
#[error("interrupted by a signal")]
pub struct Interrupted;

/// Catches SIGINT and SIGTERM from now on (once per process).
pub fn catch_signals() -> std::io::Result<()> {
    let flag = FLAG.get_or_init(|| Arc::new(AtomicBool::new(false)));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(flag))?;
    }
    Ok(())
}

/// `Err(Interrupted)` once a caught signal arrived.
pub fn check() -> anyhow::Result<()> {
    match FLAG.get() {
        Some(f) if f.load(Ordering::Relaxed) => Err(Interrupted.into()),
        _ => Ok(()),
    }
}
