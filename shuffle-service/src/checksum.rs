//! DiagnoseCorruption: recompute a partition's checksum and compare it with the writer's
//! (`shuffle_S_M_0.checksum.<ALGO>`, one big-endian i64 per partition) and the reader's.

use std::io::{Read, Seek, SeekFrom};

use crate::protocol::message::cause;
use crate::state::Shared;
use crate::streams::{BlockRange, ChunkRef, ChunkWhat};

/// Adler-32 as `java.util.zip.Adler32`.
pub fn adler32(data: &[u8], mut a: u32, mut b: u32) -> (u32, u32) {
    const MOD: u32 = 65521;
    for chunk in data.chunks(5552) {
        for &x in chunk {
            a += x as u32;
            b += a;
        }
        a %= MOD;
        b %= MOD;
    }
    (a, b)
}

enum Algo {
    Adler(u32, u32),
    Crc(crc32fast::Hasher),
}

impl Algo {
    fn new(name: &str) -> Option<Algo> {
        match name {
            "ADLER32" => Some(Algo::Adler(1, 0)),
            "CRC32" => Some(Algo::Crc(crc32fast::Hasher::new())),
            _ => None,
        }
    }
    fn update(&mut self, d: &[u8]) {
        match self {
            Algo::Adler(a, b) => (*a, *b) = adler32(d, *a, *b),
            Algo::Crc(h) => h.update(d),
        }
    }
    fn value(self) -> i64 {
        match self {
            Algo::Adler(a, b) => ((b << 16) | a) as i64,
            Algo::Crc(h) => h.finalize() as i64,
        }
    }
}

/// Returns a `CorruptionCause` ordinal. Blocking.
#[allow(clippy::too_many_arguments)]
pub fn diagnose(
    shared: &Shared,
    app_id: &str,
    exec_id: &str,
    shuffle_id: i32,
    map_id: i64,
    reduce_id: i32,
    checksum_by_reader: i64,
    algorithm: &str,
) -> u8 {
    let Some(mut algo) = Algo::new(algorithm) else {
        return cause::UNSUPPORTED_CHECKSUM_ALGORITHM;
    };
    let result = (|| -> Result<u8, String> {
        if shuffle_id < 0 || map_id < 0 || reduce_id < 0 {
            return Err("negative ids".into());
        }
        let exec = shared
            .registry
            .get(app_id, exec_id)
            .map_err(|e| e.to_string())?;
        let sum_path = exec.path(&format!(
            "shuffle_{shuffle_id}_{map_id}_0.checksum.{algorithm}"
        ));
        let mut f = exec
            .open(&sum_path)
            .map_err(|e| format!("{}: {e}", sum_path.display()))?;
        f.seek(SeekFrom::Start(reduce_id as u64 * 8))
            .map_err(|e| e.to_string())?;
        let mut b = [0u8; 8];
        f.read_exact(&mut b)
            .map_err(|e| format!("{}: {e}", sum_path.display()))?;
        let by_writer = i64::from_be_bytes(b);
        let chunk = ChunkRef {
            app_id: app_id.into(),
            exec_id: exec_id.into(),
            what: ChunkWhat::Shuffle {
                shuffle_id,
                range: BlockRange {
                    map_id,
                    start: reduce_id,
                    end: reduce_id + 1,
                },
            },
        };
        let mut sender = crate::send::Sender::new(shared);
        let seg = sender.resolve(&chunk).map_err(|e| e.to_string())?;
        let mut file = sender.file().ok_or("the data file is not open")?;
        file.seek(SeekFrom::Start(seg.offset))
            .map_err(|e| e.to_string())?;
        let mut left = seg.len;
        let mut buf = vec![0u8; 64 * 1024];
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            file.read_exact(&mut buf[..n]).map_err(|e| e.to_string())?;
            algo.update(&buf[..n]);
            left -= n as u64;
        }
        let recalculated = algo.value();
        Ok(if by_writer != recalculated {
            cause::DISK_ISSUE
        } else if by_writer != checksum_by_reader {
            cause::NETWORK_ISSUE
        } else {
            cause::CHECKSUM_VERIFY_PASS
        })
    })();
    result.unwrap_or_else(|e| {
        tracing::warn!(
            "Unable to diagnose shuffle block corruption (appId={app_id}, execId={exec_id}): {e}"
        );
        cause::UNKNOWN_ISSUE
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn adler_known_value() {
        // Adler-32 of "Wikipedia" is 0x11E60398.
        let (a, b) = super::adler32(b"Wikipedia", 1, 0);
        assert_eq!((b << 16) | a, 0x11E6_0398);
    }
}
