//! Exit codes, distinct so a systemd unit can decide whether restarting can help.
//!
//! | code | meaning | systemd |
//! |---|---|---|
//! | 0 | success | — |
//! | 1 | runtime failure (camera, model, I/O) | restart |
//! | 2 | usage error (bad command line) | do not restart |
//! | 3 | configuration error (config file, board profile, manifest) | do not restart |
//! | 4 | provisioning failed / cache incomplete or corrupt | restart later (network may return) |
//! | 5 | not available in this build (not implemented yet, or a feature not compiled in) | do not restart |

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Success = 0,
    Runtime = 1,
    Usage = 2,
    Config = 3,
    Provisioning = 4,
    Unavailable = 5,
}

impl Exit {
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// An error that carries its exit code through `anyhow` contexts.
#[derive(Debug)]
pub struct Failure {
    pub exit: Exit,
    pub message: String,
}

impl Failure {
    pub fn new(exit: Exit, message: impl Into<String>) -> Failure {
        Failure { exit, message: message.into() }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// The exit code for an error: the first typed error in its chain decides, else runtime failure.
pub fn exit_for(err: &anyhow::Error) -> Exit {
    for cause in err.chain() {
        if let Some(failure) = cause.downcast_ref::<Failure>() {
            return failure.exit;
        }
        if cause.is::<crate::config::ConfigError>() || cause.is::<crate::provision::rollback::Superseded>() {
            return Exit::Config;
        }
    }
    Exit::Runtime
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn typed_errors_keep_their_code_through_context() {
        let err = Err::<(), _>(Failure::new(Exit::Provisioning, "cache incomplete"))
            .context("outpost run")
            .unwrap_err();
        assert_eq!(exit_for(&err), Exit::Provisioning);
        let cfg = crate::config::ConfigError::InheritCycle { chain: vec!["a".into(), "a".into()] };
        assert_eq!(exit_for(&anyhow::Error::new(cfg).context("loading")), Exit::Config);
        assert_eq!(exit_for(&anyhow::anyhow!("disk on fire")), Exit::Runtime);
    }
}
