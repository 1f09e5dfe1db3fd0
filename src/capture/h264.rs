//! H.264 decoding for RTSP cameras and video files: Annex B access units in, YUV pictures out
//! (converted to RGB only if the model takes them, see `Frame::rgb`),
//! through Cisco's OpenH264 (bundled source, built statically). All of the `openh264` crate's API
//! stays in this file.
//!
//! Decoding starts at a keyframe and, after packet loss or a decode error, starts over at the next
//! one: the frames in between would be grey smears built on missing references, and a model
//! must not see them. OpenH264's own error concealment is off for the same reason.

use openh264::decoder::{DecodedYUV, Decoder, DecoderConfig, Flush};
use openh264::formats::YUVSource;
use openh264::OpenH264API;

use super::convert::{self, Yuv420};
use crate::vision::image::RgbImage;

/// What one access unit gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// `out` holds a new picture (pending conversion).
    Picture,
    /// The decoder needs more data (reordering delay, parameter sets only).
    Pending,
    /// Dropped while waiting for a keyframe.
    Skipped,
}

pub struct H264 {
    decoder: Decoder,
    waiting_for_keyframe: bool,
    /// Access units dropped while waiting for a keyframe.
    pub skipped: u64,
}

impl H264 {
    pub fn new() -> anyhow::Result<H264> {
        // No flush after each access unit: flushing early breaks B-frame reordering (pictures go
        // missing). The end of a file is flushed explicitly by `finish`.
        let config = DecoderConfig::new().flush_after_decode(Flush::NoFlush);
        let decoder = Decoder::with_api_config(OpenH264API::from_source(), config)
            .map_err(|e| anyhow::anyhow!("cannot start the H.264 decoder: {e}"))?;
        Ok(H264 {
            decoder,
            waiting_for_keyframe: true,
            skipped: 0,
        })
    }

    /// After packet loss or a reconnect: drop access units until the next keyframe.
    pub fn resync(&mut self) {
        self.waiting_for_keyframe = true;
    }

    /// Decodes one access unit (Annex B, parameter sets in-band). `keyframe` says whether it
    /// starts a clean decode (an IDR picture). A decode error resynchronises at the next
    /// keyframe.
    pub fn decode(
        &mut self,
        access_unit: &[u8],
        keyframe: bool,
        out: &mut Yuv420,
    ) -> Result<Decoded, String> {
        if self.waiting_for_keyframe {
            if !keyframe {
                self.skipped += 1;
                return Ok(Decoded::Skipped);
            }
            self.waiting_for_keyframe = false;
        }
        match self.decoder.decode(access_unit) {
            Ok(Some(picture)) => {
                out.store(planes(&picture)).map_err(|e| format!("decoded picture: {e}"))?;
                Ok(Decoded::Picture)
            }
            Ok(None) => Ok(Decoded::Pending),
            Err(e) => {
                self.waiting_for_keyframe = true;
                Err(format!("H.264 decode error: {e}"))
            }
        }
    }

    /// The end of a stream: the pictures still held for reordering, oldest first.
    pub fn finish(&mut self, mut each: impl FnMut(&RgbImage)) -> Result<(), String> {
        let pictures = self
            .decoder
            .flush_remaining()
            .map_err(|e| format!("H.264 decode error at the end of the stream: {e}"))?;
        let mut image = RgbImage::new(0, 0, Vec::new());
        for picture in &pictures {
            convert::i420(planes(picture), &mut image).map_err(|e| format!("decoded picture: {e}"))?;
            each(&image);
        }
        Ok(())
    }
}

fn planes<'a>(picture: &'a DecodedYUV<'_>) -> convert::Planes<'a> {
    let (width, height) = picture.dimensions();
    let (y_stride, u_stride, v_stride) = picture.strides();
    convert::Planes { width, height, y: (picture.y(), y_stride), u: (picture.u(), u_stride), v: (picture.v(), v_stride) }
}

