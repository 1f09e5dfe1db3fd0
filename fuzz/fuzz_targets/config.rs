//! Board profiles and the config file (TOML), including `[[cameras]]` tables.
#![no_main]
use libfuzzer_sys::fuzz_target;
use outpost_fuzz::scratch;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = outpost::boards::Profile::parse("fuzzed", "boards/fuzzed.toml", text);
    }
    let path = scratch().join("outpost.toml");
    std::fs::write(&path, data).expect("writing the config file");
    let opts = outpost::config::LoadOptions { config_file: Some(path), ..Default::default() };
    let _ = outpost::config::load(&opts);
});
