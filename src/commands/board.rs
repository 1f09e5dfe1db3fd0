//! `outpost board [detect|list|show NAME]`.

use crate::boards::detect::{self, DeviceTree};
use crate::boards::Catalog;
use crate::cli::{BoardCommand, Global};

pub fn run(global: &Global, cmd: &BoardCommand) -> anyhow::Result<()> {
    let opts = super::load_options(global);
    let catalog = Catalog::load(Some(&opts.boards_dir()))?;
    match cmd {
        BoardCommand::Detect => {
            let sysroot = opts.sysroot();
            let dt = DeviceTree::read(&sysroot);
            let arch = detect::machine_arch(&sysroot);
            let found = detect::detect(&catalog, &dt, &arch)?;
            let profile = catalog.get(&found.profile)?;
            // The name alone on the first line, for scripts; details after it, for people.
            outln!("{}", profile.name)?;
            outln!("description: {}", profile.description)?;
            outln!("matched: {}", found.reason)?;
            outln!("model: {}", dt.model.as_deref().unwrap_or("(no device-tree model)"))?;
            outln!("architecture: {arch}")?;
            outln!("profile: {}", profile.origin)?;
        }
        BoardCommand::List => {
            let width = catalog.names().map(str::len).max().unwrap_or(0);
            for p in catalog.profiles() {
                outln!("{:<width$}  {}  [{}]", p.name, p.description, p.origin)?;
            }
        }
        BoardCommand::Show(name) => show(&catalog, name)?,
    }
    Ok(())
}

fn show(catalog: &Catalog, name: &str) -> anyhow::Result<()> {
    let chain = catalog.chain(name)?;
    let profile = chain.last().expect("chain ends with the profile itself");
    outln!("name: {}", profile.name)?;
    outln!("description: {}", profile.description)?;
    outln!("origin: {}", profile.origin)?;
    let names: Vec<&str> = chain.iter().map(|p| p.name.as_str()).collect();
    outln!("inherits: {}", names.join(" -> "))?;
    let rules = &profile.rules;
    outln!("match.compatible: {}", rules.compatible.join(", "))?;
    outln!("match.model: {}", rules.model.join(", "))?;
    outln!("match.arch: {}", rules.arch.join(", "))?;
    let mut settings = crate::config::Settings::default();
    for p in &chain {
        settings.merge(&p.layer);
    }
    let width = settings.entries.keys().map(|k| k.len()).max().unwrap_or(0);
    let value_width = width + 36;
    for (key, entry) in &settings.entries {
        let from = match &entry.source {
            crate::config::Source::Board { name, .. } => name.as_str(),
            _ => "?",
        };
        outln!("{:<value_width$}  # {from}", format!("{key:<width$} = {}", entry.value.display()))?;
    }
    Ok(())
}
