//! Loopback ports for servers a test starts as a separate process (which must be told its port
//! before it binds).
//!
//! A port taken from `bind(127.0.0.1:0)` and released is one the kernel also hands out as the
//! source port of outgoing connections: a master connecting to its agent, Spark's JVM opening a
//! client, another test's `bind(:0)`. Between release and the server's own bind any of them can
//! take it, and a server that cannot bind fails (mesos-agent aborts: `Failed to initialize:
//! Failed to bind on 127.0.0.1:N: Address already in use`). So ports are picked *below* the
//! kernel's ephemeral range (`/proc/sys/net/ipv4/ip_local_port_range`), where only explicit
//! binds go, from a per-process random start stepping forward so that tests in one process never
//! get the same port twice, and each is checked free by binding it before it is handed out.

use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};

/// The lowest port handed out (above well-known and most registered service ports).
const LOWEST: u16 = 20_000;
/// How many candidates are tried before giving up.
const ATTEMPTS: u32 = 512;

static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);

/// The first port of the kernel's ephemeral range (32768 if it cannot be read).
pub fn ephemeral_low() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|p| p.parse().ok()))
        .unwrap_or(32_768)
}

/// A port on 127.0.0.1 that is free now and outside the ephemeral range, so that no outgoing
/// connection takes it before the server binds it. Falls back to a kernel-chosen port when the
/// range below the ephemeral one is too small to pick from.
pub fn free_port() -> std::io::Result<u16> {
    let low = ephemeral_low();
    if low <= LOWEST + 1_000 {
        return kernel_port();
    }
    let span = u32::from(low - LOWEST);
    // The first caller seeds a random start; everyone then steps on from it.
    let _ = NEXT.compare_exchange(
        u32::MAX,
        rand::random::<u32>() % span,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    for _ in 0..ATTEMPTS {
        let n = NEXT.fetch_add(1, Ordering::Relaxed) % span;
        let port = LOWEST + n as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    kernel_port()
}

/// [`free_port`] for tests: panics, naming the cause, when no port can be had.
pub fn loopback_port() -> u16 {
    free_port().unwrap_or_else(|e| panic!("no free port on 127.0.0.1: {e}"))
}

fn kernel_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_below_the_ephemeral_range_bindable_and_distinct() {
        let low = ephemeral_low();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..50 {
            let p = free_port().expect("a free port");
            if low > LOWEST + 1_000 {
                assert!((LOWEST..low).contains(&p), "{p} not in {LOWEST}..{low}");
            }
            assert!(seen.insert(p), "{p} handed out twice");
            TcpListener::bind(("127.0.0.1", p)).expect("the port is free");
        }
    }
}
