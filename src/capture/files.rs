//! Image files as a frame source: one file (`file:`) or a folder's images in name order (`dir:`),
//! optionally looping. For tests, and for units that receive images by other means.

use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use super::{Frame, FrameError, Next, Source};

pub struct FileSource {
    inner: DirSource,
}

impl FileSource {
    pub fn open(path: PathBuf, looped: bool) -> anyhow::Result<FileSource> {
        if !path.is_file() {
            anyhow::bail!("run.source: image file {} does not exist", path.display());
        }
        let name = format!("file:{}", path.display());
        Ok(FileSource {
            inner: DirSource {
                name,
                files: vec![path],
                next: 0,
                looped,
                seq: 0,
            },
        })
    }
}

impl Source for FileSource {
    fn name(&self) -> &str {
        &self.inner.name
    }
    fn is_live(&self) -> bool {
        false
    }
    fn next(&mut self, frame: &mut Frame) -> anyhow::Result<Next> {
        self.inner.next(frame)
    }
}

pub struct DirSource {
    name: String,
    files: Vec<PathBuf>,
    next: usize,
    looped: bool,
    seq: u64,
}

impl DirSource {
    pub fn open(dir: PathBuf, looped: bool) -> anyhow::Result<DirSource> {
        let entries = std::fs::read_dir(&dir).map_err(|e| {
            anyhow::anyhow!(
                "run.source: cannot read image folder {}: {e}",
                dir.display()
            )
        })?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && is_image(p))
            .collect();
        files.sort();
        if files.is_empty() {
            anyhow::bail!(
                "run.source: {} holds no .png/.jpg/.jpeg images",
                dir.display()
            );
        }
        log::info!(
            "source dir:{}: {} image(s){}",
            dir.display(),
            files.len(),
            if looped { ", looping" } else { "" }
        );
        Ok(DirSource {
            name: format!("dir:{}", dir.display()),
            files,
            next: 0,
            looped,
            seq: 0,
        })
    }
}

fn is_image(path: &Path) -> bool {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    matches!(ext.as_str(), "png" | "jpg" | "jpeg")
}

impl Source for DirSource {
    fn name(&self) -> &str {
        &self.name
    }
    fn is_live(&self) -> bool {
        false
    }
    fn next(&mut self, frame: &mut Frame) -> anyhow::Result<Next> {
        if self.next == self.files.len() {
            if !self.looped {
                return Ok(Next::End);
            }
            self.next = 0;
        }
        let path = &self.files[self.next];
        self.next += 1;
        self.seq += 1;
        let started = Instant::now();
        let bytes = std::fs::read(path)
            .map_err(|e| FrameError(format!("{}: cannot read: {e}", path.display())))?;
        let read = started.elapsed();
        frame.image = crate::vision::image::decode(&bytes)
            .map_err(|e| FrameError(format!("{}: {e}", path.display())))?;
        frame.seq = self.seq;
        frame.captured_at = SystemTime::now();
        frame.capture = read;
        frame.convert = started.elapsed() - read;
        Ok(Next::Frame)
    }
}
