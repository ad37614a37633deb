//! The input log (DESIGN §2, §6 "No data loss"): every fact the gateway accepts — readings,
//! statuses, acknowledgments, on-site reports, maintenance commands — is appended here and
//! fsynced before it is acknowledged or journaled (a reading reaches the engine while its
//! commit is being written; what the engine derives from it waits for `Durable`, see
//! `crate::intake`). The engine (through the journal) and the store sink are
//! consumers that each keep their own committed position and catch up from the log after an
//! outage or a crash.
//!
//! Storage: a directory (`data_dir/log`) of append-only segment files named by the sequence
//! number (lsn) of their first record, `00000000000000000001.wal`, each at most
//! `segment_bytes` (a new one starts at the batch that crosses it). A record is
//! `[len][crc32][body]` (`record`). Own segment files rather than SQLite or a queue crate:
//! appends are one `write` and one `fdatasync` per group commit, a reader streams them with
//! no locking, and whole segments are deleted in O(1) when every consumer is past them.
//!
//! A crash can leave a torn last record (a partial write): `Writer::open` checks every record
//! of the last segment and truncates at the first one whose length, checksum or lsn is
//! wrong, counting it; it is never replayed as garbage.

pub mod reader;
pub mod record;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

pub use reader::Reader;
pub use record::{CommandFact, Fact, Record};

/// The log directory's name inside `data_dir`.
pub const DIR_NAME: &str = crate::config::LOG_DIR_NAME;
/// The store sink's committed position, inside the log directory.
pub const STORE_POS_FILE: &str = "store.pos";

/// Where the committed log ends: what readers may read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Head {
    /// The lsn the next record will get (every record below it is committed).
    pub next_lsn: u64,
    /// The segment being written (its first lsn) and its committed length in bytes.
    pub segment: u64,
    pub offset: u64,
    /// Every record below this lsn has been deleted (retention, or the bound).
    pub first_kept: u64,
}

/// How far the log is durable, for the journal's thread: the stage applies readings before
/// their commit (issue 16: an alarm does not wait for the `fdatasync`), so the journal must
/// not commit events, progress or a position derived from records the log could still lose.
/// The intake's commit (on its blocking thread) moves it forward; the intake's end closes it.
#[derive(Debug)]
pub struct Durable {
    state: std::sync::Mutex<DurableState>,
    moved: std::sync::Condvar,
}

#[derive(Debug)]
struct DurableState {
    next_lsn: u64,
    closed: bool,
}

impl Durable {
    /// Every record below `next_lsn` is durable.
    pub fn new(next_lsn: u64) -> Durable {
        Durable {
            state: std::sync::Mutex::new(DurableState {
                next_lsn,
                closed: false,
            }),
            moved: std::sync::Condvar::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, DurableState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Every record below `next_lsn` is durable now.
    pub fn advance(&self, next_lsn: u64) {
        let mut s = self.lock();
        if next_lsn > s.next_lsn {
            s.next_lsn = next_lsn;
            self.moved.notify_all();
        }
    }

    /// The log takes no more commits (the intake ended): nobody waits for it any longer.
    pub fn close(&self) {
        self.lock().closed = true;
        self.moved.notify_all();
    }

    /// Every record below this lsn is durable.
    pub fn next_lsn(&self) -> u64 {
        self.lock().next_lsn
    }

    /// Blocks until every record below `lsn` is durable, the log was closed short of it
    /// (those records may be lost: what was derived from them must not be journaled), or
    /// `limit` passed.
    pub fn wait_for(&self, lsn: u64, limit: std::time::Duration) -> Waited {
        let deadline = std::time::Instant::now() + limit;
        let mut s = self.lock();
        while s.next_lsn < lsn {
            if s.closed {
                return Waited::Closed;
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Waited::TimedOut;
            }
            s = self
                .moved
                .wait_timeout(s, left)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
        Waited::Durable
    }
}

/// What `Durable::wait_for` saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waited {
    Durable,
    /// The log was closed short of the lsn.
    Closed,
    TimedOut,
}

/// One segment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub first_lsn: u64,
    pub bytes: u64,
    /// The arrival time of its first record (`i64::MAX` when it has none yet).
    pub first_arrival_ms: i64,
}

/// What `Writer::open` found.
#[derive(Debug)]
pub struct Opened {
    pub writer: Writer,
    /// Bytes cut off the end of the last segment (a torn record after a crash); 0 normally.
    pub truncated_bytes: u64,
    /// Content hashes of the newest records (oldest first, at most `recent` of them), to
    /// recognise messages the broker redelivers after a crash.
    pub recent: Vec<u64>,
}

/// The appending side: one per log, owned by the intake.
#[derive(Debug)]
pub struct Writer {
    dir: PathBuf,
    segments: Vec<Segment>,
    file: File,
    next_lsn: u64,
    segment_bytes: u64,
}

/// What `Writer::trim` deleted.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Trimmed {
    pub segments: usize,
    pub bytes: u64,
    /// Records deleted before the store had them (the bound was reached), and the arrival
    /// times they span; 0 when only consumed segments went.
    pub dropped: u64,
    pub dropped_from_ms: i64,
    pub dropped_to_ms: i64,
    /// Every record below this lsn is gone.
    pub first_kept: u64,
}

