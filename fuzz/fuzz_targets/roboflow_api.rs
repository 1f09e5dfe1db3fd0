//! The Roboflow API: model ids as users type them, and the `/ort/` answer naming the weights.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = outpost::provision::roboflow::dataset_version(text);
    let _ = outpost::provision::roboflow::parse_ort_answer(text);
});
