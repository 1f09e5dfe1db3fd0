//! Where each sample of an MP4 video track lies and when it plays, read from the track's sample
//! tables (ISO/IEC 14496-12 8.6-8.7: stsz, stsc, stco/co64, stts, ctts, stss) by a forward cursor.
//!
//! The `mp4` crate (0.14), used before, trusted the tables: a time-to-sample table shorter than
//! the sample count was an `unwrap` on `Err` (found by the `video_file` fuzz target in CI), and a
//! panic is an abort in the release build, so a damaged recording stopped the appliance. Here
//! every table is checked against the others when the file is opened, each step is checked
//! arithmetic, and each sample must lie inside the file; a sample that does not is an error
//! naming it.
//! The cursor keeps O(1) state whatever the number of samples (a day of video is millions).

/// No H.264 access unit comes near this (a 4K intra frame is a few MB): a larger one is damage,
/// and reading it would allocate that much.
pub const MAX_SAMPLE_BYTES: u32 = 64 << 20;

/// One sample: its bytes in the file and its timing, in the track's timescale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    pub offset: u64,
    pub size: u32,
    /// Decode time.
    pub start: u64,
    pub duration: u32,
    /// Presentation time less decode time (B-frames).
    pub rendering_offset: i32,
    pub sync: bool,
}

/// The tables of one track, checked against each other and against the file's length.
#[derive(Debug)]
pub struct SampleTable {
    tables: Tables,
    file_len: u64,
}

/// Where the next sample is; `SampleTable::cursor` makes the first.
#[derive(Debug, Clone, Default)]
pub struct Cursor {
    /// 1-based id of the next sample.
    next: u32,
    /// 1-based chunk of the next sample, its entry in `chunks`, samples of it already read and
    /// the byte where the next one starts.
    chunk: u32,
    chunk_entry: usize,
    in_chunk: u32,
    position: u64,
    time_entry: usize,
    time_used: u32,
    time: u64,
    rendering_entry: usize,
    rendering_used: u32,
}

/// A track's tables as the file has them, before they are checked.
#[derive(Debug, Default, Clone)]
pub struct Tables {
    pub sample_count: u32,
    /// stsz: one size for every sample, or 0 and `sizes`.
    pub fixed_size: u32,
    pub sizes: Vec<u32>,
    /// stco or co64.
    pub chunk_offsets: Vec<u64>,
    /// stsc: (first chunk, samples per chunk).
    pub chunks: Vec<(u32, u32)>,
    /// stts: (sample count, delta).
    pub times: Vec<(u32, u32)>,
    /// ctts: (sample count, offset).
    pub rendering: Vec<(u32, i32)>,
    /// stss: sync sample ids; `None`: every sample is one.
    pub sync: Option<Vec<u32>>,
}

impl SampleTable {
    /// `Err` says which table is out of shape; the caller names the file.
    pub fn new(tables: Tables, file_len: u64) -> Result<SampleTable, String> {
        let Tables { sample_count: count, fixed_size, sizes, chunk_offsets, chunks, times, .. } = &tables;
        if *fixed_size == 0 && sizes.len() != *count as usize {
            return Err(format!("its sample size table lists {} sizes for {count} samples", sizes.len()));
        }
        if *count > 0 && (chunks.is_empty() || chunk_offsets.is_empty()) {
            return Err("its sample-to-chunk or chunk offset table is empty".into());
        }
        let mut previous = 0;
        for &(first, per_chunk) in chunks {
            if first <= previous || per_chunk == 0 || first as usize > chunk_offsets.len() {
                return Err(format!(
                    "its sample-to-chunk table is out of order or names chunk {first} (of {}) with {per_chunk} samples",
                    chunk_offsets.len()
                ));
            }
            previous = first;
        }
        let timed: u64 = times.iter().map(|&(n, _)| u64::from(n)).sum();
        if timed < u64::from(*count) {
            return Err(format!("its time-to-sample table covers {timed} of {count} samples"));
        }
        Ok(SampleTable { tables, file_len })
    }

    pub fn count(&self) -> u32 {
        self.tables.sample_count
    }

    pub fn cursor(&self) -> Cursor {
        let chunk = self.tables.chunks.first().map_or(1, |&(first, _)| first);
        let position = self.tables.chunk_offsets.get(chunk as usize - 1).copied().unwrap_or(0);
        Cursor { next: 1, chunk, position, ..Cursor::default() }
    }

