//! Annotated frames: boxes and labels drawn onto the RGB frame with embedded-graphics (a
//! `DrawTarget` over the frame buffer), saved as JPEG. `latest.jpg` is replaced atomically (write
//! then rename) at most every `latest_interval`, sparing the flash; numbered snapshots every N
//! frames rotate, keeping the newest `keep`.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use embedded_graphics::mono_font::{ascii, MonoFont, MonoTextStyle};
use embedded_graphics::pixelcolor::Rgb888;
use embedded_graphics::prelude::*;
use embedded_graphics::primitives::{
    PrimitiveStyle, PrimitiveStyleBuilder, Rectangle, StrokeAlignment,
};
use embedded_graphics::text::{Baseline, Text};

use super::{Output, Sink};
use crate::config;
use crate::detector::Response;
use crate::vision::image::RgbImage;

/// Box colours by class id (high-contrast, colour-blind-friendlier first entries).
pub const PALETTE: [[u8; 3]; 10] = [
    [255, 56, 56],
    [0, 194, 255],
    [255, 178, 29],
    [72, 249, 10],
    [146, 204, 23],
    [61, 219, 134],
    [26, 147, 52],
    [0, 212, 187],
    [44, 153, 168],
    [255, 149, 200],
];

/// An `RgbImage` as an embedded-graphics canvas; pixels outside it are clipped.
struct Canvas<'a>(&'a mut RgbImage);

impl OriginDimensions for Canvas<'_> {
    fn size(&self) -> Size {
        Size::new(self.0.width, self.0.height)
    }
}

impl DrawTarget for Canvas<'_> {
    type Color = Rgb888;
    type Error = Infallible;

    fn draw_iter<I: IntoIterator<Item = Pixel<Rgb888>>>(
        &mut self,
        pixels: I,
    ) -> Result<(), Infallible> {
        let (w, h) = (self.0.width as i32, self.0.height as i32);
        for Pixel(p, c) in pixels {
            if (0..w).contains(&p.x) && (0..h).contains(&p.y) {
                let i = (p.y as usize * w as usize + p.x as usize) * 3;
                self.0.data[i..i + 3].copy_from_slice(&[c.r(), c.g(), c.b()]);
            }
        }
        Ok(())
    }
}

fn font_for(height: u32) -> &'static MonoFont<'static> {
    match height {
        0..=399 => &ascii::FONT_6X13,
        400..=899 => &ascii::FONT_9X15,
        _ => &ascii::FONT_10X20,
    }
}

/// Box line width for an image: thick enough to survive JPEG chroma subsampling.
pub fn line_width(img: &RgbImage) -> u32 {
    (img.width.min(img.height) / 160).max(3)
}

/// Draws each predicted box (inside its edges) and a `class 0.87` label above it.
pub fn draw_predictions(img: &mut RgbImage, response: &Response) {
    let Response::Detection(det) = response else {
        return;
    };
    let stroke = line_width(img);
    let font = font_for(img.height);
    let mut canvas = Canvas(img);
    for p in &det.predictions {
        let [r, g, b] = PALETTE[p.class_id as usize % PALETTE.len()];
        let colour = Rgb888::new(r, g, b);
        let x1 = (p.x - p.width / 2.0).round() as i32;
        let y1 = (p.y - p.height / 2.0).round() as i32;
        let x2 = (p.x + p.width / 2.0).round() as i32;
        let y2 = (p.y + p.height / 2.0).round() as i32;
        let style = PrimitiveStyleBuilder::new()
            .stroke_color(colour)
            .stroke_width(stroke)
            .stroke_alignment(StrokeAlignment::Inside)
            .build();
        let _ = Rectangle::with_corners(Point::new(x1, y1), Point::new(x2, y2))
            .into_styled(style)
            .draw(&mut canvas);

        let label = format!("{} {:.2}", p.class, p.confidence);
        let (cw, ch) = (
            font.character_size.width as i32,
            font.character_size.height as i32,
        );
        let label_w = cw * label.len() as i32 + 4;
        // Above the box when there is room, else just inside its top edge.
        let top = if y1 - ch - 2 >= 0 { y1 - ch - 2 } else { y1 };
        let background = Rectangle::new(
            Point::new(x1, top),
            Size::new(label_w as u32, (ch + 2) as u32),
        );
        let _ = background
            .into_styled(PrimitiveStyle::with_fill(colour))
            .draw(&mut canvas);
        // Dark text on light colours, white on dark ones.
        let luma = (r as u32 * 299 + g as u32 * 587 + b as u32 * 114) / 1000;
        let ink = if luma > 140 {
            Rgb888::BLACK
        } else {
            Rgb888::WHITE
        };
        let _ = Text::with_baseline(
            &label,
            Point::new(x1 + 2, top + 1),
            MonoTextStyle::new(font, ink),
            Baseline::Top,
        )
        .draw(&mut canvas);
    }
}

