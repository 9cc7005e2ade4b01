//! The registration store's journal: an append-only file of framed, checksummed records that
//! lets a registration be answered once it has reached the operating system, before the
//! store's fsync. A crash or kill of the service loses nothing the kernel holds, so what was
//! answered is replayed from here at the next start; only a power loss within the moment
//! between an answer and the store's commit can lose it (`croupier.state.sync=always` waits for
//! the fsync instead).
//!
//! A record is `len: u32 LE`, `crc32(payload): u32 LE`, `payload` (at most [`MAX_RECORD`]
//! bytes). Reading stops at the first record that is cut short, too long or fails its checksum
//! (a write torn by the crash): what follows it is reported, never applied.
//!
//! Offsets are logical: bytes appended since the journal was opened, so that the store's
//! committer can say "committed up to N" while the file itself is emptied whenever everything
//! in it is committed.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// Largest payload of one record (a batch of heartbeats for many applications stays far below).
pub const MAX_RECORD: usize = 16 << 20;

const HEADER: usize = 8;

/// The journal file's name next to the store file of the same port.
pub fn file_name(port: u16) -> String {
    format!("registrations-{port}.journal")
}

/// What reading a journal found, to be replayed.
#[derive(Debug, Default)]
pub struct Replay {
    /// The payloads of every whole record, in order.
    pub records: Vec<Vec<u8>>,
    /// Why reading stopped early, with how many bytes were left unread (`None`: it did not).
    pub torn: Option<String>,
}

/// An open journal (owned by one thread).
#[derive(Debug)]
pub struct Journal {
    file: File,
    path: PathBuf,
    /// Logical offset of the file's first byte.
    base: u64,
    /// Bytes in the file.
    len: u64,
}

impl Journal {
    /// Reads the records of the journal at `path` (a missing file has none), at most `limit`
    /// bytes of it: a file larger than any journal the store writes is read that far, and the
    /// rest reported as dropped.
    pub fn read(path: &Path, limit: u64) -> io::Result<Replay> {
        let mut bytes = Vec::new();
        let size = match File::open(path) {
            Ok(f) => {
                let size = f.metadata()?.len();
                f.take(limit).read_to_end(&mut bytes)?;
                size
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Replay::default()),
            Err(e) => return Err(e),
        };
        let mut replay = decode(&bytes);
        if size > limit && replay.torn.is_none() {
            replay.torn = Some(format!(
                "the file is {size} bytes, over the {limit} a journal can hold; the {} after that were dropped",
                size - limit
            ));
        }
        Ok(replay)
    }

    /// Opens (or creates) the journal at `path`, emptied: its records must have been applied
    /// (see [`Journal::read`]) before.
    pub fn create(path: &Path) -> io::Result<Journal> {
        // O_APPEND: after the file is cut back (a failed append, or emptied once committed) the
        // next write lands at its new end, never past a hole.
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        file.set_len(0)?;
        Ok(Journal {
            file,
            path: path.to_owned(),
            base: 0,
            len: 0,
        })
    }

    /// Makes the logical offsets of a journal started anew follow on from `end` (of the one it
    /// replaces).
    pub fn continue_from(&mut self, end: u64) {
        self.base = end;
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The logical offset after the last record appended.
    pub fn end(&self) -> u64 {
        self.base + self.len
    }

    /// Bytes in the file now.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends `payloads` with one write and returns the logical end. On failure the file is
    /// cut back to where it was, so a failed append leaves no torn record in front of later
    /// ones; if even that fails the error says so and the journal must not be used again.
    pub fn append(&mut self, payloads: &[Vec<u8>]) -> Result<u64, AppendError> {
        if payloads.is_empty() {
            return Ok(self.end());
        }
        let mut buf = Vec::with_capacity(payloads.iter().map(|p| p.len() + HEADER).sum());
        for p in payloads {
            if p.is_empty() || p.len() > MAX_RECORD {
                return Err(AppendError::Failed(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("a record of {} bytes (1 to {MAX_RECORD} allowed)", p.len()),
                )));
            }
            buf.extend_from_slice(&(p.len() as u32).to_le_bytes());
            buf.extend_from_slice(&crc32fast::hash(p).to_le_bytes());
            buf.extend_from_slice(p);
        }
        let written = match crate::faults::injected("journal::write", &self.path) {
            // A write that fails part-way: half of it reached the file.
            Some(e) => self.file.write_all(&buf[..buf.len() / 2]).and(Err(e)),
            None => self.file.write_all(&buf),
        };
        match written {
            Ok(()) => {
                self.len += buf.len() as u64;
                Ok(self.end())
            }
            Err(e) => match crate::faults::injected("journal::truncate", &self.path)
                .map_or_else(|| self.file.set_len(self.len), Err)
            {
                Ok(()) => Err(AppendError::Failed(e)),
                Err(cut) => Err(AppendError::Broken {
                    write: e,
                    truncate: cut,
                }),
            },
        }
    }

