//! `outpost config [--json]`: every effective value and the layer it came from.

use crate::cli::Global;
use crate::config::keys::KEYS;

pub fn run(global: &Global, json: bool) -> anyhow::Result<()> {
    let loaded = super::load_config(global)?;
    let file = loaded.config_file.as_ref().map(|p| p.display().to_string());
    if json {
        let mut settings = serde_json::Map::new();
        for key in KEYS {
            let value = match loaded.settings.get(key.name) {
                Some(e) => serde_json::json!({"value": e.value.to_json(), "source": e.source.to_string()}),
                None => serde_json::json!({"value": null, "source": "unset"}),
            };
            settings.insert(key.name.to_string(), value);
        }
        let doc = serde_json::json!({"config_file": file, "settings": settings});
        outln!("{}", serde_json::to_string_pretty(&doc)?)?;
        return Ok(());
    }
    outln!("# config file: {}", file.as_deref().unwrap_or("(none)"))?;
    let width = KEYS.iter().map(|k| k.name.len()).max().unwrap_or(0);
    let rows: Vec<(String, String)> = KEYS
        .iter()
        .map(|key| match loaded.settings.get(key.name) {
            Some(e) => (format!("{:<width$} = {}", key.name, e.value.display()), e.source.to_string()),
            None => (format!("{:<width$} = (unset)", key.name), "unset".to_string()),
        })
        .collect();
    // Long values (memory notes) would push every source far right; cap the alignment.
    let value_width = rows.iter().map(|(v, _)| v.len()).max().unwrap_or(0).min(width + 36);
    for (value, source) in rows {
        outln!("{value:<value_width$}  # {source}")?;
    }
    Ok(())
}
