//! Model manifests (TOML): from a USB stick, a provisioning server, an operator's editor.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = outpost::provision::manifest::Manifest::parse(std::path::Path::new("/media/stick/models.toml"), data);
});
