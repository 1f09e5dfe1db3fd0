//! An MP4 file (ISO/IEC 14496-12) read for its H.264 video track: the top-level boxes walked with
//! every size checked, the `moov` box read into memory (bounded) and parsed from a slice, so a
//! damaged or hostile file is an error naming what is wrong, never a panic, a hang or a huge
//! allocation. The samples themselves are located by [`super::mp4_samples`].
//!
//! This replaced the `mp4` crate (0.14), which the `video_file` fuzz target kept catching out:
//! it looped forever on boxes of size 0, divided by zero on empty sample-to-chunk entries,
//! unwrapped a short time-to-sample table and underflowed on a `data` box smaller than its
//! fields (a panic is an abort in the release build: a bad recording stopped the appliance).
//! Only what outpost uses is read: the first video track's codec, H.264 configuration, time
//! scale and sample tables; edit lists and metadata are skipped.

use std::io::{Read, Seek, SeekFrom};

use super::mp4_samples::Tables;

/// The largest `moov` read: its sample tables grow with the recording (about 12 bytes a frame
/// for a plain H.264 file: a day at 30 fps is ~30 MiB).
const MAX_MOOV_BYTES: u64 = 128 << 20;

/// The video track, as far as outpost needs it.
#[derive(Debug)]
pub struct Video {
    pub width: u32,
    pub height: u32,
    pub timescale: u32,
    /// Bytes of the length before each NAL unit in a sample (1, 2 or 4).
    pub length_size: usize,
    /// SPS then PPS NAL units, without start codes.
    pub parameter_sets: Vec<Vec<u8>>,
    pub tables: Tables,
}

/// Why the file gives no H.264 video.
#[derive(Debug, PartialEq, Eq)]
pub enum Problem {
    /// Not a well-formed MP4 file: what is wrong, and where.
    Damaged(String),
    NoVideo,
    H265,
    /// Another codec, by its sample entry's four characters.
    OtherCodec(String),
}

impl From<String> for Problem {
    fn from(e: String) -> Problem {
        Problem::Damaged(e)
    }
}

/// Reads the first video track of the MP4 file `file` of `len` bytes.
pub fn read_video<R: Read + Seek>(file: &mut R, len: u64) -> Result<Video, Problem> {
    let moov = find_moov(file, len)?;
    parse_moov(&moov)
}

/// The top level: every box inside the file and at least its header long (a size of 0 runs to
/// the end of the file); `moov` read, `moof` (a fragmented file) refused.
fn find_moov<R: Read + Seek>(file: &mut R, len: u64) -> Result<Vec<u8>, Problem> {
    let mut at = 0u64;
    let mut moov = None;
    // Fewer than 8 bytes left cannot hold a box: trailing padding, ignored.
    while len - at >= 8 {
        let mut head = [0u8; 16];
        file.seek(SeekFrom::Start(at)).and_then(|_| file.read_exact(&mut head[..8])).map_err(|e| format!("reading byte {at}: {e}"))?;
        let kind = [head[4], head[5], head[6], head[7]];
        let (size, header) = match u32::from_be_bytes([head[0], head[1], head[2], head[3]]) {
            0 => (len - at, 8),
            1 => {
                file.read_exact(&mut head[8..]).map_err(|e| format!("reading byte {}: {e}", at + 8))?;
                (u64::from_be_bytes(head[8..16].try_into().unwrap_or_default()), 16)
            }
            n => (u64::from(n), 8),
        };
        if size < header {
            return Err(format!("box `{}` at byte {at} has size {size}, less than its header", shown(&kind)).into());
        }
        if size > len - at {
            return Err(format!(
                "box `{}` at byte {at} runs past the end of the file ({size} bytes, {} left): the recording is truncated",
                shown(&kind),
                len - at
            )
            .into());
        }
        match &kind {
            b"moov" if moov.is_some() => return Err("it has two `moov` boxes".to_string().into()),
            b"moov" => {
                let body = size - header;
                if body > MAX_MOOV_BYTES {
                    return Err(format!("its `moov` box is {body} bytes, more than the {MAX_MOOV_BYTES} read").into());
                }
                let mut bytes = vec![0u8; body as usize];
                file.read_exact(&mut bytes).map_err(|e| format!("reading `moov` at byte {at}: {e}"))?;
                moov = Some(bytes);
            }
            b"moof" => return Err("it is a fragmented MP4 (`moof` boxes), which is not read".to_string().into()),
            _ => {}
        }
        at += size;
    }
    moov.ok_or_else(|| {
        Problem::Damaged("it has no `moov` box (the index: a recording cut off before it was finished has none)".into())
    })
}

