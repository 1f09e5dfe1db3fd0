//! Image decoding (PNG, JPEG with EXIF orientation, ...): files, request bodies, MJPEG frames.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // A 16-megapixel cap, as a unit would set (vision.max_pixels): a hostile header that declares
    // a gigantic picture must be refused before memory is taken, not fill the fuzzer's RSS limit.
    outpost::vision::image::set_max_pixels(1 << 24);
    let _ = outpost::vision::image::dimensions(data);
    let _ = outpost::vision::image::decode(data);
});
