//! A moment that is stored and measured against after a restart: the wall clock (what is shown
//! and kept for the record) together with `CLOCK_BOOTTIME` and the id of the boot it was read in.
//!
//! The age of a stamp made during the current boot is taken from `CLOCK_BOOTTIME`, which no
//! change of the wall clock moves (an NTP step, `date -s`, a VM resumed with a stale clock); only
//! a stamp from an earlier boot (or one stored by a version that kept the wall clock alone) is
//! aged by the wall clock, and a stamp in the wall clock's future counts as age zero. Durations
//! inside one run of the service use `Instant` and never need this.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

/// Where it was on the boot-time clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootTime {
    /// `/proc/sys/kernel/random/boot_id`.
    pub boot_id: String,
    /// `CLOCK_BOOTTIME` (time since boot, suspend included).
    pub since_boot: Duration,
}

/// A moment on both clocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    pub wall: SystemTime,
    /// `None` when the boot clock could not be read, or for a record stored without it.
    pub boot: Option<BootTime>,
}

impl Stamp {
    /// Now.
    pub fn now() -> Stamp {
        Stamp {
            wall: SystemTime::now(),
            boot: boot_now(),
        }
    }

    /// A moment known on the wall clock only.
    pub fn wall_only(wall: SystemTime) -> Stamp {
        Stamp { wall, boot: None }
    }

    /// How long ago this was, seen from `now`: by the boot clock when both are of the same
    /// boot, else by the wall clock (zero if this is in the future).
    pub fn age_at(&self, now: &Stamp) -> Duration {
        match (&self.boot, &now.boot) {
            (Some(then), Some(b)) if then.boot_id == b.boot_id => {
                b.since_boot.saturating_sub(then.since_boot)
            }
            _ => now.wall.duration_since(self.wall).unwrap_or_default(),
        }
    }
}

/// The current boot's id, read once (`None` where the file is missing or odd).
fn boot_id() -> Option<&'static str> {
    static ID: OnceLock<Option<String>> = OnceLock::new();
    ID.get_or_init(|| {
        let raw = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
        let id = raw.trim();
        (id.len() <= 64 && !id.is_empty() && id.chars().all(|c| c.is_ascii_hexdigit() || c == '-'))
            .then(|| id.to_owned())
    })
    .as_deref()
}

fn boot_now() -> Option<BootTime> {
    let boot_id = boot_id()?.to_owned();
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the valid, exclusively borrowed `ts`.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    if rc != 0 || ts.tv_sec < 0 || !(0..1_000_000_000).contains(&ts.tv_nsec) {
        return None;
    }
    Some(BootTime {
        boot_id,
        since_boot: Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_boot_ages_by_the_boot_clock_whatever_the_wall_clock_says() {
        let now = Stamp::now();
        let boot = now.boot.clone().expect("a Linux boot clock");
        let ten_s_ago = |wall: SystemTime| Stamp {
            wall,
            boot: Some(BootTime {
                boot_id: boot.boot_id.clone(),
                since_boot: boot.since_boot.saturating_sub(Duration::from_secs(10)),
            }),
        };
        let day = Duration::from_secs(86_400);
        // The wall clock stepped forward a day, or back a day, since the stamp was made.
        for wall in [now.wall - day, now.wall + day, now.wall] {
            let age = ten_s_ago(wall).age_at(&now);
            assert!(
                age <= Duration::from_secs(10) && age >= Duration::from_secs(9),
                "{age:?}"
            );
        }
    }

    #[test]
    fn other_boot_or_no_boot_clock_ages_by_the_wall_clock() {
        let now = Stamp::now();
        let hour = Duration::from_secs(3600);
        let other = Stamp {
            wall: now.wall - hour,
            boot: Some(BootTime {
                boot_id: "another-boot".into(),
                since_boot: Duration::from_secs(1),
            }),
        };
        assert_eq!(other.age_at(&now), hour);
        assert_eq!(Stamp::wall_only(now.wall - hour).age_at(&now), hour);
        // A stamp in the wall clock's future is no age at all, not a huge one.
        assert_eq!(
            Stamp::wall_only(now.wall + hour).age_at(&now),
            Duration::ZERO
        );
    }
}