fn parse_moov(moov: &[u8]) -> Result<Video, Problem> {
    for (kind, trak) in boxes(moov, "moov")? {
        if &kind != b"trak" {
            continue;
        }
        let mdia = child(trak, "trak", b"mdia")?;
        let mdia_boxes = boxes(mdia, "mdia")?;
        let hdlr = find(&mdia_boxes, "mdia", b"hdlr")?;
        let mut r = Reader::full_box(hdlr, "hdlr")?;
        r.skip(4)?; // pre_defined
        if r.bytes(4)? != b"vide" {
            continue;
        }
        let mdhd = find(&mdia_boxes, "mdia", b"mdhd")?;
        let mut r = Reader::full_box(mdhd, "mdhd")?;
        r.skip(if r.version == 1 { 16 } else { 8 })?; // creation and modification times
        let timescale = r.u32()?;

        let minf = find(&mdia_boxes, "mdia", b"minf")?;
        let stbl = child(minf, "minf", b"stbl")?;
        return parse_stbl(stbl, timescale);
    }
    Err(Problem::NoVideo)
}

fn parse_stbl(stbl: &[u8], timescale: u32) -> Result<Video, Problem> {
    let list = boxes(stbl, "stbl")?;
    // The codec: the first sample entry.
    let mut r = Reader::full_box(find(&list, "stbl", b"stsd")?, "stsd")?;
    if r.u32()? == 0 {
        return Err(Problem::Damaged("its video track has no sample description (`stsd` is empty)".into()));
    }
    let entries = boxes(r.rest(), "stsd")?;
    let Some((codec, entry)) = entries.first() else {
        return Err(Problem::Damaged("its `stsd` box holds no sample entry".into()));
    };
    match codec {
        b"avc1" | b"avc3" => {}
        b"hev1" | b"hvc1" => return Err(Problem::H265),
        other => return Err(Problem::OtherCodec(shown(other))),
    }
    // VisualSampleEntry: 8 bytes of SampleEntry, 16 reserved, width and height, then 50 bytes
    // (resolutions, frame count, compressor name, depth) before the entry's own boxes.
    let mut r = Reader::new(entry, "avc1");
    r.skip(24)?;
    let (width, height) = (u32::from(r.u16()?), u32::from(r.u16()?));
    r.skip(50)?;
    let avcc = child(r.rest(), "avc1", b"avcC")?;
    let (length_size, parameter_sets) = parse_avcc(avcc)?;

    let mut r = Reader::full_box(find(&list, "stbl", b"stsz")?, "stsz")?;
    let fixed_size = r.u32()?;
    let sample_count = r.u32()?;
    let sizes = if fixed_size == 0 { r.array(sample_count, |r| r.u32())? } else { Vec::new() };

    let chunk_offsets = if let Some(co64) = optional(&list, b"co64") {
        let mut r = Reader::full_box(co64, "co64")?;
        let n = r.u32()?;
        r.array(n, |r| r.u64())?
    } else {
        let mut r = Reader::full_box(find(&list, "stbl", b"stco")?, "stco")?;
        let n = r.u32()?;
        r.array(n, |r| r.u32().map(u64::from))?
    };
    let mut r = Reader::full_box(find(&list, "stbl", b"stsc")?, "stsc")?;
    let n = r.u32()?;
    let chunks = r.array(n, |r| {
        let entry = (r.u32()?, r.u32()?);
        r.skip(4)?; // sample description index
        Ok(entry)
    })?;
    let mut r = Reader::full_box(find(&list, "stbl", b"stts")?, "stts")?;
    let n = r.u32()?;
    let times = r.array(n, |r| Ok((r.u32()?, r.u32()?)))?;
    let rendering = match optional(&list, b"ctts") {
        Some(ctts) => {
            let mut r = Reader::full_box(ctts, "ctts")?;
            let n = r.u32()?;
            // Version 0 declares the offsets unsigned; writers put negative ones there too.
            r.array(n, |r| Ok((r.u32()?, r.u32()? as i32)))?
        }
        None => Vec::new(),
    };
    let sync = match optional(&list, b"stss") {
        Some(stss) => {
            let mut r = Reader::full_box(stss, "stss")?;
            let n = r.u32()?;
            Some(r.array(n, |r| r.u32())?)
        }
        None => None,
    };
    Ok(Video {
        width,
        height,
        timescale,
        length_size,
        parameter_sets,
        tables: Tables { sample_count, fixed_size, sizes, chunk_offsets, chunks, times, rendering, sync },
    })
}

