//! Image -> model input: resize (stretch, or letterbox with padding) with a SIMD resizer,
//! normalise, lay out as NCHW f32. The [`Geometry`] it returns maps model coordinates back onto
//! the original image exactly.

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};

use super::image::RgbImage;

/// Model input sides outpost runs at, wherever they come from (flag, manifest, model file,
/// environment.json): 0 would divide by zero, 100000 would allocate tens of GB.
pub const INPUT_SIDES: std::ops::RangeInclusive<u32> = 16..=8192;

/// `Err` naming the range when `[width, height]` is outside [`INPUT_SIDES`].
pub fn check_input_size(width: u64, height: u64) -> Result<(), String> {
    let ok = |v: u64| u32::try_from(v).is_ok_and(|v| INPUT_SIDES.contains(&v));
    if ok(width) && ok(height) {
        return Ok(());
    }
    Err(format!(
        "input size {width}x{height} is out of range: width and height must be within {}..={}",
        INPUT_SIDES.start(),
        INPUT_SIDES.end()
    ))
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Resize {
    /// Scale each axis to the input size (aspect ratio not kept).
    Stretch,
    /// Scale to fit, keeping the aspect ratio, centre, and pad with this grey level.
    Letterbox { pad: u8 },
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Normalize {
    /// `x / 255`.
    Unit,
    /// The raw 0..255 values.
    Raw,
    /// `(x / 255 - mean) / std` per RGB channel.
    MeanStd { mean: [f32; 3], std: [f32; 3] },
}

pub const IMAGENET: Normalize = Normalize::MeanStd { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] };

/// Where the original image sits in the model input: `input = original * scale + pad`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Geometry {
    pub scale_x: f32,
    pub scale_y: f32,
    pub pad_x: f32,
    pub pad_y: f32,
    pub src_width: u32,
    pub src_height: u32,
}

impl Geometry {
    /// Maps a point in model-input pixels to original-image pixels, clamped to the image.
    pub fn to_source(&self, x: f32, y: f32) -> (f32, f32) {
        let sx = ((x - self.pad_x) / self.scale_x).clamp(0.0, self.src_width as f32);
        let sy = ((y - self.pad_y) / self.scale_y).clamp(0.0, self.src_height as f32);
        (sx, sy)
    }
}

/// Computes the geometry of fitting `src` into `dst` (Ultralytics' letterbox rounding).
pub fn geometry(src_w: u32, src_h: u32, dst_w: u32, dst_h: u32, resize: Resize) -> Geometry {
    match resize {
        Resize::Stretch => Geometry {
            scale_x: dst_w as f32 / src_w as f32,
            scale_y: dst_h as f32 / src_h as f32,
            pad_x: 0.0,
            pad_y: 0.0,
            src_width: src_w,
            src_height: src_h,
        },
        Resize::Letterbox { .. } => {
            let r = (dst_w as f32 / src_w as f32).min(dst_h as f32 / src_h as f32);
            let (new_w, new_h) = scaled_size(src_w, src_h, r);
            let dw = (dst_w - new_w) as f32 / 2.0;
            let dh = (dst_h - new_h) as f32 / 2.0;
            Geometry {
                scale_x: new_w as f32 / src_w as f32,
                scale_y: new_h as f32 / src_h as f32,
                pad_x: (dw - 0.1).round().max(0.0),
                pad_y: (dh - 0.1).round().max(0.0),
                src_width: src_w,
                src_height: src_h,
            }
        }
    }
}

fn scaled_size(src_w: u32, src_h: u32, r: f32) -> (u32, u32) {
    (((src_w as f32 * r).round() as u32).max(1), ((src_h as f32 * r).round() as u32).max(1))
}

/// Reusable buffers so a steady stream of frames allocates nothing after the first.
pub struct Preprocessor {
    resizer: Resizer,
    resized: Vec<u8>,
    canvas: Vec<u8>,
}

impl Default for Preprocessor {
    fn default() -> Self {
        Preprocessor { resizer: Resizer::new(), resized: Vec::new(), canvas: Vec::new() }
    }
}

impl Preprocessor {
    /// Fills `out` with the `[1, 3, dst_h, dst_w]` input for `img`.
    pub fn run(
        &mut self,
        img: &RgbImage,
        dst_w: u32,
        dst_h: u32,
        resize: Resize,
        norm: Normalize,
        out: &mut Vec<f32>,
    ) -> anyhow::Result<Geometry> {
        let g = geometry(img.width, img.height, dst_w, dst_h, resize);
        let (new_w, new_h) = match resize {
            Resize::Stretch => (dst_w, dst_h),
            Resize::Letterbox { .. } => (
                ((img.width as f32 * g.scale_x).round() as u32).max(1),
                ((img.height as f32 * g.scale_y).round() as u32).max(1),
            ),
        };
        self.resize_into(img, new_w, new_h)?;
        let pad = match resize {
            Resize::Letterbox { pad } => pad,
            Resize::Stretch => 0,
        };
        self.canvas.clear();
        self.canvas.resize(dst_w as usize * dst_h as usize * 3, pad);
        let (px, py) = (g.pad_x as usize, g.pad_y as usize);
        for row in 0..new_h as usize {
            let src = &self.resized[row * new_w as usize * 3..(row + 1) * new_w as usize * 3];
            let start = ((row + py) * dst_w as usize + px) * 3;
            self.canvas[start..start + src.len()].copy_from_slice(src);
        }
        to_nchw(&self.canvas, dst_w, dst_h, norm, out);
        Ok(g)
    }

