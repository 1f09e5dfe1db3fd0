//! Image files into RGB8 buffers: PNG and JPEG (JPEG EXIF orientation applied), with errors that
//! name the file and say what is wrong.

use std::io::Cursor;
use std::path::Path;

use image::{DynamicImage, ImageDecoder, ImageReader};

/// An RGB8 image, rows top to bottom, 3 bytes per pixel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbImage {
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
}

impl RgbImage {
    pub fn new(width: u32, height: u32, data: Vec<u8>) -> RgbImage {
        debug_assert_eq!(data.len(), width as usize * height as usize * 3);
        RgbImage { width, height, data }
    }
}

/// Largest image decoded by default (width x height): 40 MP, about 120 MB of RGB. A small file
/// can declare a huge image (a decompression bomb); checked from the header, before anything is
/// allocated. `inference.max_image_megapixels` sets it ([`set_max_pixels`]).
pub const MAX_PIXELS: u64 = 40_000_000;

/// The limit in force: one setting for the whole process (detect, bench and every frame source
/// decode through [`decode`]), set once the configuration is loaded.
static MAX_PIXELS_NOW: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(MAX_PIXELS);

pub fn set_max_pixels(pixels: u64) {
    MAX_PIXELS_NOW.store(pixels, std::sync::atomic::Ordering::Relaxed);
}

pub fn load(path: &Path) -> anyhow::Result<RgbImage> {
    let bytes = std::fs::read(path).map_err(|e| anyhow::anyhow!("{}: cannot read: {e}", path.display()))?;
    decode(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// The `(width, height)` an image's header declares, without decoding it (`None` when the bytes
/// are no image this module reads; [`decode`] then says why).
pub fn dimensions(bytes: &[u8]) -> Option<(u32, u32)> {
    ImageReader::new(Cursor::new(bytes)).with_guessed_format().ok()?.into_dimensions().ok()
}

/// The largest image [`decode`] accepts now, in pixels.
pub fn max_pixels() -> u64 {
    MAX_PIXELS_NOW.load(std::sync::atomic::Ordering::Relaxed)
}

/// Decodes PNG or JPEG bytes (the format is sniffed, not taken from a file name).
pub fn decode(bytes: &[u8]) -> anyhow::Result<RgbImage> {
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| anyhow::anyhow!("cannot read image data: {e}"))?;
    let format = match reader.format() {
        Some(f @ (image::ImageFormat::Png | image::ImageFormat::Jpeg)) => f,
        Some(other) => anyhow::bail!("{other:?} images are not supported (PNG or JPEG)"),
        None => anyhow::bail!("not an image (neither PNG nor JPEG data)"),
    };
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| anyhow::anyhow!("truncated or corrupt {format:?} data (header): {e}"))?;
    let (w, h) = decoder.dimensions();
    let max = MAX_PIXELS_NOW.load(std::sync::atomic::Ordering::Relaxed);
    if u64::from(w) * u64::from(h) > max || w == 0 || h == 0 {
        anyhow::bail!(
            "the {format:?} image declares {w}x{h} pixels; outpost decodes images of 1 to {} megapixels \
             (inference.max_image_megapixels; downscale it first)",
            max / 1_000_000
        );
    }
    let orientation = decoder.orientation().unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder)
        .map_err(|e| anyhow::anyhow!("truncated or corrupt {format:?} data: {e}"))?;
    img.apply_orientation(orientation);
    let rgb = img.into_rgb8();
    let (width, height) = rgb.dimensions();
    Ok(RgbImage::new(width, height, rgb.into_raw()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/images").join(name)).unwrap()
    }

    #[test]
    fn png_fixtures_decode_to_rgb() {
        let img = decode(&fixture("chelsea.png")).unwrap();
        assert_eq!((img.width, img.height, img.data.len()), (451, 300, 451 * 300 * 3));
        let grey = decode(&fixture("page.png")).unwrap();
        assert_eq!((grey.width, grey.height), (384, 191));
        // Greyscale becomes three equal channels.
        assert!(grey.data.chunks(3).all(|p| p[0] == p[1] && p[1] == p[2]));
    }

    #[test]
    fn truncated_and_non_images_are_clear_errors() {
        let png = fixture("coffee.png");
        let err = decode(&png[..png.len() / 2]).unwrap_err().to_string();
        assert!(err.contains("truncated or corrupt Png"), "{err}");
        let err = decode(b"{\"not\": \"an image\"}").unwrap_err().to_string();
        assert!(err.contains("not an image"), "{err}");
    }

    #[test]
    fn jpeg_exif_orientation_is_applied() {
        // A 4x2 JPEG tagged orientation 6 (rotate 90 degrees clockwise) displays as 2x4.
        let src = image::RgbImage::from_fn(4, 2, |x, _| image::Rgb([x as u8 * 60, 0, 0]));
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 95).encode_image(&src).unwrap();
        let tagged = insert_exif_orientation(&jpeg, 6);
        let img = decode(&tagged).unwrap();
        assert_eq!((img.width, img.height), (2, 4));
    }

    /// Inserts an APP1 Exif segment holding only an Orientation tag after the SOI marker.
    fn insert_exif_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
        let mut tiff = Vec::new();
        tiff.extend_from_slice(b"MM\0\x2a\0\0\0\x08"); // big-endian TIFF header, IFD at 8
        tiff.extend_from_slice(&1u16.to_be_bytes()); // one entry
        tiff.extend_from_slice(&0x0112u16.to_be_bytes()); // Orientation
        tiff.extend_from_slice(&3u16.to_be_bytes()); // SHORT
        tiff.extend_from_slice(&1u32.to_be_bytes()); // count
        tiff.extend_from_slice(&orientation.to_be_bytes());
        tiff.extend_from_slice(&[0, 0]);
        tiff.extend_from_slice(&0u32.to_be_bytes()); // no next IFD
        let mut app1 = b"Exif\0\0".to_vec();
        app1.extend_from_slice(&tiff);
        let mut out = jpeg[..2].to_vec();
        out.extend_from_slice(&[0xff, 0xe1]);
        out.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
        out.extend_from_slice(&app1);
        out.extend_from_slice(&jpeg[2..]);
        out
    }
}