/// AVCDecoderConfigurationRecord (ISO/IEC 14496-15 5.3.3.1): NAL length size, SPS and PPS.
fn parse_avcc(avcc: &[u8]) -> Result<(usize, Vec<Vec<u8>>), Problem> {
    let mut r = Reader::new(avcc, "avcC");
    r.skip(4)?; // version, profile, compatibility, level
    let length_size = usize::from(r.u8()? & 3) + 1;
    let mut sets = Vec::new();
    for mask in [0x1f, 0xff] {
        let count = r.u8()? & mask;
        for _ in 0..count {
            let len = r.u16()?;
            sets.push(r.bytes(usize::from(len))?.to_vec());
        }
    }
    Ok((length_size, sets))
}

/// The boxes of `data`, in order: (type, body). Every box at least its header and inside `data`.
fn boxes<'a>(data: &'a [u8], parent: &str) -> Result<Vec<([u8; 4], &'a [u8])>, String> {
    let mut out = Vec::new();
    let mut rest = data;
    // Fewer than 8 bytes left cannot hold a box: padding, ignored.
    while rest.len() >= 8 {
        let kind = [rest[4], rest[5], rest[6], rest[7]];
        let (size, header) = match u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) {
            0 => return Err(format!("box `{}` in `{parent}` has size 0, allowed only at the top level", shown(&kind))),
            1 => match rest.get(8..16) {
                Some(large) => (u64::from_be_bytes(large.try_into().unwrap_or_default()), 16),
                None => return Err(format!("box `{}` in `{parent}` is cut off", shown(&kind))),
            },
            n => (u64::from(n), 8),
        };
        if size < header || size > rest.len() as u64 {
            return Err(format!(
                "box `{}` in `{parent}` has size {size}, {}",
                shown(&kind),
                if size < header { "less than its header" } else { "past the end of its parent" }
            ));
        }
        let (this, next) = rest.split_at(size as usize);
        out.push((kind, &this[header as usize..]));
        rest = next;
    }
    Ok(out)
}

fn optional<'a>(list: &[([u8; 4], &'a [u8])], kind: &[u8; 4]) -> Option<&'a [u8]> {
    list.iter().find(|(k, _)| k == kind).map(|&(_, body)| body)
}

fn find<'a>(list: &[([u8; 4], &'a [u8])], parent: &str, kind: &[u8; 4]) -> Result<&'a [u8], String> {
    optional(list, kind).ok_or_else(|| format!("`{parent}` has no `{}` box", shown(kind)))
}

fn child<'a>(data: &'a [u8], parent: &str, kind: &[u8; 4]) -> Result<&'a [u8], String> {
    find(&boxes(data, parent)?, parent, kind)
}