    fn resize_into(&mut self, img: &RgbImage, w: u32, h: u32) -> anyhow::Result<()> {
        if (w, h) == (img.width, img.height) {
            self.resized.clear();
            self.resized.extend_from_slice(&img.data);
            return Ok(());
        }
        let src = ImageRef::new(img.width, img.height, &img.data, PixelType::U8x3)
            .map_err(|e| anyhow::anyhow!("resize source: {e}"))?;
        let mut buf = std::mem::take(&mut self.resized);
        buf.clear();
        buf.resize(w as usize * h as usize * 3, 0);
        let mut dst = Image::from_vec_u8(w, h, buf, PixelType::U8x3).map_err(|e| anyhow::anyhow!("resize target: {e}"))?;
        // Fixed-kernel bilinear, as OpenCV's INTER_LINEAR (what the reference pipelines use).
        let options = ResizeOptions::new().resize_alg(ResizeAlg::Interpolation(FilterType::Bilinear));
        self.resizer.resize(&src, &mut dst, &options).map_err(|e| anyhow::anyhow!("resize: {e}"))?;
        self.resized = dst.into_vec();
        Ok(())
    }
}

fn to_nchw(rgb: &[u8], w: u32, h: u32, norm: Normalize, out: &mut Vec<f32>) {
    let plane = w as usize * h as usize;
    out.clear();
    out.resize(plane * 3, 0.0);
    let (scale, offset): ([f32; 3], [f32; 3]) = match norm {
        Normalize::Unit => ([1.0 / 255.0; 3], [0.0; 3]),
        Normalize::Raw => ([1.0; 3], [0.0; 3]),
        Normalize::MeanStd { mean, std } => (
            [1.0 / (255.0 * std[0]), 1.0 / (255.0 * std[1]), 1.0 / (255.0 * std[2])],
            [-mean[0] / std[0], -mean[1] / std[1], -mean[2] / std[2]],
        ),
    };
    let (r, rest) = out.split_at_mut(plane);
    let (g, b) = rest.split_at_mut(plane);
    for (i, px) in rgb.chunks_exact(3).enumerate() {
        r[i] = px[0] as f32 * scale[0] + offset[0];
        g[i] = px[1] as f32 * scale[1] + offset[1];
        b[i] = px[2] as f32 * scale[2] + offset[2];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letterbox_of_a_wide_image_pads_top_and_bottom() {
        let g = geometry(1280, 720, 640, 640, Resize::Letterbox { pad: 114 });
        assert_eq!((g.scale_x, g.scale_y), (0.5, 0.5));
        assert_eq!((g.pad_x, g.pad_y), (0.0, 140.0));
    }

    #[test]
    fn letterbox_round_trip_on_non_square_images() {
        for (w, h) in [(451u32, 300u32), (300, 451), (600, 400), (384, 191), (1, 1000)] {
            let g = geometry(w, h, 640, 640, Resize::Letterbox { pad: 114 });
            for (x, y) in [(0.0f32, 0.0f32), (w as f32, h as f32), (w as f32 * 0.3, h as f32 * 0.7)] {
                let (ix, iy) = (x * g.scale_x + g.pad_x, y * g.scale_y + g.pad_y);
                assert!(ix <= 640.0 + 1e-3 && iy <= 640.0 + 1e-3, "{w}x{h}: inside the input");
                let (sx, sy) = g.to_source(ix, iy);
                assert!((sx - x).abs() < 1e-3 && (sy - y).abs() < 1e-3, "{w}x{h}: ({x},{y}) -> ({sx},{sy})");
            }
        }
    }

    #[test]
    fn padding_and_content_land_where_the_geometry_says() {
        let img = RgbImage::new(4, 2, vec![200; 4 * 2 * 3]);
        let mut pre = Preprocessor::default();
        let mut out = Vec::new();
        let g = pre.run(&img, 8, 8, Resize::Letterbox { pad: 114 }, Normalize::Raw, &mut out).unwrap();
        assert_eq!((g.pad_x, g.pad_y, g.scale_x), (0.0, 2.0, 2.0));
        let at = |c: usize, y: usize, x: usize| out[c * 64 + y * 8 + x];
        assert_eq!(at(0, 0, 0), 114.0, "top padding");
        assert_eq!(at(1, 2, 3), 200.0, "content starts at row pad_y");
        assert_eq!(at(2, 6, 7), 114.0, "bottom padding");
    }

    #[test]
    fn normalisations() {
        let mut out = Vec::new();
        to_nchw(&[255, 0, 51], 1, 1, Normalize::Unit, &mut out);
        assert!(out.iter().zip([1.0, 0.0, 0.2]).all(|(a, b)| (a - b).abs() < 1e-6), "{out:?}");
        to_nchw(&[255, 0, 51], 1, 1, IMAGENET, &mut out);
        assert!((out[0] - (1.0 - 0.485) / 0.229).abs() < 1e-5);
        assert!((out[1] - (-0.456 / 0.224)).abs() < 1e-5);
    }
}