    /// The sample at `cursor`, moving it on; `Ok(None)` after the last.
    pub fn next(&self, cursor: &mut Cursor) -> Result<Option<Sample>, String> {
        let t = &self.tables;
        let id = cursor.next;
        if id == 0 || id > t.sample_count {
            return Ok(None);
        }
        let size = match t.fixed_size {
            0 => *t.sizes.get(id as usize - 1).ok_or_else(|| format!("sample {id} has no size"))?,
            fixed => fixed,
        };
        if size > MAX_SAMPLE_BYTES {
            return Err(format!("sample {id} claims {size} bytes, more than any H.264 frame"));
        }

        // Its chunk: the current one, or the next when the current one is full.
        if t.chunks.get(cursor.chunk_entry).is_none_or(|&(_, per_chunk)| cursor.in_chunk == per_chunk) {
            cursor.chunk = cursor.chunk.checked_add(1).ok_or_else(|| format!("sample {id}: chunk number overflows"))?;
            cursor.in_chunk = 0;
            if t.chunks.get(cursor.chunk_entry + 1).is_some_and(|&(first, _)| cursor.chunk >= first) {
                cursor.chunk_entry += 1;
            }
            cursor.position = *t.chunk_offsets.get(cursor.chunk as usize - 1).ok_or_else(|| {
                format!("sample {id} lies in chunk {}, past the {} chunks of its offset table", cursor.chunk, t.chunk_offsets.len())
            })?;
        }
        let offset = cursor.position;
        let end = offset.checked_add(u64::from(size)).filter(|&end| end <= self.file_len).ok_or_else(|| {
            format!("sample {id} (byte {offset}, {size} bytes) lies past the end of the file ({} bytes): is the recording truncated?", self.file_len)
        })?;
        cursor.position = end;
        cursor.in_chunk += 1;

        // Its decode time: entries with a count of 0 are skipped (`new` made sure that enough
        // samples are timed).
        while t.times.get(cursor.time_entry).is_some_and(|&(n, _)| cursor.time_used == n) {
            cursor.time_entry += 1;
            cursor.time_used = 0;
        }
        let &(_, duration) = t.times.get(cursor.time_entry).ok_or_else(|| format!("sample {id} has no time"))?;
        let start = cursor.time;
        cursor.time = cursor.time.saturating_add(u64::from(duration));
        cursor.time_used += 1;

        // Its presentation offset: a table shorter than the track leaves the rest at 0.
        while t.rendering.get(cursor.rendering_entry).is_some_and(|&(n, _)| cursor.rendering_used == n) {
            cursor.rendering_entry += 1;
            cursor.rendering_used = 0;
        }
        let rendering_offset = match t.rendering.get(cursor.rendering_entry) {
            Some(&(_, offset)) => {
                cursor.rendering_used += 1;
                offset
            }
            None => 0,
        };

        let sync = t.sync.as_ref().is_none_or(|list| list.binary_search(&id).is_ok());
        cursor.next += 1;
        Ok(Some(Sample { offset, size, start, duration, rendering_offset, sync }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A track of `sizes.len()` samples in chunks as `stsc` says, at `offsets`.
    fn tables(sizes: &[u32], stsc: &[(u32, u32)], offsets: &[u64], stts: &[(u32, u32)]) -> Tables {
        Tables {
            sample_count: sizes.len() as u32,
            sizes: sizes.to_vec(),
            chunk_offsets: offsets.to_vec(),
            chunks: stsc.to_vec(),
            times: stts.to_vec(),
            ..Tables::default()
        }
    }

    fn all(table: &SampleTable) -> Result<Vec<Sample>, String> {
        let mut cursor = table.cursor();
        let mut out = Vec::new();
        while let Some(sample) = table.next(&mut cursor)? {
            out.push(sample);
        }
        Ok(out)
    }

    #[test]
    fn samples_are_placed_by_chunk_and_timed_by_the_time_table() {
        // Chunks 1-2 hold 2 samples each, chunk 3 holds 1.
        let t = tables(&[10, 20, 30, 40, 50], &[(1, 2), (3, 1)], &[100, 200, 300], &[(3, 512), (0, 7), (2, 1024)]);
        let table = SampleTable::new(t, 1000).unwrap();
        let samples = all(&table).unwrap();
        let placed: Vec<(u64, u32, u64, u32)> = samples.iter().map(|s| (s.offset, s.size, s.start, s.duration)).collect();
        assert_eq!(placed, vec![(100, 10, 0, 512), (110, 20, 512, 512), (200, 30, 1024, 512), (230, 40, 1536, 1024), (300, 50, 2560, 1024)]);
        assert!(samples.iter().all(|s| s.sync && s.rendering_offset == 0));
        // Again from the start, as a looping file does.
        assert_eq!(all(&table).unwrap(), samples);
        // One size for all.
        let fixed = Tables { fixed_size: 5, sizes: vec![], ..tables(&[0, 0, 0], &[(1, 3)], &[10], &[(3, 1)]) };
        let offsets: Vec<u64> = all(&SampleTable::new(fixed, 100).unwrap()).unwrap().iter().map(|s| s.offset).collect();
        assert_eq!(offsets, vec![10, 15, 20]);
    }

    #[test]
    fn rendering_offsets_and_sync_samples_follow_their_tables() {
        let t = Tables {
            rendering: vec![(1, 20), (0, 99), (2, -10)],
            sync: Some(vec![1, 4]),
            ..tables(&[1, 1, 1, 1], &[(1, 4)], &[0], &[(4, 10)])
        };
        let samples = all(&SampleTable::new(t, 4).unwrap()).unwrap();
        assert_eq!(samples.iter().map(|s| s.rendering_offset).collect::<Vec<_>>(), vec![20, -10, -10, 0]);
        assert_eq!(samples.iter().map(|s| s.sync).collect::<Vec<_>>(), vec![true, false, false, true]);
    }

    #[test]
    fn tables_that_do_not_fit_each_other_are_errors_not_panics() {
        // The CI crash: a time table for 1 sample in a track of 2 (mp4's read_sample unwrapped it).
        let err = SampleTable::new(tables(&[1, 1], &[(1, 2)], &[0], &[(1, 10)]), 100).unwrap_err();
        assert!(err.contains("time-to-sample table covers 1 of 2"), "{err}");

        assert!(SampleTable::new(tables(&[1], &[(0, 1)], &[0], &[(1, 10)]), 100).unwrap_err().contains("chunk 0"));
        assert!(SampleTable::new(tables(&[1], &[(1, 0)], &[0], &[(1, 10)]), 100).is_err());
        assert!(SampleTable::new(tables(&[1], &[(2, 1), (1, 1)], &[0, 1], &[(1, 10)]), 100).unwrap_err().contains("out of order"));
        let err = SampleTable::new(tables(&[1], &[(2, 1)], &[0], &[(1, 10)]), 100).unwrap_err();
        assert!(err.contains("chunk 2 (of 1)"), "{err}");
        let missing_sizes = Tables { sizes: vec![1], ..tables(&[1, 1], &[(1, 2)], &[0], &[(2, 10)]) };
        assert!(SampleTable::new(missing_sizes, 100).unwrap_err().contains("1 sizes for 2 samples"));

        // More samples than the chunks hold: an error at the sample that has no chunk.
        let few_chunks = SampleTable::new(tables(&[1, 1, 1], &[(1, 2)], &[0], &[(3, 10)]), 100).unwrap();
        let err = all(&few_chunks).unwrap_err();
        assert!(err.contains("sample 3 lies in chunk 2, past the 1 chunks"), "{err}");
        // A sample past the end of the file: a truncated recording.
        let truncated = SampleTable::new(tables(&[60, 60], &[(1, 2)], &[0], &[(2, 10)]), 100).unwrap();
        let err = all(&truncated).unwrap_err();
        assert!(err.contains("sample 2 (byte 60, 60 bytes) lies past the end of the file (100 bytes)"), "{err}");
        let huge = SampleTable::new(tables(&[u32::MAX], &[(1, 1)], &[u64::MAX], &[(1, 10)]), u64::MAX).unwrap();
        assert!(all(&huge).unwrap_err().contains("more than any H.264 frame"));
        let wraps = SampleTable::new(tables(&[10], &[(1, 1)], &[u64::MAX - 5], &[(1, 10)]), u64::MAX).unwrap();
        assert!(all(&wraps).unwrap_err().contains("past the end of the file"));
    }
}