fn shown(kind: &[u8; 4]) -> String {
    String::from_utf8_lossy(kind).escape_debug().to_string()
}

/// Big-endian fields of one box's body; reading past its end is an error naming the box.
struct Reader<'a> {
    data: &'a [u8],
    what: &'static str,
    version: u8,
}

impl<'a> Reader<'a> {
    fn new(data: &'a [u8], what: &'static str) -> Reader<'a> {
        Reader { data, what, version: 0 }
    }

    /// A full box: its version and flags read first.
    fn full_box(data: &'a [u8], what: &'static str) -> Result<Reader<'a>, String> {
        let mut r = Reader::new(data, what);
        r.version = r.u8()?;
        r.skip(3)?;
        Ok(r)
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], String> {
        if n > self.data.len() {
            return Err(format!("box `{}` is cut off ({n} bytes wanted, {} left)", self.what, self.data.len()));
        }
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        Ok(head)
    }

    fn skip(&mut self, n: usize) -> Result<(), String> {
        self.bytes(n).map(|_| ())
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.data)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.bytes(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_be_bytes(self.bytes(2)?.try_into().unwrap_or_default()))
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_be_bytes(self.bytes(4)?.try_into().unwrap_or_default()))
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_be_bytes(self.bytes(8)?.try_into().unwrap_or_default()))
    }

    /// `count` entries read by `entry`; a count larger than the box could hold is an error before
    /// anything is allocated (each entry takes at least 4 bytes).
    fn array<T>(&mut self, count: u32, mut entry: impl FnMut(&mut Self) -> Result<T, String>) -> Result<Vec<T>, String> {
        if count as usize > self.data.len() / 4 {
            return Err(format!("box `{}` declares {count} entries, more than it holds", self.what));
        }
        (0..count).map(|_| entry(self)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn boxed(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut out = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        out.extend_from_slice(kind);
        out.extend_from_slice(body);
        out
    }

    fn full(kind: &[u8; 4], version: u8, body: &[u8]) -> Vec<u8> {
        boxed(kind, &[&[version, 0, 0, 0][..], body].concat())
    }

    fn words(values: &[u32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_be_bytes()).collect()
    }

    fn read(bytes: &[u8]) -> Result<Video, Problem> {
        read_video(&mut Cursor::new(bytes), bytes.len() as u64)
    }

    fn damaged(bytes: &[u8]) -> String {
        match read(bytes) {
            Err(Problem::Damaged(e)) => e,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    /// A one-track file: 3 samples of 4 bytes in one chunk at byte 0, `codec`'s sample entry.
    fn file(codec: &[u8; 4], handler: &[u8; 4]) -> Vec<u8> {
        let mut entry = vec![0u8; 24];
        entry.extend_from_slice(&[1, 64, 0, 48]); // 320x48
        entry.extend_from_slice(&[0; 50]);
        let avcc = [&[1, 77, 0, 30, 0xff, 0xe1, 0, 2, 0x67, 1, 1, 0, 3, 0x68, 2, 3][..]].concat();
        entry.extend_from_slice(&boxed(b"avcC", &avcc));
        let stsd = full(b"stsd", 0, &[words(&[1]), boxed(codec, &entry)].concat());
        let stbl = boxed(
            b"stbl",
            &[
                stsd,
                full(b"stts", 0, &words(&[1, 3, 512])),
                full(b"ctts", 0, &words(&[2, 1, 1024, 1, (-512i32) as u32])),
                full(b"stss", 0, &words(&[1, 1])),
                full(b"stsc", 0, &words(&[1, 1, 3, 1])),
                full(b"stsz", 0, &words(&[0, 3, 4, 4, 4])),
                full(b"stco", 0, &words(&[1, 0])),
            ]
            .concat(),
        );
        let mdhd = full(b"mdhd", 0, &words(&[0, 0, 12800, 1536, 0]));
        let hdlr = full(b"hdlr", 0, &[&[0, 0, 0, 0][..], handler, &[0; 13]].concat());
        let mdia = boxed(b"mdia", &[mdhd, hdlr, boxed(b"minf", &stbl)].concat());
        let moov = boxed(b"moov", &boxed(b"trak", &[boxed(b"tkhd", &[0; 84]), mdia].concat()));
        [boxed(b"ftyp", b"isom\0\0\0\0"), moov, boxed(b"mdat", &[0; 12])].concat()
    }

    #[test]
    fn a_sound_file_gives_its_track_and_tables() {
        let video = read(&file(b"avc1", b"vide")).unwrap();
        assert_eq!((video.width, video.height, video.timescale, video.length_size), (320, 48, 12800, 4));
        assert_eq!(video.parameter_sets, vec![vec![0x67, 1], vec![0x68, 2, 3]]);
        let t = &video.tables;
        assert_eq!((t.sample_count, t.fixed_size, &t.sizes[..]), (3, 0, &[4, 4, 4][..]));
        assert_eq!((&t.chunk_offsets[..], &t.chunks[..], &t.times[..]), (&[0u64][..], &[(1, 3)][..], &[(3, 512)][..]));
        assert_eq!(t.rendering, vec![(1, 1024), (1, -512)]);
        assert_eq!(t.sync, Some(vec![1]));
        // A last box of size 0 runs to the end of the file.
        let mut open_ended = file(b"avc1", b"vide");
        let n = open_ended.len();
        open_ended[n - 20..n - 16].copy_from_slice(&[0; 4]);
        assert!(read(&open_ended).is_ok());
    }

    #[test]
    fn other_codecs_and_tracks_are_named() {
        assert_eq!(read(&file(b"hvc1", b"vide")).unwrap_err(), Problem::H265);
        assert_eq!(read(&file(b"vp09", b"vide")).unwrap_err(), Problem::OtherCodec("vp09".into()));
        assert_eq!(read(&file(b"avc1", b"soun")).unwrap_err(), Problem::NoVideo);
    }

    #[test]
    fn damaged_files_are_errors_naming_the_box() {
        let good = file(b"avc1", b"vide");
        // Cut anywhere: an error, never a panic.
        for cut in 0..good.len() {
            let _ = read(&good[..cut]);
        }
        assert!(damaged(&good[..good.len() - 4]).contains("`mdat` at byte"));
        assert!(damaged(&good[..good.len() - 4]).contains("truncated"));
        assert!(damaged(b"not a video\n").contains("past the end of the file"));
        assert!(damaged(&boxed(b"ftyp", b"isom")).contains("no `moov`"));
        // A size of 0 inside `moov` (the mp4 crate's hang) and one smaller than its header.
        let zero = boxed(b"moov", &boxed(b"trak", &[0, 0, 0, 0, b'm', b'd', b'i', b'a']));
        assert!(damaged(&zero).contains("`mdia` in `trak` has size 0"), "{}", damaged(&zero));
        let short = boxed(b"moov", &[0, 0, 0, 4, b'f', b'r', b'e', b'e']);
        assert!(damaged(&short).contains("less than its header"));
        // Every byte of the sample tables' box headers and counts flipped: errors or tables.
        for at in 0..good.len() {
            for value in [0u8, 1, 0x7f, 0xff] {
                let mut bad = good.clone();
                bad[at] = value;
                let _ = read(&bad);
            }
        }
        // A table declaring more entries than it holds allocates nothing.
        let mut huge = good.clone();
        let stsz = huge.windows(4).position(|w| w == b"stsz").unwrap();
        huge[stsz + 12..stsz + 16].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(damaged(&huge).contains("`stsz` declares 4294967295 entries"), "{}", damaged(&huge));
        let mut fragmented = good.clone();
        fragmented.extend_from_slice(&boxed(b"moof", &[]));
        assert!(damaged(&fragmented).contains("fragmented"));
    }
}