/// Whether an Annex B access unit holds an IDR slice (NAL type 5): where decoding can start.
pub fn has_idr(access_unit: &[u8]) -> bool {
    nal_units(access_unit).any(|nal| nal.first().is_some_and(|b| b & 0x1f == 5))
}

/// The NAL units of an Annex B byte stream (start codes of 3 or 4 bytes), without start codes.
pub fn nal_units(stream: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = stream;
    std::iter::from_fn(move || {
        let start = find_start_code(rest)?;
        let body = &rest[start..];
        let end = find_start_code_at(body).unwrap_or(body.len());
        // A 4-byte start code leaves its leading zero on the previous unit's end.
        let nal = &body[..end];
        let nal = nal.strip_suffix(&[0]).unwrap_or(nal);
        rest = &body[end..];
        Some(nal)
    })
}

/// Offset just past the first start code (00 00 01).
fn find_start_code(data: &[u8]) -> Option<usize> {
    data.windows(3).position(|w| w == [0, 0, 1]).map(|p| p + 3)
}

/// Offset of the next start code (its first zero).
fn find_start_code_at(data: &[u8]) -> Option<usize> {
    data.windows(3).position(|w| w == [0, 0, 1])
}

/// Appends the NAL units of an MP4 sample (big-endian length prefixes of `length_size` bytes) to
/// `out` as Annex B. A length running past the sample is an error (a truncated or corrupt file).
pub fn length_prefixed_to_annex_b(sample: &[u8], length_size: usize, out: &mut Vec<u8>) -> Result<(), String> {
    let mut rest = sample;
    while !rest.is_empty() {
        if rest.len() < length_size {
            return Err(format!("{} trailing byte(s) after the last NAL unit", rest.len()));
        }
        let len = rest[..length_size].iter().fold(0usize, |n, &b| (n << 8) | b as usize);
        rest = &rest[length_size..];
        if len > rest.len() {
            return Err(format!("NAL unit of {len} bytes in {} remaining", rest.len()));
        }
        out.extend_from_slice(&[0, 0, 0, 1]);
        out.extend_from_slice(&rest[..len]);
        rest = &rest[len..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_annex_b_with_both_start_code_lengths() {
        let stream = [0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 4, 5];
        let units: Vec<&[u8]> = nal_units(&stream).collect();
        assert_eq!(units, vec![&[0x67, 1, 2][..], &[0x68, 3][..], &[0x65, 4, 5][..]]);
        assert!(has_idr(&stream));
        assert!(!has_idr(&[0, 0, 1, 0x41, 9]));
        assert_eq!(nal_units(&[1, 2, 3]).count(), 0);
    }

    #[test]
    fn length_prefixed_samples_become_annex_b() {
        let mut out = Vec::new();
        length_prefixed_to_annex_b(&[0, 0, 0, 2, 0x65, 7, 0, 0, 0, 1, 0x06], 4, &mut out).unwrap();
        assert_eq!(out, [0, 0, 0, 1, 0x65, 7, 0, 0, 0, 1, 0x06]);
        let err = length_prefixed_to_annex_b(&[0, 0, 0, 9, 0x65], 4, &mut out).unwrap_err();
        assert!(err.contains("9 bytes"), "{err}");
        assert!(length_prefixed_to_annex_b(&[0, 0], 4, &mut out).is_err());
    }

    #[test]
    fn garbage_never_panics_and_waits_for_a_keyframe() {
        let mut decoder = H264::new().unwrap();
        let mut out = Yuv420::default();
        assert_eq!(decoder.decode(&[0, 0, 1, 0x41, 1, 2, 3], false, &mut out), Ok(Decoded::Skipped));
        // Deterministic noise shaped like NAL units: errors or nothing, never a crash.
        let mut x = 0x1234_5678u32;
        for round in 0..200 {
            let mut au = vec![0, 0, 0, 1, if round % 3 == 0 { 0x67 } else { 0x65 }];
            for _ in 0..(round * 7 % 300) {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                au.push(x as u8);
            }
            let _ = decoder.decode(&au, true, &mut out);
        }
    }
}
