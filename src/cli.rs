//! Command-line parsing (lexopt: small, no derive magic, as ripgrep does) and the help text.

use std::ffi::OsString;
use std::path::PathBuf;

use lexopt::prelude::*;
use log::LevelFilter;

use crate::config::FlagSetting;

pub const USAGE: &str = "\
outpost: provision ONNX models once, then run vision inference offline on edge boards

USAGE:
    outpost [OPTIONS] <COMMAND> [ARGS]

COMMANDS:
    provision [--manifest FILE] [--allow-volatile-cache] [--allow-downgrade]
                           download, verify and cache the manifest's models (blocking)
    run [--source SRC] [--model ID] [--frames N] [--manifest FILE] [--allow-volatile-cache]
                           provision, load the model, then capture -> infer -> sinks until
                           stopped; SRC: v4l2:///dev/videoN, rtsp://[USER:PASS@]HOST[:PORT]/PATH,
                           file:IMAGE, file:VIDEO (.mp4, .h264) or dir:FOLDER
    decode [--source SRC] [--frames N]
                           read and decode a source without a model: one line per frame
                           (size, checksum), then frames/s; for checking cameras and clips
    serve [--manifest FILE] [--listen HOST:PORT]
                           the Roboflow Inference HTTP API (inference-sdk) on the cached
                           models; default 127.0.0.1:9001 (serve.listen)
    detect <IMAGE>... (--model ID | --model-file FILE) [--family F] [--input WxH]
           [--confidence C] [--iou I] [--max-detections N] [--class-agnostic]
                           run a model on image files; one Roboflow-shaped JSON object per line
    bench (--model ID | --model-file FILE) [--image FILE] [--runs N] [--threads T] [--profile]
                           time inference: load, first run, median and p90 latency;
                           --profile adds each operation's share (backends that can say)
    cache ls [--json]      list the cached models of the current generation
    cache verify [--repair]
                           re-hash every blob; --repair discards bad ones and re-fetches
    cache gc               remove unreferenced blobs, old generations and stale partials
    cache export <BUNDLE>  write the current generation (manifest + blobs) to a tar bundle
    cache import <BUNDLE> [--allow-downgrade] [--allow-volatile-cache]
                           verify every blob of a bundle, then activate it (no network)
    board [detect]         print the autodetected board profile (name on the first line)
    board list             list the known board profiles
    board show <NAME>      print a board profile after inheritance, with each value's origin
    config [--json]        print the effective configuration and where each value came from
    doctor                 check this machine: board, config, cache storage, camera, threads
    help                   print this help

OPTIONS (before or after the command):
    -c, --config <FILE>       config file [env OUTPOST_CONFIG; default /etc/outpost/outpost.toml]
        --board <NAME>        board profile instead of autodetection [env OUTPOST_BOARD]
        --boards-dir <DIR>    extra/overriding board profiles [env OUTPOST_BOARDS_DIR;
                              default /etc/outpost/boards]
        --cache-dir <DIR>     model cache directory [env OUTPOST_CACHE_DIR, MODEL_CACHE_DIR]
        --threads <N>         inference threads [env OUTPOST_INFERENCE_THREADS]
        --set <KEY=VALUE>     set any configuration key (see `outpost config`)
        --log-level <LEVEL>   off|error|warn|info|debug|trace [env OUTPOST_LOG]
    -v, --verbose             more logging (-vv for trace)
    -q, --quiet               only errors
    -h, --help                print this help
    -V, --version             print the version and the features compiled in

PRECEDENCE: built-in defaults < board profile < config file < environment < flags.

EXIT CODES:
    0 success                    3 configuration error (do not restart)
    1 runtime failure (restart)  4 provisioning failed / cache incomplete (restart later)
    2 usage error                5 not available in this build