pub struct Annotate {
    cfg: config::Annotate,
    canvas: RgbImage,
    jpeg: Vec<u8>,
    last_latest: Option<Instant>,
    snapshots: VecDeque<PathBuf>,
}

impl Annotate {
    pub fn open(cfg: &config::Annotate) -> anyhow::Result<Annotate> {
        std::fs::create_dir_all(&cfg.dir).map_err(|e| {
            anyhow::anyhow!(
                "sinks.annotate.dir: cannot create {}: {e}",
                cfg.dir.display()
            )
        })?;
        crate::storage::check_writable(&cfg.dir).map_err(|e| {
            anyhow::anyhow!(
                "sinks.annotate.dir: {} is not writable: {e}",
                cfg.dir.display()
            )
        })?;
        // Snapshots of earlier runs count towards `keep`, oldest first.
        let mut existing: Vec<PathBuf> = std::fs::read_dir(&cfg.dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("frame-") && n.ends_with(".jpg"))
            })
            .collect();
        existing.sort();
        log::info!(
            "annotate sink: {} (latest.jpg{})",
            cfg.dir.display(),
            if cfg.every > 0 {
                format!(
                    ", a snapshot every {} frames, keeping {}",
                    cfg.every, cfg.keep
                )
            } else {
                String::new()
            }
        );
        Ok(Annotate {
            cfg: cfg.clone(),
            canvas: RgbImage::new(0, 0, Vec::new()),
            jpeg: Vec::new(),
            last_latest: None,
            snapshots: existing.into(),
        })
    }

    fn save(&mut self, name: &str) -> anyhow::Result<PathBuf> {
        let path = self.cfg.dir.join(name);
        let tmp = self.cfg.dir.join(format!(".{name}.tmp"));
        let written = std::fs::write(&tmp, &self.jpeg)
            .map_err(|e| anyhow::anyhow!("{}: {e}", tmp.display()))
            .and_then(|()| std::fs::rename(&tmp, &path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display())));
        if written.is_err() {
            // A full disk must not leave a growing litter of partial files behind.
            remove_quietly(&tmp);
        }
        written.map(|()| path)
    }
}

/// `img` as a JPEG of `quality` into `out` (replacing what it held).
pub fn encode(img: &RgbImage, quality: u8, out: &mut Vec<u8>) -> anyhow::Result<()> {
    out.clear();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut *out, quality)
        .encode(
            &img.data,
            img.width,
            img.height,
            image::ExtendedColorType::Rgb8,
        )
        .map_err(|e| anyhow::anyhow!("JPEG encoding: {e}"))
}

impl Sink for Annotate {
    fn name(&self) -> &'static str {
        "annotate"
    }

    fn write(&mut self, out: &Output<'_>) -> anyhow::Result<()> {
        let latest_due = self
            .last_latest
            .is_none_or(|t| t.elapsed() >= self.cfg.latest_interval);
        let snapshot_due =
            self.cfg.every > 0 && self.cfg.keep > 0 && out.frame_id % self.cfg.every == 0;
        if !latest_due && !snapshot_due {
            return Ok(());
        }
        self.canvas.width = out.image.width;
        self.canvas.height = out.image.height;
        self.canvas.data.clear();
        self.canvas.data.extend_from_slice(&out.image.data);
        draw_predictions(&mut self.canvas, out.response);
        encode(&self.canvas, self.cfg.quality, &mut self.jpeg)?;
        if latest_due {
            self.save("latest.jpg")?;
            self.last_latest = Some(Instant::now());
        }
        if snapshot_due {
            // The wall-clock time leads the name: frame ids start at 1 again after a restart, and
            // a name that repeats would be rotated away the moment it is written.
            let path = self.save(&snapshot_name(SystemTime::now(), out.frame_id))?;
            self.snapshots.push_back(path);
            while self.snapshots.len() > self.cfg.keep {
                if let Some(old) = self.snapshots.pop_front() {
                    remove_quietly(&old);
                }
            }
        }
        Ok(())
    }

    fn flush(&mut self, _deadline: Instant) -> anyhow::Result<()> {
        Ok(())
    }
}

/// `frame-20261127T062700.123Z-0000000012.jpg`: sorts by time, then frame; never repeats.
fn snapshot_name(at: SystemTime, frame_id: u64) -> String {
    let stamp: String = super::rfc3339(at).chars().filter(|c| *c != '-' && *c != ':').collect();
    format!("frame-{stamp}-{frame_id:010}.jpg")
}

fn remove_quietly(path: &Path) {
    if let Err(e) = std::fs::remove_file(path) {
        log::debug!("{}: {e}", path.display());
    }
}
