//! `outpost decode`: reads and decodes `run.source` with no model, one line per frame (frame id,
//! size, FNV-1a checksum of the RGB pixels) and a rate at the end. It answers "does this camera
//! or clip work, and how fast does it decode", and its checksums show that the static aarch64
//! binary decodes bit-identically to x86_64.

use std::time::Instant;

use crate::capture::{Frame, FrameError, Next};
use crate::cli::Global;

pub fn run(global: &Global) -> anyhow::Result<()> {
    let mut config = super::load_config(global)?.config;
    // A check decodes as fast as it can: video files are not paced.
    config.run.realtime = false;
    let mut source = crate::capture::open(&config)?;
    let limit = config.run.frames;
    let mut frame = Frame::default();
    let (mut frames, mut errors) = (0u64, 0u64);
    let started = Instant::now();
    while limit == 0 || frames < limit {
        match source.next(&mut frame) {
            Ok(Next::Frame) => {
                frame.rgb()?;
                frames += 1;
                outln!(
                    "{} {}x{} {:016x}",
                    frame.seq,
                    frame.image.width,
                    frame.image.height,
                    fnv1a(&frame.image.data)
                )?;
            }
            Ok(Next::Idle) => {}
            Ok(Next::End) => break,
            Err(e) if e.downcast_ref::<FrameError>().is_some() => {
                errors += 1;
                log::warn!("skipping a frame: {e:#}");
            }
            // A camera that fails is reported, not reconnected: this is a check, not a service.
            Err(e) => return Err(e),
        }
    }
    let secs = started.elapsed().as_secs_f64();
    log::info!(
        "decoded {frames} frame(s) from {} in {secs:.2}s ({:.1} frames/s), {errors} error(s)",
        source.name(),
        frames as f64 / secs.max(1e-9)
    );
    Ok(())
}

/// FNV-1a over 8-byte words (then the tail bytes): a checksum, not a hash table key; word-wise
/// so that checking a 1080p stream costs about 1 ms per frame, not 8.
fn fnv1a(data: &[u8]) -> u64 {
    let step = |h: u64, word: u64| (h ^ word).wrapping_mul(0x0100_0000_01b3);
    let words = data.chunks_exact(8);
    let tail = words.remainder();
    let h = words.fold(0xcbf2_9ce4_8422_2325u64, |h, w| step(h, u64::from_le_bytes(w.try_into().unwrap_or([0; 8]))));
    tail.iter().fold(h, |h, &b| step(h, b as u64))
}