fn segment_path(dir: &Path, first_lsn: u64) -> PathBuf {
    dir.join(format!("{first_lsn:020}.wal"))
}

/// The segments of a log directory, oldest first (a missing directory has none).
pub fn segments(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut v = Vec::new();
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(v),
        Err(e) => return Err(e),
    };
    for entry in rd {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(stem) = name.strip_suffix(".wal") {
            if let Ok(lsn) = stem.parse::<u64>() {
                v.push((lsn, entry.path()));
            }
        }
    }
    v.sort_unstable_by_key(|(lsn, _)| *lsn);
    Ok(v)
}

/// A scanned record: lsn, arrival time, content hash.
type Scanned = (u64, i64, u64);

/// Reads a segment's records and where the valid records end (a torn or corrupt record stops
/// the scan).
fn scan(path: &Path, first_lsn: u64) -> io::Result<(Vec<Scanned>, u64)> {
    let mut data = Vec::new();
    File::open(path)?.read_to_end(&mut data)?;
    let mut out = Vec::new();
    let mut at = 0usize;
    let mut expect = first_lsn;
    while data.len() - at >= record::HEADER {
        let len = u32::from_le_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]) as usize;
        let crc = u32::from_le_bytes([data[at + 4], data[at + 5], data[at + 6], data[at + 7]]);
        if len > record::MAX_BODY || data.len() - at - record::HEADER < len {
            break;
        }
        let body = &data[at + record::HEADER..at + record::HEADER + len];
        if crc32fast::hash(body) != crc {
            break;
        }
        match record::peek(body) {
            Ok((lsn, arrival)) if lsn == expect => {
                out.push((lsn, arrival, record::content_hash(body)));
            }
            _ => break,
        }
        expect += 1;
        at += record::HEADER + len;
    }
    Ok((out, at as u64))
}

