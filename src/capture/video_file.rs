//! H.264 video files as a frame source: MP4 (read by [`super::mp4_demux`]) or a raw Annex B stream
//! (`.h264`/`.264`). Paced at the video's own frame rate (`run.realtime = true`, then it behaves
//! like a camera: frames inference cannot take are dropped) or as fast as the pipeline takes them
//! (batch processing of recordings, nothing dropped). `seq` counts pictures in presentation order
//! and `captured_at` follows the video's timeline from the moment the file was opened.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use super::h264::{self, Decoded, H264};
use super::mp4_demux::{self, Problem};
use super::mp4_samples::{Cursor, SampleTable};
use super::{Frame, FrameError, Next, Source};
use crate::vision::image::RgbImage;

/// Raw H.264 streams carry no container timing: their pictures are paced at this rate.
const RAW_STREAM_FPS: u32 = 25;

pub struct VideoFile {
    name: String,
    path: PathBuf,
    demuxer: Demuxer,
    decoder: H264,
    realtime: bool,
    looped: bool,
    seq: u64,
    /// Presentation times (in `timescale` units) of samples given to the decoder and not yet
    /// output: pictures come out in presentation order, so the smallest is the next picture's.
    pending_pts: BinaryHeap<Reverse<u64>>,
    /// Pictures flushed from the decoder at the end of the file.
    flushed: VecDeque<RgbImage>,
    ended: bool,
    /// Media time of the loops already played.
    loop_offset: Duration,
    opened: (Instant, SystemTime),
    access_unit: Vec<u8>,
}

enum Demuxer {
    Mp4 {
        file: File,
        table: SampleTable,
        cursor: Cursor,
        width: u32,
        height: u32,
        timescale: u32,
        length_size: usize,
        /// SPS and PPS as Annex B, sent before every sync sample.
        parameter_sets: Vec<u8>,
        /// The sample being read, length-prefixed as the file holds it.
        sample: Vec<u8>,
        /// End of the last sample (decode time), for the loop offset.
        end: u64,
    },
    AnnexB {
        data: Vec<u8>,
        units: Vec<(usize, usize)>,
        next: usize,
    },
}

impl VideoFile {
    pub fn open(path: PathBuf, realtime: bool, looped: bool) -> anyhow::Result<VideoFile> {
        let shown = path.display().to_string();
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
        let demuxer = match ext.as_str() {
            "mp4" | "m4v" | "mov" => open_mp4(&path)?,
            "h264" | "264" => open_annex_b(&path)?,
            other => anyhow::bail!(
                "run.source: {shown}: .{other} files are not read; remux to MP4 without re-encoding: \
                 ffmpeg -i {shown} -c copy -an clip.mp4"
            ),
        };
        let mut file = VideoFile {
            name: format!("file:{shown}"),
            path,
            demuxer,
            decoder: H264::new()?,
            realtime,
            looped,
            seq: 0,
            pending_pts: BinaryHeap::new(),
            flushed: VecDeque::new(),
            ended: false,
            loop_offset: Duration::ZERO,
            opened: (Instant::now(), SystemTime::now()),
            access_unit: Vec::new(),
        };
        log::info!(
            "source {}: {}{}{}",
            file.name,
            file.describe(),
            if realtime { ", paced at its frame rate" } else { ", as fast as inference takes it" },
            if looped { ", looping" } else { "" }
        );
        // The time base starts at the first frame, not at the (slow) model load before it.
        file.opened = (Instant::now(), SystemTime::now());
        Ok(file)
    }

    fn describe(&self) -> String {
        match &self.demuxer {
            Demuxer::Mp4 { table, width, height, .. } => {
                format!("MP4 H.264 {width}x{height}, {} frames", table.count())
            }
            Demuxer::AnnexB { units, .. } => {
                format!("raw H.264, {} access units at {RAW_STREAM_FPS} fps", units.len())
            }
        }
    }

    fn timescale(&self) -> u32 {
        match &self.demuxer {
            Demuxer::Mp4 { timescale, .. } => *timescale,
            Demuxer::AnnexB { .. } => RAW_STREAM_FPS,
        }
    }

    /// The next access unit into `self.access_unit`: (presentation time, keyframe), or `None` at
    /// the end of the file.
    fn read_access_unit(&mut self) -> Result<Option<(u64, bool)>, String> {
        self.access_unit.clear();
        match &mut self.demuxer {
            Demuxer::Mp4 { file, table, cursor, length_size, parameter_sets, sample, end, .. } => {
                let Some(at) = table.next(cursor)? else {
                    return Ok(None);
                };
                sample.resize(at.size as usize, 0);
                file.seek(SeekFrom::Start(at.offset))
                    .and_then(|_| file.read_exact(sample))
                    .map_err(|e| format!("reading {} bytes at byte {}: {e}", at.size, at.offset))?;
                if at.sync {
                    self.access_unit.extend_from_slice(parameter_sets);
                }
                h264::length_prefixed_to_annex_b(sample, *length_size, &mut self.access_unit)
                    .map_err(|e| format!("sample at byte {}: {e}", at.offset))?;
                *end = at.start.saturating_add(u64::from(at.duration));
                let pts = at.start.saturating_add_signed(i64::from(at.rendering_offset));
                Ok(Some((pts, at.sync)))
            }
            Demuxer::AnnexB { data, units, next } => {
                let Some(&(start, stop)) = units.get(*next) else {
                    return Ok(None);
                };
                let index = *next as u64;
                *next += 1;
                self.access_unit.extend_from_slice(&data[start..stop]);
                Ok(Some((index, h264::has_idr(&self.access_unit))))
            }
        }
    }

