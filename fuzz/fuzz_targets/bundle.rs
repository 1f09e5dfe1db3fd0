//! `cache import` of a bundle (tar) from a USB stick, into an empty cache each time.
#![no_main]
use libfuzzer_sys::fuzz_target;
use outpost::cli::ProvisionArgs;
use outpost_fuzz::{default_config, scratch};

fuzz_target!(|data: &[u8]| {
    let bundle = scratch().join("bundle.tar");
    let cache = scratch().join("cache");
    let _ = std::fs::remove_dir_all(&cache);
    std::fs::write(&bundle, data).expect("writing the bundle");
    let args = ProvisionArgs { manifest: None, allow_volatile_cache: true, allow_downgrade: false };
    let mut opts = outpost::commands::provision::options(default_config(), &args);
    opts.cache_dir = cache;
    let _ = outpost::provision::bundle::import(&opts, &bundle);
});
