//! JSON lines to stdout or a file: each line is written whole and flushed, so a reader (or a
//! journal) never sees half an object, even when the process is stopped between frames.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

use super::{Output, Sink};

pub struct Jsonl {
    out: Box<dyn Write + Send>,
    line: Vec<u8>,
}

impl Jsonl {
    /// `None` = stdout; a file is appended to (created if missing).
    pub fn open(path: Option<&Path>) -> anyhow::Result<Jsonl> {
        let out: Box<dyn Write + Send> = match path {
            None => Box::new(std::io::stdout()),
            Some(path) => Box::new({
                // Like the annotate sink's folder: created, not a reason to stay down.
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|e| {
                        anyhow::anyhow!("sinks.jsonl: cannot create the folder {}: {e}", dir.display())
                    })?;
                }
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| {
                        anyhow::anyhow!(
                            "sinks.jsonl: cannot open {} for appending: {e}",
                            path.display()
                        )
                    })?
            }),
        };
        Ok(Jsonl {
            out,
            line: Vec::with_capacity(4096),
        })
    }
}

impl Sink for Jsonl {
    fn name(&self) -> &'static str {
        "jsonl"
    }

    fn write(&mut self, out: &Output<'_>) -> anyhow::Result<()> {
        self.line.clear();
        self.line.extend_from_slice(out.json.as_bytes());
        self.line.push(b'\n');
        // One write of the whole line (stdout's lock is held for it), then flush.
        self.out.write_all(&self.line)?;
        self.out.flush()?;
        Ok(())
    }

    fn flush(&mut self, _deadline: Instant) -> anyhow::Result<()> {
        Ok(self.out.flush()?)
    }
}
