//! A consumer's cursor over the input log: committed records in lsn order, from a position,
//! never past the writer's `Head` (what is not yet fsynced is not read).

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use super::{record, segments, Head};

/// Reads records from `next_lsn()` on.
#[derive(Debug)]
pub struct Reader {
    dir: PathBuf,
    /// The open segment (its first lsn), and bytes consumed in it.
    seg: u64,
    file: Option<BufReader<File>>,
    offset: u64,
    next_lsn: u64,
    body: Vec<u8>,
    /// Records skipped because the log had deleted them before they were read (the bound).
    skipped: u64,
}

impl Reader {
    /// A cursor at `from_lsn` (positioned lazily, on the first `next`).
    pub fn open(dir: &Path, from_lsn: u64) -> Reader {
        Reader {
            dir: dir.to_path_buf(),
            seg: 0,
            file: None,
            offset: 0,
            next_lsn: from_lsn.max(1),
            body: Vec::with_capacity(256),
            skipped: 0,
        }
    }

    /// The lsn of the next record `next` returns.
    pub fn next_lsn(&self) -> u64 {
        self.next_lsn
    }

    /// Records skipped since the last call because the log no longer had them.
    pub fn take_skipped(&mut self) -> u64 {
        std::mem::take(&mut self.skipped)
    }

    fn jump(&mut self, to: u64) {
        if to > self.next_lsn {
            self.skipped += to - self.next_lsn;
            self.next_lsn = to;
        }
        self.file = None;
    }

    /// The next committed record's body (checksum verified), or `None` when every record
    /// below `head.next_lsn` has been returned. A corrupt committed record is an error (the
    /// disk changed under us); the caller may `skip_segment`.
    pub fn next(&mut self, head: &Head) -> io::Result<Option<&[u8]>> {
        loop {
            if self.next_lsn < head.first_kept {
                let to = head.first_kept;
                self.jump(to);
            }
            if self.next_lsn >= head.next_lsn {
                return Ok(None);
            }
            if self.file.is_none() {
                let segs = segments(&self.dir)?;
                let Some(first) = segs.first() else {
                    return Ok(None);
                };
                if self.next_lsn < first.0 {
                    let to = first.0;
                    self.jump(to);
                }
                let Some((seg, path)) = segs.iter().rev().find(|(f, _)| *f <= self.next_lsn) else {
                    return Ok(None);
                };
                self.seg = *seg;
                self.offset = 0;
                self.file = Some(BufReader::with_capacity(256 * 1024, File::open(path)?));
            }
            let limit = if self.seg == head.segment {
                head.offset
            } else if self.seg > head.segment {
                return Ok(None);
            } else {
                u64::MAX
            };
            if self.offset + record::HEADER as u64 > limit {
                return Ok(None);
            }
            let Some(f) = self.file.as_mut() else {
                continue;
            };
            let mut header = [0u8; record::HEADER];
            // A torn record at the end of the last segment (only a reader without the
            // writer's head sees one) ends the log like its end does.
            match f.read_exact(&mut header) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && limit == u64::MAX => {
                    // The end of a complete segment: the next one holds `next_lsn` (when there
                    // is none, this is the end of the log: a reader without a writer's head).
                    self.file = None;
                    let later = segments(&self.dir)?.iter().any(|(f, _)| *f > self.seg);
                    if self.seg >= head.segment || !later {
                        return Ok(None);
                    }
                    continue;
                }
                Err(e) => return Err(e),
            }
            let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
            let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
            if len > record::MAX_BODY {
                return Err(corrupt(&self.dir, self.seg, self.offset));
            }
            self.body.resize(len, 0);
            f.read_exact(&mut self.body)?;
            if crc32fast::hash(&self.body) != crc {
                return Err(corrupt(&self.dir, self.seg, self.offset));
            }
            self.offset += (record::HEADER + len) as u64;
            let (lsn, _) =
                record::peek(&self.body).map_err(|_| corrupt(&self.dir, self.seg, self.offset))?;
            if lsn < self.next_lsn {
                continue;
            }
            if lsn > self.next_lsn {
                self.skipped += lsn - self.next_lsn;
            }
            self.next_lsn = lsn + 1;
            return Ok(Some(&self.body));
        }
    }

    /// Gives up on the open segment (after a corrupt record) and goes on with the next.
    pub fn skip_segment(&mut self) -> io::Result<()> {
        let segs = segments(&self.dir)?;
        let next = segs.iter().find(|(f, _)| *f > self.seg).map(|(f, _)| *f);
        match next {
            Some(f) => self.jump(f),
            None => self.file = None,
        }
        Ok(())
    }
}

fn corrupt(dir: &Path, seg: u64, offset: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "corrupt record in {} at byte {offset}",
            super::segment_path(dir, seg).display()
        ),
    )
}
