//! A walk over an MP4 file's box tree before the `mp4` crate reads it: that crate (0.14) loops
//! forever on a box whose size does not move it forward (a size of 0 or less than its header
//! inside a container; found by the `video_file` fuzz target), so a damaged or hostile file would
//! hang the source. Every box must be at least its header long and lie inside its parent; a size
//! of 0 ("to the end of the file") only at the top level. Only headers are read: the media data
//! is skipped with a seek, whatever its size.

use std::io::{Read, Seek, SeekFrom};

/// Boxes whose content is a sequence of boxes (ISO/IEC 14496-12), descended into: those the
/// mp4 crate walks with its box-skipping loop, and `edts`.
const CONTAINERS: [&[u8; 4]; 12] =
    [b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"dinf", b"mvex", b"moof", b"traf", b"udta", b"ilst"];
/// Deeper than any real file nests.
const MAX_DEPTH: usize = 16;

/// `Err` names the first box that is out of shape, and where it is.
pub fn check<R: Read + Seek>(file: &mut R, len: u64) -> Result<(), String> {
    walk(file, 0, len, 0)
}

fn walk<R: Read + Seek>(file: &mut R, start: u64, end: u64, depth: usize) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!("boxes nested more than {MAX_DEPTH} deep at offset {start}"));
    }
    let mut at = start;
    // Fewer than 8 bytes left cannot hold a box: trailing padding, ignored as the mp4 crate does.
    while end - at >= 8 {
        let mut head = [0u8; 8];
        file.seek(SeekFrom::Start(at)).and_then(|_| file.read_exact(&mut head)).map_err(|e| format!("reading offset {at}: {e}"))?;
        let kind = [head[4], head[5], head[6], head[7]];
        let shown = String::from_utf8_lossy(&kind).escape_debug().to_string();
        let (size, header) = match u32::from_be_bytes([head[0], head[1], head[2], head[3]]) {
            0 if depth == 0 => (end - at, 8),
            0 => return Err(format!("box `{shown}` at offset {at} has size 0 inside another box")),
            1 => {
                let mut large = [0u8; 8];
                file.read_exact(&mut large).map_err(|e| format!("reading offset {}: {e}", at + 8))?;
                (u64::from_be_bytes(large), 16)
            }
            n => (u64::from(n), 8),
        };
        if size < header || size > end - at {
            return Err(format!(
                "box `{shown}` at offset {at} has size {size}, {}",
                if size < header { "less than its header" } else { "past the end of its parent" }
            ));
        }
        if CONTAINERS.contains(&&kind) {
            walk(file, at + header, at + size, depth + 1)?;
        } else if &kind == b"meta" && size >= header + 4 {
            // A full box: version and flags, then boxes; some writers leave the four bytes out
            // (the mp4 crate accepts both: non-zero bytes there are the first child's size).
            let mut version = [0u8; 4];
            file.read_exact(&mut version).map_err(|e| format!("reading offset {}: {e}", at + header))?;
            let children = if version == [0; 4] { at + header + 4 } else { at + header };
            walk(file, children, at + size, depth + 1)?;
        }
        at += size;
    }
    Ok(())
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

    fn checked(bytes: &[u8]) -> Result<(), String> {
        check(&mut Cursor::new(bytes), bytes.len() as u64)
    }

    #[test]
    fn a_sound_tree_passes_and_a_last_top_level_box_may_run_to_the_end() {
        let moov = boxed(b"moov", &boxed(b"trak", &boxed(b"tkhd", &[0; 12])));
        let mut file = [boxed(b"ftyp", b"isom"), moov].concat();
        assert_eq!(checked(&file), Ok(()));
        file.extend_from_slice(&[0, 0, 0, 0, b'm', b'd', b'a', b't', 1, 2, 3]);
        assert_eq!(checked(&file), Ok(()));
    }

    #[test]
    fn sizes_that_would_not_move_the_reader_forward_are_refused() {
        // The hang the fuzzer found: a box of size 0 inside `mdia`.
        let zero = [0, 0, 0, 0, b'h', b'd', b'l', b'r'];
        let file = boxed(b"moov", &boxed(b"trak", &boxed(b"mdia", &zero)));
        assert!(checked(&file).unwrap_err().contains("`hdlr` at offset 24 has size 0"), "{:?}", checked(&file));
        let short = boxed(b"moov", &[0, 0, 0, 4, b'f', b'r', b'e', b'e']);
        assert!(checked(&short).unwrap_err().contains("less than its header"));
        let long = boxed(b"moov", &[0, 0, 1, 0, b'f', b'r', b'e', b'e']);
        assert!(checked(&long).unwrap_err().contains("past the end of its parent"));
        // The second hang: a box of size 0 in `udta`'s `meta` (after its version and flags).
        let meta = boxed(b"meta", &[0, 0, 0, 0, 0, 0, 0, 0, b'f', b'r', b'e', b'e']);
        let file = boxed(b"moov", &boxed(b"udta", &meta));
        assert!(checked(&file).unwrap_err().contains("`free` at offset 28 has size 0"), "{:?}", checked(&file));
        let sound = boxed(b"moov", &boxed(b"udta", &boxed(b"meta", &[&[0u8; 4][..], &boxed(b"hdlr", &[0; 8])].concat())));
        assert_eq!(checked(&sound), Ok(()));
    }
}
