//! One module per subcommand: each turns parsed arguments into calls on the library and output.

/// `println!` that hands a write error back instead of panicking: `outpost config | head -1`
/// closes the pipe, and that is no crash (main exits quietly on a broken pipe).
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)
    }};
}

/// `print!` likewise.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        write!(std::io::stdout().lock(), $($arg)*)
    }};
}

mod bench;
mod board;
mod cache;
mod config;
mod decode;
mod detect;
mod doctor;
pub mod provision;
mod run;
mod serve;

use crate::cli::{Cli, Command, Global};
use crate::config::{LoadOptions, Loaded};

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Help => {
            out!("{}", crate::cli::USAGE)?;
            Ok(())
        }
        Command::Version => {
            out!("{}", crate::build_info::version_text())?;
            Ok(())
        }
        Command::Board(cmd) => board::run(&cli.global, &cmd),
        Command::Config { json } => config::run(&cli.global, json),
        Command::Doctor => doctor::run(&cli.global),
        Command::Provision(args) => provision::run(&cli.global, &args),
        Command::Cache(cmd) => cache::run(&cli.global, &cmd),
        Command::Detect(args) => detect::run(&cli.global, &args),
        Command::Bench(args) => bench::run(&cli.global, &args),
        Command::Run(args) => run::run(&cli.global, &args),
        Command::Serve(args) => serve::run(&cli.global, &args),
        Command::Decode => decode::run(&cli.global),
    }
}

fn load_options(global: &Global) -> LoadOptions {
    LoadOptions {
        config_file: global.config_file.clone(),
        boards_dir: global.boards_dir.clone(),
        flags: global.flags.clone(),
        env: Vec::new(),
    }
    .with_process_env()
}

/// Loads the configuration and applies its log level unless the command line chose one.
fn load_config(global: &Global) -> Result<Loaded, crate::config::ConfigError> {
    let loaded = crate::config::load(&load_options(global))?;
    crate::vision::image::set_max_pixels(loaded.config.inference.max_image_pixels);
    crate::backend::tract::set_plan_timeout(loaded.config.inference.plan_timeout);
    if global.log_level.is_none() && global.verbosity == 0 {
        log::set_max_level(loaded.config.log_level);
    }
    Ok(loaded)
}
