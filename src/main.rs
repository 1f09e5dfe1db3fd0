//! The `outpost` binary: parse arguments, install the logger, run, map errors to exit codes.

use std::process::ExitCode;

use log::LevelFilter;
use outpost::cli::{self, Global};
use outpost::exit::{exit_for, Exit};
use outpost::redact::redact_text;

// musl's malloc makes tract 1.6-3.5x slower; the static builds ship mimalloc instead.
#[cfg(all(target_env = "musl", not(feature = "system-allocator")))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = match cli::parse(std::env::args_os().skip(1)) {
        Ok(cli) => cli,
        Err(e) => {
            eprintln!("outpost: {e}\nRun `outpost --help` for usage.");
            return ExitCode::from(Exit::Usage.code());
        }
    };
    outpost::logging::init(initial_level(&cli.global));
    match outpost::commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away (`outpost config | head -1`): nothing left to say to it.
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", redact_text(&format!("{err:#}")));
            ExitCode::from(exit_for(&err).code())
        }
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain()
        .any(|cause| cause.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe))
}

/// The level before the config is read: flags, then `OUTPOST_LOG`/`OUTPOST_LOG_LEVEL`, then info.
fn initial_level(global: &Global) -> LevelFilter {
    match global.verbosity {
        v if v < 0 => return LevelFilter::Error,
        1 => return LevelFilter::Debug,
        v if v >= 2 => return LevelFilter::Trace,
        _ => {}
    }
    if let Some(level) = global.log_level {
        return level;
    }
    ["OUTPOST_LOG_LEVEL", "OUTPOST_LOG"]
        .iter()
        .filter_map(|var| std::env::var(var).ok())
        .find_map(|v| outpost::logging::parse_level(&v))
        .unwrap_or(LevelFilter::Info)
}
