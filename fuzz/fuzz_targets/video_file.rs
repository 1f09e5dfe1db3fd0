//! Video files (MP4 through outpost's demuxer, raw .h264) read as a camera: every frame.
#![no_main]
use libfuzzer_sys::fuzz_target;
use outpost::capture::{Frame, Next};
use outpost_fuzz::{default_config, scratch};

fuzz_target!(|data: &[u8]| {
    // By the first bytes, as a user's file name would say: an Annex B start code is raw H.264.
    let ext = if data.starts_with(&[0, 0, 0, 1]) || data.starts_with(&[0, 0, 1]) { "h264" } else { "mp4" };
    let path = scratch().join(format!("clip.{ext}"));
    std::fs::write(&path, data).expect("writing the clip");
    let Ok(mut source) = outpost::capture::open_text(&format!("file:{}", path.display()), default_config()) else { return };
    let mut frame = Frame::default();
    for _ in 0..32 {
        match source.next(&mut frame) {
            Ok(Next::Frame) => {
                let _ = frame.rgb();
            }
            Ok(_) | Err(_) => break,
        }
    }
});
