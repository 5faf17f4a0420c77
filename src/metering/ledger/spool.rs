//! The local append-only file that holds records the database could not take.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::UsageRecord;

/// JSON lines, one record a line. Appends hold a mutex for one `write` call; replay
/// first renames the file away under that mutex, so records appended while a replay
/// runs land in a fresh file and are never lost by the replay's cleanup.
#[derive(Debug)]
pub(super) struct Spool {
    path: PathBuf,
    replaying: PathBuf,
    lock: Mutex<()>,
}

impl Spool {
    pub(super) fn new(path: PathBuf) -> Spool {
        let mut replaying = path.clone().into_os_string();
        replaying.push(".replaying");
        Spool {
            path,
            replaying: replaying.into(),
            lock: Mutex::new(()),
        }
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Appends records; errors are returned so the caller can log them loudly.
    pub(super) fn append(&self, records: &[UsageRecord]) -> std::io::Result<()> {
        let mut buf = Vec::with_capacity(records.len() * 256);
        for record in records {
            serde_json::to_writer(&mut buf, record).map_err(std::io::Error::other)?;
            buf.push(b'\n');
        }
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        file.write_all(&buf)?;
        file.sync_data()
    }

    /// Whether anything waits to be replayed.
    pub(super) fn has_records(&self) -> bool {
        let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
        size(&self.path) > 0 || size(&self.replaying) > 0
    }

    /// Takes the spooled records out for a replay: a previous unfinished replay first,
    /// else the current file. Returns the records and how many lines were unreadable
    /// (a torn last line after a crash).
    pub(super) fn take(&self) -> std::io::Result<Option<(Vec<UsageRecord>, usize)>> {
        {
            let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
            if !self.replaying.exists() {
                match std::fs::rename(&self.path, &self.replaying) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                    Err(e) => return Err(e),
                }
            }
        }
        let mut records = Vec::new();
        let mut unreadable = 0;
        for line in BufReader::new(File::open(&self.replaying)?).lines() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str(&line) {
                Ok(record) => records.push(record),
                Err(_) => unreadable += 1,
            }
        }
        Ok(Some((records, unreadable)))
    }

    /// The records taken by [`take`](Spool::take) are in the database: forget them.
    pub(super) fn commit(&self) -> std::io::Result<()> {
        std::fs::remove_file(&self.replaying)
    }
}