    /// Empties the file if everything in it is committed (`committed` is a logical offset).
    pub fn forget_committed(&mut self, committed: u64) -> io::Result<()> {
        if self.len > 0 && committed >= self.end() {
            self.file.set_len(0)?;
            self.base = self.end();
            self.len = 0;
        }
        Ok(())
    }
}

/// How an append failed.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// Nothing was added (the file is as before).
    #[error("{0}")]
    Failed(io::Error),
    /// The write failed and the file could not be cut back: a torn record may be at its end.
    #[error("{write}; and cutting the file back failed: {truncate}")]
    Broken {
        write: io::Error,
        truncate: io::Error,
    },
}

fn decode(mut bytes: &[u8]) -> Replay {
    let mut out = Replay::default();
    let mut at = 0usize;
    while !bytes.is_empty() {
        let stop =
            |why: &str, left: usize| Some(format!("{why} at byte {at}; {left} bytes dropped"));
        if bytes.len() < HEADER {
            out.torn = stop("a record header cut short", bytes.len());
            break;
        }
        let len = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
        let crc = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
        if len == 0 {
            // No record is empty; zeros are what a file extended but never written reads as
            // (after a power loss), and crc32 of nothing is 0.
            out.torn = stop("an empty record (zeroed bytes)", bytes.len());
            break;
        }
        if len > MAX_RECORD {
            out.torn = stop(&format!("a record length of {len} bytes"), bytes.len());
            break;
        }
        let Some(payload) = bytes.get(HEADER..HEADER + len) else {
            out.torn = stop("a record cut short", bytes.len());
            break;
        };
        if crc32fast::hash(payload) != crc {
            out.torn = stop("a record failing its checksum", bytes.len());
            break;
        }
        out.records.push(payload.to_vec());
        bytes = &bytes[HEADER + len..];
        at += HEADER + len;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payloads(n: usize) -> Vec<Vec<u8>> {
        (0..n).map(|i| format!("record {i}").into_bytes()).collect()
    }

    #[test]
    fn records_read_back_in_order_and_the_file_empties_once_committed() {
        // Writes evaluate the failpoints, using up the counts another test configured.
        let _serial = crate::faults::serial();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(file_name(7337));
        let mut j = Journal::create(&path).unwrap();
        let first = j.append(&payloads(2)).unwrap();
        let end = j.append(&payloads(3)[2..]).unwrap();
        assert!(end > first);
        let read = Journal::read(&path, u64::MAX).unwrap();
        assert_eq!(read.records, payloads(3));
        assert!(read.torn.is_none());
        j.forget_committed(first).unwrap();
        assert_eq!(
            Journal::read(&path, u64::MAX).unwrap().records.len(),
            3,
            "not all committed yet"
        );
        j.forget_committed(end).unwrap();
        assert!(Journal::read(&path, u64::MAX).unwrap().records.is_empty());
        let later = j.append(&payloads(1)).unwrap();
        assert!(later > end, "offsets stay logical across emptying");
        assert_eq!(Journal::read(&path, u64::MAX).unwrap().records, payloads(1));
    }

    #[test]
    fn a_torn_or_corrupt_tail_stops_reading_and_is_reported() {
        // Writes evaluate the failpoints, using up the counts another test configured.
        let _serial = crate::faults::serial();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(file_name(7337));
        let mut j = Journal::create(&path).unwrap();
        j.append(&payloads(3)).unwrap();
        let whole = std::fs::read(&path).unwrap();
        for cut in [1, HEADER - 1, HEADER + 2] {
            std::fs::write(&path, &whole[..whole.len() - cut]).unwrap();
            let r = Journal::read(&path, u64::MAX).unwrap();
            assert_eq!(r.records, payloads(2), "cut {cut}");
            assert!(r.torn.unwrap().contains("cut short"));
        }
        let mut bad = whole.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        std::fs::write(&path, &bad).unwrap();
        let r = Journal::read(&path, u64::MAX).unwrap();
        assert_eq!(r.records, payloads(2));
        assert!(r.torn.unwrap().contains("checksum"));
        let mut huge = Vec::new();
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        huge.extend_from_slice(&[0; 4]);
        std::fs::write(&path, &huge).unwrap();
        let r = Journal::read(&path, u64::MAX).unwrap();
        assert!(r.records.is_empty());
        assert!(r.torn.unwrap().contains("length"));
    }

    #[test]
    fn a_journal_over_the_limit_is_read_that_far() {
        // Writes evaluate the failpoints, using up the counts another test configured.
        let _serial = crate::faults::serial();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(file_name(7337));
        let mut j = Journal::create(&path).unwrap();
        let one = j.append(&payloads(1)).unwrap();
        j.append(&payloads(3)[1..]).unwrap();
        let r = Journal::read(&path, one).unwrap();
        assert_eq!(r.records, payloads(1));
        assert!(r.torn.unwrap().contains("over the"));
    }

    #[test]
    fn zeroed_bytes_end_the_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(file_name(7337));
        let _serial = crate::faults::serial();
        let mut j = Journal::create(&path).unwrap();
        j.append(&payloads(1)).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(&[0; 4096]);
        let tail = bytes.len();
        std::fs::write(&path, &bytes).unwrap();
        let mut j = Journal {
            file: std::fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .unwrap(),
            path: path.clone(),
            base: 0,
            len: tail as u64,
        };
        j.append(&payloads(2)[1..]).unwrap();
        let r = Journal::read(&path, u64::MAX).unwrap();
        assert_eq!(r.records, payloads(1));
        assert!(r.torn.unwrap().contains("empty record"));
    }

    #[test]
    fn a_missing_journal_has_no_records() {
        let dir = tempfile::tempdir().unwrap();
        let r = Journal::read(&dir.path().join("none.journal"), u64::MAX).unwrap();
        assert!(r.records.is_empty() && r.torn.is_none());
    }

    /// A new journal in a directory of its own holding one record, and its end.
    fn journal_of_one_record() -> (tempfile::TempDir, PathBuf, Journal, u64) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(file_name(7337));
        let mut j = Journal::create(&path).unwrap();
        let end = j.append(&payloads(1)).unwrap();
        (dir, path, j, end)
    }

    #[test]
    fn a_failed_append_leaves_the_file_as_it_was() {
        let (dir, path, mut j, end) = journal_of_one_record();
        let _serial = crate::faults::serial();
        let arg = format!("EIO*1:{}", dir.path().display());
        crate::faults::set("journal::write", &format!("return({arg})"));
        assert!(matches!(
            j.append(&payloads(2)),
            Err(AppendError::Failed(_))
        ));
        assert_eq!(crate::faults::fired("journal::write", &arg), 1);
        fail::remove("journal::write");
        assert_eq!(j.end(), end);
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            end,
            "the half written was cut off"
        );
        let later = j.append(&payloads(2)[1..]).unwrap();
        assert!(later > end);
        let r = Journal::read(&path, u64::MAX).unwrap();
        assert_eq!(
            r.records,
            vec![payloads(1)[0].clone(), payloads(2)[1].clone()]
        );
    }
    /// A failed write whose bytes cannot be cut off: the error says both, and a reader stops at
    /// the torn record. The whole records before it include those of the refused append
    /// itself: were the service to stop before the store starts a new journal, they would be
    /// applied at the next start though their callers were told they failed (each is a put or
    /// removal, which applying again or the caller's retry leaves as it would be).
    #[test]
    fn a_failed_append_that_cannot_be_undone_is_broken() {
        let (dir, path, mut j, end) = journal_of_one_record();
        let _serial = crate::faults::serial();
        let arg = format!("EIO*1:{}", dir.path().display());
        crate::faults::set("journal::write", &format!("return({arg})"));
        crate::faults::set("journal::truncate", &format!("return({arg})"));
        // Three records of 16 bytes: the half written is one whole record and a header.
        let e = j.append(&payloads(3)).unwrap_err();
        fail::remove("journal::write");
        fail::remove("journal::truncate");
        assert_eq!(crate::faults::fired("journal::truncate", &arg), 1);
        assert!(matches!(e, AppendError::Broken { .. }), "{e}");
        assert!(
            e.to_string().contains("cutting the file back failed"),
            "{e}"
        );
        assert!(std::fs::metadata(&path).unwrap().len() > end);
        let r = Journal::read(&path, u64::MAX).unwrap();
        assert_eq!(r.records, [payloads(1)[0].clone(), payloads(3)[0].clone()]);
        assert!(r.torn.is_some());
    }
}
