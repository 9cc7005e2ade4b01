//! Resource use of the server under test, from `/proc/<pid>`: CPU seconds (utime + stime,
//! threads included) and resident memory (VmRSS now, VmHWM peak), plus a sampler thread that
//! records the highest VmRSS seen while a run is in progress.

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// A process being measured.
#[derive(Debug, Clone, Copy)]
pub struct Proc(pub u32);

fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

impl Proc {
    fn path(&self, leaf: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/{leaf}", self.0))
    }

    fn read(&self, leaf: &str) -> io::Result<String> {
        let p = self.path(leaf);
        std::fs::read_to_string(&p)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", p.display())))
    }

    /// utime + stime in seconds.
    pub fn cpu_seconds(&self) -> io::Result<f64> {
        let stat = self.read("stat")?;
        // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<&str> = rest.split_whitespace().collect();
        let field = |i: usize| -> io::Result<f64> {
            f.get(i - 3)
                .and_then(|v| v.parse::<f64>().ok())
                .ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("/proc/{}/stat field {i} missing", self.0),
                    )
                })
        };
        Ok((field(14)? + field(15)?) / clk_tck())
    }

    fn status_kb(&self, key: &str) -> io::Result<u64> {
        let s = self.read("status")?;
        s.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|r| r.trim_start_matches(':').split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("/proc/{}/status has no {key}", self.0),
                )
            })
    }

    /// Current resident set, bytes.
    pub fn rss(&self) -> io::Result<u64> {
        Ok(self.status_kb("VmRSS")? * 1024)
    }

    /// Peak resident set over the process's life, bytes.
    pub fn hwm(&self) -> io::Result<u64> {
        Ok(self.status_kb("VmHWM")? * 1024)
    }
}

/// Samples VmRSS every `period` until dropped or [`RssSampler::stop`]ped.
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    handle: Option<JoinHandle<()>>,
}

impl RssSampler {
    pub fn start(proc_: Proc, period: Duration) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(proc_.rss().unwrap_or(0)));
        let (s, p) = (stop.clone(), peak.clone());
        let handle = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Ok(r) = proc_.rss() {
                    p.fetch_max(r, Ordering::Relaxed);
                }
                std::thread::sleep(period);
            }
        });
        RssSampler {
            stop,
            peak,
            handle: Some(handle),
        }
    }

    /// Stops sampling; returns the peak VmRSS seen (bytes).
    pub fn stop(mut self) -> u64 {
        self.halt();
        self.peak.load(Ordering::Relaxed)
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.halt();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process() {
        let me = Proc(std::process::id());
        let rss = me.rss().unwrap();
        assert!(rss > 0 && me.hwm().unwrap() >= rss);
        let before = me.cpu_seconds().unwrap();
        let mut x = 0u64;
        for i in 0..30_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(me.cpu_seconds().unwrap() >= before);
        assert!(Proc(u32::MAX).rss().is_err());
    }
}
