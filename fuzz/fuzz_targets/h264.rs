//! H.264 as it comes from a camera or a file: NAL unit splitting, AVCC to Annex B, and the
//! decoder (Cisco's openh264, C++) on whatever the bytes are.
#![no_main]
use libfuzzer_sys::fuzz_target;
use outpost::capture::convert::Yuv420;
use outpost::capture::h264::{has_idr, length_prefixed_to_annex_b, nal_units, H264};

fuzz_target!(|data: &[u8]| {
    let mut annex_b = Vec::new();
    let _ = length_prefixed_to_annex_b(data, 4, &mut annex_b);
    let _ = length_prefixed_to_annex_b(data, 2, &mut annex_b);
    let mut decoder = H264::new().expect("the decoder starts");
    let mut picture = Yuv420::default();
    // Access units as a camera would send them: split where the stream says, at most 64.
    let units: Vec<&[u8]> = nal_units(data).take(64).collect();
    for unit in units {
        let _ = has_idr(unit);
        let _ = decoder.decode(unit, true, &mut picture);
    }
    let _ = decoder.finish(|_| {});
});
