//! Why an install did not finish, each with a hint and an exit code
//! (documented in docs/install.md).

use crate::preflight::CheckResult;

/// Exit code: bad input (flags, bundle, manifest, state directory).
pub const EXIT_BAD_INPUT: u8 = 1;
/// Exit code: preflight checks failed; nothing was changed.
pub const EXIT_PREFLIGHT: u8 = 3;
/// Exit code: a phase failed; `--resume` carries on after the cause is fixed.
pub const EXIT_PHASE: u8 = 4;
/// Exit code: interrupted by SIGINT or SIGTERM; `--resume` carries on.
pub const EXIT_INTERRUPTED: u8 = 130;

/// Why an install stopped.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// A flag, the bundle or the manifest is wrong; nothing was changed.
    #[error("{message}")]
    BadInput {
        /// What is wrong.
        message: String,
        /// What to do.
        hint: Option<String>,
    },
    /// Preflight found the machine unfit; nothing was changed.
    #[error("preflight checks failed (see the table above)")]
    Preflight {
        /// Every check's result.
        results: Vec<CheckResult>,
    },
    /// A phase failed.
    #[error("phase {id} failed: {cause}")]
    Phase {
        /// The phase.
        id: String,
        /// What went wrong, with the end of a crashed service's log.
        cause: String,
        /// The state directory (for the hint).
        state_dir: String,
    },
    /// SIGINT or SIGTERM.
    #[error("interrupted in phase {id}")]
    Interrupted {
        /// The phase that was running.
        id: String,
    },
}

impl InstallError {
    /// Bad input with a hint.
    pub fn bad_input(message: impl Into<String>, hint: impl Into<String>) -> InstallError {
        InstallError::BadInput {
            message: message.into(),
            hint: Some(hint.into()),
        }
    }

    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            InstallError::BadInput { hint, .. } => hint.clone(),
            InstallError::Preflight { .. } => Some(
                "fix what the table says, rerun with --autofix, or skip a check with --skip-check NAME".into(),
            ),
            InstallError::Phase { state_dir, .. } => Some(format!(
                "fix the cause, then run `./install --resume` (the plan: `tele plan --state-dir {state_dir}`)"
            )),
            InstallError::Interrupted { .. } => {
                Some("run `./install --resume` to carry on".into())
            }
        }
    }

    /// The process exit code it means.
    pub fn exit_code(&self) -> u8 {
        match self {
            InstallError::BadInput { .. } => EXIT_BAD_INPUT,
            InstallError::Preflight { .. } => EXIT_PREFLIGHT,
            InstallError::Phase { .. } => EXIT_PHASE,
            InstallError::Interrupted { .. } => EXIT_INTERRUPTED,
        }
    }
}