";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BoardCommand {
    Detect,
    List,
    Show(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheCommand {
    Ls { json: bool },
    Verify { repair: bool },
    Gc,
    Export(PathBuf),
    /// The provisioning flags (--allow-downgrade, --allow-volatile-cache) apply to an import too.
    Import { bundle: PathBuf, args: ProvisionArgs },
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProvisionArgs {
    pub manifest: Option<PathBuf>,
    pub allow_volatile_cache: bool,
    pub allow_downgrade: bool,
}

/// Which model `detect` and `bench` run, and how.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelArgs {
    /// A model id of the cache's current generation.
    pub model: Option<String>,
    /// An ONNX file, bypassing the cache (development).
    pub model_file: Option<PathBuf>,
    pub family: Option<String>,
    /// `[width, height]`.
    pub input: Option<[u32; 2]>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct DetectArgs {
    pub images: Vec<PathBuf>,
    pub model: ModelArgs,
    pub confidence: Option<f32>,
    pub iou: Option<f32>,
    pub max_detections: Option<usize>,
    pub class_agnostic: bool,
}

/// `run`: most of its settings are configuration keys (`run.*`, `sinks.*`, `camera.*`); its
/// flags are shorthands that land in the flag layer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunArgs {
    pub provision: ProvisionArgs,
}

/// `serve`: its settings are `serve.*` keys; `--listen` lands in the flag layer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServeArgs {
    pub provision: ProvisionArgs,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct BenchArgs {
    pub model: ModelArgs,
    pub image: Option<PathBuf>,
    pub runs: usize,
    pub profile: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Help,
    Version,
    Board(BoardCommand),
    Config { json: bool },
    Doctor,
    Provision(ProvisionArgs),
    Cache(CacheCommand),
    Detect(DetectArgs),
    Bench(BenchArgs),
    Run(RunArgs),
    Serve(ServeArgs),
    Decode,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Global {
    pub config_file: Option<PathBuf>,
    pub boards_dir: Option<PathBuf>,
    pub flags: Vec<FlagSetting>,
    pub log_level: Option<LevelFilter>,
    /// -v adds one, -q sets -1.
    pub verbosity: i8,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Cli {
    pub global: Global,
    pub command: Command,
}

/// A usage error: what was wrong with the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

impl From<lexopt::Error> for UsageError {
    fn from(e: lexopt::Error) -> UsageError {
        UsageError(e.to_string())
    }
}

/// Parses the arguments after the program name.
pub fn parse<I: IntoIterator<Item = OsString>>(args: I) -> Result<Cli, UsageError> {
    let mut parser = lexopt::Parser::from_args(args);
    let mut global = Global::default();
    let mut words: Vec<String> = Vec::new();
    let mut opts = CommandOptions::default();
    while let Some(arg) = parser.next()? {
        match arg {
            Short('h') | Long("help") => return Ok(Cli { global, command: Command::Help }),
            Short('V') | Long("version") => return Ok(Cli { global, command: Command::Version }),
            Short('c') | Long("config") => global.config_file = Some(parser.value()?.into()),
            Long("boards-dir") => global.boards_dir = Some(parser.value()?.into()),
            Long("board") => push_flag(&mut global, "--board", "board", parser.value()?)?,
            Long("cache-dir") => push_flag(&mut global, "--cache-dir", "cache.dir", parser.value()?)?,
            Long("threads") => push_flag(&mut global, "--threads", "inference.threads", parser.value()?)?,
            Long("set") => {
                let text = string(parser.value()?)?;
                let (key, value) = text
                    .split_once('=')
                    .ok_or_else(|| UsageError(format!("--set expects KEY=VALUE, got `{text}`")))?;
                global.flags.push(FlagSetting {
                    flag: format!("--set {key}"),
                    key: key.trim().to_string(),
                    value: value.to_string(),
                });
            }
            Long("log-level") => {
                let text = string(parser.value()?)?;
                let level = crate::logging::parse_level(&text)
                    .ok_or_else(|| UsageError(format!("--log-level: unknown level `{text}`")))?;
                global.log_level = Some(level);
            }
            Short('v') | Long("verbose") => global.verbosity = global.verbosity.max(0) + 1,
            Short('q') | Long("quiet") => global.verbosity = -1,
            Long("json") => opts.seen("--json"),
            Long("repair") => opts.seen("--repair"),
            Long("profile") => opts.seen("--profile"),
            Long("allow-volatile-cache") => opts.seen("--allow-volatile-cache"),
            Long("allow-downgrade") => opts.seen("--allow-downgrade"),
            Long("manifest") => {
                opts.given.push("--manifest");
                opts.provision.manifest = Some(parser.value()?.into());
            }
            Long("model") => {
                opts.given.push("--model");
                opts.model.model = Some(string(parser.value()?)?);
            }
            Long("model-file") => {
                opts.given.push("--model-file");
                opts.model.model_file = Some(parser.value()?.into());
            }
            Long("family") => {
                opts.given.push("--family");
                opts.model.family = Some(string(parser.value()?)?);
            }
            Long("input") => {
                opts.given.push("--input");
                opts.model.input = Some(parse_size(&string(parser.value()?)?)?);
            }
            Long("image") => {
                opts.given.push("--image");
                opts.image = Some(parser.value()?.into());
            }
            Long("confidence") => {
                opts.given.push("--confidence");
                opts.confidence = Some(parse_num(&string(parser.value()?)?, "--confidence", 0.0, 1.0)?);
            }
            Long("iou") => {
                opts.given.push("--iou");
                opts.iou = Some(parse_num(&string(parser.value()?)?, "--iou", 0.0, 1.0)?);
            }
            Long("max-detections") => {
                opts.given.push("--max-detections");
                let max = crate::vision::detection::MAX_DETECTIONS as u64;
                opts.max_detections = Some(parse_count(&string(parser.value()?)?, "--max-detections", 1, max)? as usize);
            }
            Long("runs") => {
                opts.given.push("--runs");
                opts.runs = Some(parse_count(&string(parser.value()?)?, "--runs", 1, 100_000)? as usize);
            }
            Long("class-agnostic") => opts.seen("--class-agnostic"),
            Long("source") => {
                opts.given.push("--source");
                push_flag(&mut global, "--source", "run.source", parser.value()?)?;
            }
            Long("listen") => {
                opts.given.push("--listen");
                push_flag(&mut global, "--listen", "serve.listen", parser.value()?)?;
            }
            Long("frames") => {
                opts.given.push("--frames");
                push_flag(&mut global, "--frames", "run.frames", parser.value()?)?;
            }
            Value(value) => {
                words.push(string(value)?);
            }
            _ => return Err(arg.unexpected().into()),
        }
    }
    let command = command_from_words(&words, &opts)?;
    check_options(&command, &opts)?;
    if let (Command::Run(_), Some(model)) = (&command, &opts.model.model) {
        global.flags.push(FlagSetting { flag: "--model".into(), key: "run.model".into(), value: model.clone() });
    }
    Ok(Cli { global, command })
}

/// Options that belong to one subcommand; collected in any position, checked afterwards.
#[derive(Debug, Default)]
struct CommandOptions {
    json: bool,
    repair: bool,
    profile: bool,
    provision: ProvisionArgs,
    model: ModelArgs,
    image: Option<PathBuf>,
    confidence: Option<f32>,
    iou: Option<f32>,
    max_detections: Option<usize>,
    runs: Option<usize>,
    class_agnostic: bool,
    given: Vec<&'static str>,
}

impl CommandOptions {
    /// Records a boolean flag.
    fn seen(&mut self, flag: &'static str) {
        self.given.push(flag);
        match flag {
            "--json" => self.json = true,
            "--repair" => self.repair = true,
            "--profile" => self.profile = true,
            "--allow-volatile-cache" => self.provision.allow_volatile_cache = true,
            "--allow-downgrade" => self.provision.allow_downgrade = true,
            "--class-agnostic" => self.class_agnostic = true,
            _ => {}
        }
    }
}

fn check_options(command: &Command, opts: &CommandOptions) -> Result<(), UsageError> {
    let allowed: &[&str] = match command {
        Command::Config { .. } | Command::Cache(CacheCommand::Ls { .. }) => &["--json"],
        Command::Cache(CacheCommand::Verify { .. }) => &["--repair"],
        Command::Provision(_) => &["--manifest", "--allow-volatile-cache", "--allow-downgrade"],
        Command::Cache(CacheCommand::Import { .. }) => &["--allow-volatile-cache", "--allow-downgrade"],
        Command::Detect(_) => &[
            "--model",
            "--model-file",
            "--family",
            "--input",
            "--confidence",
            "--iou",
            "--max-detections",
            "--class-agnostic",
        ],
        Command::Bench(_) => &["--model", "--model-file", "--family", "--input", "--image", "--runs", "--profile"],
        Command::Run(_) => &["--source", "--model", "--frames", "--manifest", "--allow-volatile-cache"],
        Command::Serve(_) => &["--listen", "--manifest", "--allow-volatile-cache"],
        Command::Decode => &["--source", "--frames"],
        _ => &[],
    };
    match opts.given.iter().find(|f| !allowed.contains(f)) {
        Some(flag) => Err(UsageError(format!("{flag} does not apply to this command"))),
        None => Ok(()),
    }
}

/// `640x480` or `640` (square) -> `[640, 480]`.
fn parse_size(text: &str) -> Result<[u32; 2], UsageError> {
    crate::config::parse_size(text).map_err(|m| UsageError(format!("--input: {m}")))
}

fn parse_num(text: &str, flag: &str, min: f32, max: f32) -> Result<f32, UsageError> {
    match text.trim().parse::<f32>() {
        Ok(v) if (min..=max).contains(&v) => Ok(v),
        _ => Err(UsageError(format!("{flag} expects a number in {min}..={max}, got `{text}`"))),
    }
}

/// A whole number in `min..=max` (`1.5` is refused, not truncated).
fn parse_count(text: &str, flag: &str, min: u64, max: u64) -> Result<u64, UsageError> {
    match text.trim().parse::<u64>() {
        Ok(v) if (min..=max).contains(&v) => Ok(v),
        _ => Err(UsageError(format!("{flag} expects a whole number in {min}..={max}, got `{text}`"))),
    }
}

fn check_model_args(m: &ModelArgs) -> Result<(), UsageError> {
    match (&m.model, &m.model_file) {
        (Some(_), Some(_)) => Err(UsageError("give either --model or --model-file, not both".into())),
        (None, None) => Err(UsageError("which model? give --model ID (from the cache) or --model-file PATH".into())),
        _ => Ok(()),
    }
}

fn command_from_words(words: &[String], opts: &CommandOptions) -> Result<Command, UsageError> {
    let json = opts.json;
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["detect", images @ ..] => {
            if images.is_empty() {
                return Err(UsageError("`detect` needs at least one image".into()));
            }
            check_model_args(&opts.model)?;
            Ok(Command::Detect(DetectArgs {
                images: images.iter().map(PathBuf::from).collect(),
                model: opts.model.clone(),
                confidence: opts.confidence,
                iou: opts.iou,
                max_detections: opts.max_detections,
                class_agnostic: opts.class_agnostic,
            }))
        }
        ["bench"] => {
            check_model_args(&opts.model)?;
            Ok(Command::Bench(BenchArgs {
                model: opts.model.clone(),
                image: opts.image.clone(),
                runs: opts.runs.unwrap_or(20),
                profile: opts.profile,
            }))
        }
        ["provision"] => Ok(Command::Provision(opts.provision.clone())),
        ["run"] => Ok(Command::Run(RunArgs { provision: opts.provision.clone() })),
        ["serve"] => Ok(Command::Serve(ServeArgs { provision: opts.provision.clone() })),
        ["decode"] => Ok(Command::Decode),
        ["cache", "ls"] => Ok(Command::Cache(CacheCommand::Ls { json })),
        ["cache", "verify"] => Ok(Command::Cache(CacheCommand::Verify { repair: opts.repair })),
        ["cache", "gc"] => Ok(Command::Cache(CacheCommand::Gc)),
        ["cache", "export", bundle] => Ok(Command::Cache(CacheCommand::Export(PathBuf::from(bundle)))),
        ["cache", "import", bundle] => Ok(Command::Cache(CacheCommand::Import {
            bundle: PathBuf::from(bundle),
            args: opts.provision.clone(),
        })),
        ["cache", "export" | "import"] => Err(UsageError(format!("`cache {}` needs a bundle path", words[1]))),
        ["cache"] => Err(UsageError("`cache` needs a command: ls, verify, gc, export or import".into())),
        ["cache", other, ..] => Err(UsageError(format!("unknown `cache` command `{other}`"))),
        [] => Err(UsageError("no command given".into())),
        ["help"] => Ok(Command::Help),
        ["board"] | ["board", "detect"] => Ok(Command::Board(BoardCommand::Detect)),
        ["board", "list"] => Ok(Command::Board(BoardCommand::List)),
        ["board", "show", name] => Ok(Command::Board(BoardCommand::Show(name.to_string()))),
        ["board", "show"] => Err(UsageError("`board show` needs a profile name (see `outpost board list`)".into())),
        ["board", other, ..] => Err(UsageError(format!("unknown `board` command `{other}`; use detect, list or show NAME"))),
        ["config"] => Ok(Command::Config { json }),
        ["doctor"] => Ok(Command::Doctor),
        [cmd, extra, ..] if matches!(*cmd, "config" | "doctor" | "help") => {
            Err(UsageError(format!("`{cmd}` takes no argument `{extra}`")))
        }
        [other, ..] => Err(UsageError(format!("unknown command `{other}`"))),
    }
}

fn push_flag(global: &mut Global, flag: &str, key: &str, value: OsString) -> Result<(), UsageError> {
    global.flags.push(FlagSetting {
        flag: flag.to_string(),
        key: key.to_string(),
        value: string(value)?,
    });
    Ok(())
}

fn string(value: OsString) -> Result<String, UsageError> {
    value
        .into_string()
        .map_err(|v| UsageError(format!("argument is not valid UTF-8: {}", v.to_string_lossy())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(args: &[&str]) -> Result<Cli, UsageError> {
        parse(args.iter().map(OsString::from))
    }

    #[test]
    fn globals_go_before_or_after_the_command() {
        let a = parse_str(&["--board", "jetson-nano", "config", "--json"]).unwrap();
        let b = parse_str(&["config", "--json", "--board", "jetson-nano"]).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.command, Command::Config { json: true });
        assert_eq!(a.global.flags[0].key, "board");
    }

    #[test]
    fn board_subcommands() {
        assert_eq!(parse_str(&["board"]).unwrap().command, Command::Board(BoardCommand::Detect));
        assert_eq!(
            parse_str(&["board", "show", "raspberry-pi-5"]).unwrap().command,
            Command::Board(BoardCommand::Show("raspberry-pi-5".into()))
        );
        assert!(parse_str(&["board", "frobnicate"]).is_err());
        assert!(parse_str(&["board", "show"]).is_err());
    }

    #[test]
    fn run_flags_become_settings() {
        let cli = parse_str(&["run", "--source", "dir:/srv/in", "--model", "faces", "--frames", "3", "--allow-volatile-cache"]).unwrap();
        let Command::Run(args) = cli.command else { panic!("not run") };
        assert!(args.provision.allow_volatile_cache);
        let keys: Vec<(&str, &str)> = cli.global.flags.iter().map(|f| (f.key.as_str(), f.value.as_str())).collect();
        assert_eq!(keys, [("run.source", "dir:/srv/in"), ("run.frames", "3"), ("run.model", "faces")]);
        assert!(parse_str(&["run", "--confidence", "0.5"]).is_err(), "thresholds are run.* settings");
        assert!(parse_str(&["detect", "a.png", "--model", "m", "--source", "x"]).is_err());
    }

    #[test]
    fn provision_and_cache_options() {
        let cli = parse_str(&["provision", "--manifest", "m.toml", "--allow-volatile-cache"]).unwrap();
        let Command::Provision(args) = cli.command else { panic!("not provision") };
        assert_eq!(args.manifest, Some(PathBuf::from("m.toml")));
        assert!(args.allow_volatile_cache && !args.allow_downgrade);
        assert_eq!(parse_str(&["cache", "verify", "--repair"]).unwrap().command, Command::Cache(CacheCommand::Verify { repair: true }));
        assert!(parse_str(&["cache", "gc", "--repair"]).is_err(), "--repair belongs to verify");
        assert!(parse_str(&["config", "--manifest", "m"]).is_err());
        assert!(parse_str(&["cache", "export"]).is_err());
    }

    #[test]
    fn detect_arguments() {
        let cli = parse_str(&["detect", "a.png", "b.jpg", "--model-file", "m.onnx", "--family", "centerface", "--confidence", "0.5", "--input", "320x240", "--class-agnostic"]).unwrap();
        let Command::Detect(d) = cli.command else { panic!("not detect") };
        assert_eq!(d.images.len(), 2);
        assert_eq!(d.model.input, Some([320, 240]));
        assert_eq!(d.confidence, Some(0.5));
        assert!(d.class_agnostic);
        assert!(parse_str(&["detect", "a.png"]).is_err(), "a model is required");
        assert!(parse_str(&["detect", "a.png", "--model", "x", "--model-file", "y"]).is_err());
        assert!(parse_str(&["detect", "a.png", "--model", "x", "--confidence", "2"]).is_err());
        assert!(parse_str(&["config", "--confidence", "0.5"]).is_err());
    }

    #[test]
    fn set_needs_key_equals_value() {
        let cli = parse_str(&["--set", "camera.fps=15", "config"]).unwrap();
        assert_eq!(cli.global.flags[0].key, "camera.fps");
        assert_eq!(cli.global.flags[0].value, "15");
        assert!(parse_str(&["--set", "camera.fps", "config"]).is_err());
    }

    #[test]
    fn usage_errors() {
        assert!(parse_str(&[]).is_err());
        assert!(parse_str(&["frobnicate"]).is_err());
        assert!(parse_str(&["config", "--bogus"]).is_err());
        assert!(parse_str(&["doctor", "extra"]).is_err());
        assert!(parse_str(&["--log-level", "loud", "config"]).is_err());
    }
}