impl Writer {
    /// Opens (creating) the log in `dir`. A new log starts at `min_next_lsn` (the consumers'
    /// positions, so a deleted log directory never makes them skip what comes next).
    pub fn open(
        dir: &Path,
        min_next_lsn: u64,
        segment_bytes: u64,
        recent: usize,
    ) -> io::Result<Opened> {
        fs::create_dir_all(dir)?;
        let found = segments(dir)?;
        let mut segs = Vec::with_capacity(found.len() + 1);
        let mut truncated_bytes = 0;
        let mut hashes = Vec::new();
        let mut next_lsn = min_next_lsn.max(1);
        let n = found.len();
        let mut last_end = None;
        for (i, (first, path)) in found.iter().enumerate() {
            let len = fs::metadata(path)?.len();
            let last = i + 1 == n;
            if last {
                let (records, valid) = scan(path, *first)?;
                if valid < len {
                    truncated_bytes = len - valid;
                    OpenOptions::new().write(true).open(path)?.set_len(valid)?;
                    File::open(path)?.sync_all()?;
                }
                last_end = Some(first + records.len() as u64);
                next_lsn = next_lsn.max(first + records.len() as u64);
                let first_arrival_ms = records.first().map_or(i64::MAX, |r| r.1);
                let skip = records.len().saturating_sub(recent);
                hashes.extend(records[skip..].iter().map(|r| r.2));
                segs.push(Segment {
                    first_lsn: *first,
                    bytes: valid,
                    first_arrival_ms,
                });
            } else {
                segs.push(Segment {
                    first_lsn: *first,
                    bytes: len,
                    first_arrival_ms: first_arrival(path).unwrap_or(i64::MIN),
                });
            }
        }
        // Continue the last segment when it ends where the log goes on; start a new one for
        // a fresh log, or when a consumer is already past the end (the log was deleted).
        let need_new = last_end != Some(next_lsn);
        if need_new {
            if let Some(s) = segs.last() {
                if s.bytes == 0 {
                    fs::remove_file(segment_path(dir, s.first_lsn))?;
                    segs.pop();
                }
            }
            segs.push(Segment {
                first_lsn: next_lsn,
                bytes: 0,
                first_arrival_ms: i64::MAX,
            });
            File::create(segment_path(dir, next_lsn))?;
            sync_dir(dir)?;
        }
        let cur = segs.last().map_or(next_lsn, |s| s.first_lsn);
        let file = OpenOptions::new()
            .append(true)
            .open(segment_path(dir, cur))?;
        Ok(Opened {
            writer: Writer {
                dir: dir.to_path_buf(),
                segments: segs,
                file,
                next_lsn,
                segment_bytes: segment_bytes.max(1),
            },
            truncated_bytes,
            recent: hashes,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn next_lsn(&self) -> u64 {
        self.next_lsn
    }

    pub fn head(&self) -> Head {
        let cur = self.current();
        Head {
            next_lsn: self.next_lsn,
            segment: cur.first_lsn,
            offset: cur.bytes,
            first_kept: self.segments.first().map_or(self.next_lsn, |s| s.first_lsn),
        }
    }

    fn current(&self) -> Segment {
        self.segments.last().copied().unwrap_or(Segment {
            first_lsn: self.next_lsn,
            bytes: 0,
            first_arrival_ms: i64::MAX,
        })
    }

    /// Bytes in all segments.
    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Appends `buf` (`records` whole records, lsns from `next_lsn()` on, the first arrived at
    /// `first_arrival_ms`) and makes it durable (`fdatasync`). A new segment is started first
    /// when the current one is full. On error nothing is counted as written: the caller
    /// retries the same batch (a partial write is cut off again by the retry's truncation).
    pub fn append(&mut self, buf: &[u8], records: u64, first_arrival_ms: i64) -> io::Result<()> {
        if records == 0 {
            return Ok(());
        }
        let cur = self.current();
        if cur.bytes >= self.segment_bytes {
            // The old segment is complete and already synced.
            let path = segment_path(&self.dir, self.next_lsn);
            let file = OpenOptions::new().create(true).append(true).open(&path)?;
            sync_dir(&self.dir)?;
            self.file = file;
            self.segments.push(Segment {
                first_lsn: self.next_lsn,
                bytes: 0,
                first_arrival_ms: i64::MAX,
            });
        }
        let before = self.current().bytes;
        let res = self
            .file
            .write_all(buf)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = res {
            // Undo a partial write so the segment stays a sequence of whole records.
            let _ = self.file.set_len(before);
            return Err(e);
        }
        if let Some(s) = self.segments.last_mut() {
            s.bytes += buf.len() as u64;
            if s.first_arrival_ms == i64::MAX {
                s.first_arrival_ms = first_arrival_ms;
            }
        }
        self.next_lsn += records;
        Ok(())
    }

    /// Deletes whole segments, oldest first, never the one being written:
    /// - those every consumer is past (`consumed`: the lowest lsn a consumer still needs)
    ///   whose records all arrived before `keep_since_ms` (`log.retention`, for `replay`);
    /// - then, while the log is over `max_bytes`, the oldest whatever the consumers still
    ///   need: the store loses those records (`Trimmed::dropped`, with their period).
    pub fn trim(&mut self, consumed: u64, keep_since_ms: i64, max_bytes: u64) -> Trimmed {
        let mut t = Trimmed::default();
        let mut total = self.bytes();
        while self.segments.len() > 1 {
            let s = self.segments[0];
            let next = self.segments[1];
            let all_consumed = next.first_lsn <= consumed;
            let expired = next.first_arrival_ms < keep_since_ms;
            let over = total > max_bytes;
            if !(over || (all_consumed && expired)) {
                break;
            }
            if fs::remove_file(segment_path(&self.dir, s.first_lsn)).is_err() {
                break;
            }
            if !all_consumed {
                let from = s.first_lsn.max(consumed);
                let n = next.first_lsn.saturating_sub(from);
                if n > 0 {
                    if t.dropped == 0 {
                        t.dropped_from_ms = s.first_arrival_ms;
                    }
                    t.dropped += n;
                    t.dropped_to_ms = next.first_arrival_ms;
                }
            }
            total -= s.bytes;
            t.segments += 1;
            t.bytes += s.bytes;
            self.segments.remove(0);
        }
        t.first_kept = self.segments.first().map_or(self.next_lsn, |s| s.first_lsn);
        t
    }
}

fn first_arrival(path: &Path) -> Option<i64> {
    let mut f = File::open(path).ok()?;
    let mut head = [0u8; record::HEADER + 16];
    f.read_exact(&mut head).ok()?;
    record::peek(&head[record::HEADER..]).ok().map(|(_, a)| a)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Reads a consumer position file (`0` when there is none or it is unreadable: start from the
/// beginning of what the log holds; a duplicate is harmless, a gap is not).
pub fn read_position(path: &Path) -> u64 {
    fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Writes a consumer position file atomically (temporary file, rename).
pub fn write_position(path: &Path, lsn: u64) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, format!("{lsn}\n"))?;
    fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests;