    fn rewind(&mut self) -> anyhow::Result<()> {
        let played = match &mut self.demuxer {
            Demuxer::Mp4 { table, cursor, end, timescale, .. } => {
                *cursor = table.cursor();
                Duration::from_secs_f64(*end as f64 / *timescale as f64)
            }
            Demuxer::AnnexB { next, units, .. } => {
                *next = 0;
                Duration::from_secs_f64(units.len() as f64 / RAW_STREAM_FPS as f64)
            }
        };
        self.loop_offset += played;
        self.decoder = H264::new()?;
        self.pending_pts.clear();
        self.ended = false;
        Ok(())
    }

    /// Fills `frame` with a decoded picture and its place on the video's timeline, pacing it.
    fn deliver(&mut self, frame: &mut Frame, read: Duration, decode: Duration) -> Next {
        let pts = self.pending_pts.pop().map_or(0, |Reverse(p)| p);
        let media_time = self.loop_offset + Duration::from_secs_f64(pts as f64 / self.timescale() as f64);
        if self.realtime {
            let due = self.opened.0 + media_time;
            let now = Instant::now();
            if due > now {
                std::thread::sleep((due - now).min(Duration::from_secs(2)));
            }
        }
        self.seq += 1;
        frame.seq = self.seq;
        frame.captured_at = self.opened.1 + media_time;
        frame.capture = read;
        frame.convert = decode;
        Next::Frame
    }
}

impl Source for VideoFile {
    fn name(&self) -> &str {
        &self.name
    }

    fn is_live(&self) -> bool {
        self.realtime
    }

    fn next(&mut self, frame: &mut Frame) -> anyhow::Result<Next> {
        loop {
            if let Some(picture) = self.flushed.pop_front() {
                frame.image = picture;
                frame.yuv.pending = false;
                return Ok(self.deliver(frame, Duration::ZERO, Duration::ZERO));
            }
            if self.ended {
                if !self.looped {
                    return Ok(Next::End);
                }
                self.rewind()?;
            }
            let reading = Instant::now();
            let unit = self.read_access_unit().map_err(|e| {
                // A broken container is not a bad frame: nothing after it can be trusted.
                anyhow::anyhow!("{}: {e}", self.path.display())
            });
            let (pts, keyframe) = match unit {
                Ok(Some(unit)) => unit,
                Ok(None) => {
                    self.ended = true;
                    let flushed = &mut self.flushed;
                    self.decoder
                        .finish(|picture| flushed.push_back(picture.clone()))
                        .map_err(|e| FrameError(format!("{}: {e}", self.path.display())))?;
                    continue;
                }
                Err(e) => {
                    self.ended = true;
                    return Err(e);
                }
            };
            let read = reading.elapsed();
            let decoding = Instant::now();
            match self.decoder.decode(&self.access_unit, keyframe, &mut frame.yuv) {
                Ok(Decoded::Picture) => {
                    self.pending_pts.push(Reverse(pts));
                    return Ok(self.deliver(frame, read, decoding.elapsed()));
                }
                Ok(Decoded::Pending) => self.pending_pts.push(Reverse(pts)),
                Ok(Decoded::Skipped) => {}
                Err(e) => return Err(FrameError(format!("{}: {e}", self.path.display())).into()),
            }
        }
    }
}

fn open_mp4(path: &Path) -> anyhow::Result<Demuxer> {
    let shown = path.display();
    let mut file = File::open(path).map_err(|e| anyhow::anyhow!("run.source: cannot open video file {shown}: {e}"))?;
    let size = file.metadata()?.len();
    let unreadable = |e: String| {
        anyhow::anyhow!("run.source: {shown} is not a readable MP4 file ({e}); if ffmpeg can still play it, remux it: ffmpeg -i {shown} -c copy -an clip.mp4")
    };
    let video = match mp4_demux::read_video(&mut file, size) {
        Ok(video) => video,
        Err(Problem::Damaged(e)) => return Err(unreadable(e)),
        Err(Problem::NoVideo) => anyhow::bail!("run.source: {shown} has no video track"),
        Err(Problem::H265) => {
            anyhow::bail!("{}", super::H265_UNSUPPORTED.replace("{what}", &format!("{shown} is H.265")))
        }
        Err(Problem::OtherCodec(codec)) => anyhow::bail!(
            "run.source: {shown}: its video is `{codec}`, not H.264 (outpost decodes H.264 only); convert it: ffmpeg -i {shown} -c:v libx264 clip.mp4"
        ),
    };
    let table = SampleTable::new(video.tables, size).map_err(unreadable)?;
    if video.timescale == 0 || table.count() == 0 {
        anyhow::bail!("run.source: {shown}: the video track has no samples (or no time scale)");
    }
    let mut parameter_sets = Vec::new();
    for nal in &video.parameter_sets {
        parameter_sets.extend_from_slice(&[0, 0, 0, 1]);
        parameter_sets.extend_from_slice(nal);
    }
    Ok(Demuxer::Mp4 {
        file,
        cursor: table.cursor(),
        table,
        width: video.width,
        height: video.height,
        timescale: video.timescale,
        length_size: video.length_size,
        parameter_sets,
        sample: Vec::new(),
        end: 0,
    })
}

