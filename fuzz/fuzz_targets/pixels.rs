//! Camera pixel formats to RGB with arbitrary sizes and strides (what a driver reports).
#![no_main]
use libfuzzer_sys::fuzz_target;
use outpost::capture::convert::{to_rgb, RawFrame};
use outpost::config::PixelFormat;
use outpost::vision::image::RgbImage;

fuzz_target!(|data: &[u8]| {
    if data.len() < 7 {
        return;
    }
    let format = [PixelFormat::Yuyv, PixelFormat::Nv12, PixelFormat::Rgb24, PixelFormat::Mjpeg][data[0] as usize % 4];
    let width = u32::from(u16::from_le_bytes([data[1], data[2]]) % 2048);
    let height = u32::from(u16::from_le_bytes([data[3], data[4]]) % 2048);
    let stride = u32::from(u16::from_le_bytes([data[5], data[6]]));
    let raw = RawFrame { format, width, height, stride, data: &data[7..] };
    let mut out = RgbImage::new(0, 0, Vec::new());
    if to_rgb(&raw, &mut out).is_ok() && format != PixelFormat::Mjpeg {
        assert_eq!(out.data.len(), width as usize * height as usize * 3, "RGB buffer of the wrong size");
    }
});
