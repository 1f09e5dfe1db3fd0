//! Roboflow's environment.json (class names, resize mode, colours) that comes with a model.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = outpost::vision::environment::parse(data);
});