fn open_annex_b(path: &Path) -> anyhow::Result<Demuxer> {
    let shown = path.display();
    let data = std::fs::read(path).map_err(|e| anyhow::anyhow!("run.source: cannot read video file {shown}: {e}"))?;
    let units = access_units(&data);
    if units.is_empty() {
        anyhow::bail!("run.source: {shown} holds no H.264 access units (not an Annex B stream)");
    }
    Ok(Demuxer::AnnexB { data, units, next: 0 })
}

/// Access unit boundaries (byte ranges, start codes included) of an Annex B stream: a new unit
/// starts at an access unit delimiter, SEI, SPS or PPS after a picture's slices, or at a slice
/// whose first macroblock is 0 (H.264 7.4.1.2.3, simplified to what encoders emit).
fn access_units(data: &[u8]) -> Vec<(usize, usize)> {
    let mut units = Vec::new();
    let mut start = None;
    let mut seen_slice = false;
    for nal in h264::nal_units(data) {
        let offset = nal.as_ptr() as usize - data.as_ptr() as usize;
        // Include the start code before it: its 01 and up to three zeros.
        let zeros = data[..offset - 1].iter().rev().take_while(|&&b| b == 0).count().min(3);
        let begin = offset - 1 - zeros;
        let kind = nal.first().map_or(0, |b| b & 0x1f);
        let is_slice = kind == 1 || kind == 5;
        let first_mb_zero = nal.get(1).is_some_and(|b| b & 0x80 != 0);
        let boundary = seen_slice && (matches!(kind, 6..=9) || (is_slice && first_mb_zero));
        if boundary {
            if let Some(s) = start {
                units.push((s, begin));
            }
            start = Some(begin);
            seen_slice = false;
        }
        start.get_or_insert(begin);
        seen_slice |= is_slice;
    }
    if let Some(s) = start {
        units.push((s, data.len()));
    }
    units
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annex_b_access_units_split_at_new_pictures_and_parameter_sets() {
        let stream = [
            0, 0, 0, 1, 0x67, 9, // SPS
            0, 0, 0, 1, 0x68, 9, // PPS
            0, 0, 1, 0x65, 0x88, 1, // IDR slice, first_mb = 0
            0, 0, 1, 0x65, 0x20, 2, // IDR slice of the same picture (first_mb != 0)
            0, 0, 1, 0x41, 0x9a, 3, // next picture
            0, 0, 0, 1, 0x67, 9, // SPS: a new unit
            0, 0, 1, 0x65, 0x88, 4,
        ];
        let units = access_units(&stream);
        assert_eq!(units, vec![(0, 24), (24, 30), (30, stream.len())]);
        assert!(h264::has_idr(&stream[units[0].0..units[0].1]));
        assert!(!h264::has_idr(&stream[units[1].0..units[1].1]));
    }

    #[test]
    fn unknown_containers_and_missing_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let mkv = dir.path().join("clip.mkv");
        std::fs::write(&mkv, b"x").unwrap();
        let err = VideoFile::open(mkv, true, false).err().unwrap().to_string();
        assert!(err.contains("ffmpeg -i") && err.contains("clip.mkv"), "{err}");
        let text = dir.path().join("notes.mp4");
        std::fs::write(&text, b"this is not a video at all").unwrap();
        let err = VideoFile::open(text, true, false).err().unwrap().to_string();
        assert!(err.contains("notes.mp4") && err.contains("not a readable MP4"), "{err}");
        // The CI crash of the fuzz target: a time-to-sample table shorter than the track.
        let short = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/regressions/video_file/crash-stts-shorter-than-track.mp4");
        let err = VideoFile::open(short.into(), false, false).err().unwrap().to_string();
        assert!(err.contains("time-to-sample table covers 1 of 3 samples") && err.contains("ffmpeg"), "{err}");
        let raw = dir.path().join("empty.h264");
        std::fs::write(&raw, [1, 2, 3]).unwrap();
        let err = VideoFile::open(raw, true, false).err().unwrap().to_string();
        assert!(err.contains("no H.264 access units"), "{err}");
    }
}
