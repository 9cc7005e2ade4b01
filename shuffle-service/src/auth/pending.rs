//! Connections not yet authenticated (`spark.authenticate`): at most
//! `croupier.authenticate.maxPendingConnections` at once, and at most
//! `croupier.authenticate.maxPendingConnectionsPerHost` from one peer address. A connection
//! admitted beyond a bound evicts another still authenticating — its own host's beyond the
//! per-host bound, else one of the host holding the most, idle ones before those
//! mid-handshake — so idle sockets opened by a peer that never authenticates cannot hold the
//! descriptors real clients need, and cannot close the handshakes of clients on other hosts.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio_util::sync::CancellationToken;

/// Largest pre-authentication message a legal client sends, as a whole frame: a SASL
/// DIGEST-MD5 response (at most 4096 bytes, RFC 2831 §2.1.2) behind a 1024-byte appId, or an
/// auth engine challenge (1024-byte appId, 64-byte salt, 256-byte sealed key), plus the
/// RpcRequest header (8-byte length, type, request id, body length).
pub const LARGEST_AUTH_FRAME: u64 = 8 + 1 + 8 + 4 + (1 + 4 + 1024 + 4 + 4096);

/// Frames declared longer than this are refused before authentication, before anything is
/// allocated for them (the full `max_request_frame` applies only once authenticated).
pub const PRE_AUTH_MAX_FRAME: u64 = 16 * 1024;

/// The set of connections still authenticating.
#[derive(Debug)]
pub struct Pending {
    max: usize,
    /// At most this many from one peer address (`maxPendingConnectionsPerHost`).
    per_host: usize,
    open: Mutex<Open>,
    /// Connections closed to make room for newer ones.
    pub evicted: AtomicU64,
}

#[derive(Debug, Default)]
struct Open {
    /// Connection number (accept order) → its entry.
    conns: BTreeMap<u64, Entry>,
    /// Pending connections per peer address.
    per_host: HashMap<IpAddr, usize>,
}

#[derive(Debug)]
struct Entry {
    host: IpAddr,
    evict: CancellationToken,
    /// The peer sent something (it is mid-handshake, not idle).
    started: Arc<AtomicBool>,
}

impl Open {
    fn remove(&mut self, conn: u64) -> Option<Entry> {
        let e = self.conns.remove(&conn)?;
        if let Some(n) = self.per_host.get_mut(&e.host) {
            *n -= 1;
            if *n == 0 {
                self.per_host.remove(&e.host);
            }
        }
        Some(e)
    }

    /// The connection of `host` to close first: its oldest that has sent nothing, else its
    /// oldest.
    fn victim(&self, host: IpAddr) -> Option<u64> {
        let mut of_host = self.conns.iter().filter(|(_, e)| e.host == host);
        let mut oldest = None;
        for (&conn, e) in &mut of_host {
            if !e.started.load(Ordering::Relaxed) {
                return Some(conn);
            }
            oldest.get_or_insert(conn);
        }
        oldest
    }

    /// The address holding the most pending connections (`prefer` on a tie).
    fn busiest(&self, prefer: IpAddr) -> Option<IpAddr> {
        let top = self.per_host.values().copied().max()?;
        if self.per_host.get(&prefer) == Some(&top) {
            return Some(prefer);
        }
        self.per_host
            .iter()
            .find(|(_, &n)| n == top)
            .map(|(h, _)| *h)
    }
}

/// Held while a connection is authenticating; leaving the set on drop.
pub struct Admission {
    pending: Arc<Pending>,
    conn: u64,
    started: Arc<AtomicBool>,
    /// Cancelled when a newer connection needs this one's place.
    pub evict: CancellationToken,
}

impl Admission {
    /// The peer sent its first bytes: evicted after the idle ones.
    pub fn started(&self) {
        self.started.store(true, Ordering::Relaxed);
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.pending.lock().remove(self.conn);
    }
}

impl Pending {
    pub fn new(max: usize, per_host: usize) -> Pending {
        Pending {
            max: max.max(1),
            per_host: per_host.max(1),
            open: Mutex::new(Open::default()),
            evicted: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        // The map stays consistent whatever panicked while holding it.
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Connections authenticating now.
    pub fn len(&self) -> usize {
        self.lock().conns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Admits connection `conn` (numbers grow in accept order) from `peer`. Beyond the
    /// per-host bound, one of that host's own connections is closed; beyond the global bound,
    /// one of the host holding the most. Either way the one closed is the host's oldest that
    /// has sent nothing, else its oldest, so one host opening sockets cannot close the
    /// handshakes of others. Returns the admission and how many were evicted.
    pub fn admit(self: &Arc<Self>, conn: u64, peer: IpAddr) -> (Admission, usize) {
        let host = peer.to_canonical();
        let evict = CancellationToken::new();
        let started = Arc::new(AtomicBool::new(false));
        let mut open = self.lock();
        let mut evicted = 0;
        loop {
            let target = if open.per_host.get(&host).copied().unwrap_or(0) >= self.per_host {
                Some(host)
            } else if open.conns.len() >= self.max {
                open.busiest(host)
            } else {
                None
            };
            let Some(victim) = target.and_then(|h| open.victim(h)) else {
                break;
            };
            if let Some(e) = open.remove(victim) {
                e.evict.cancel();
                evicted += 1;
            }
        }
        open.conns.insert(
            conn,
            Entry {
                host,
                evict: evict.clone(),
                started: started.clone(),
            },
        );
        *open.per_host.entry(host).or_insert(0) += 1;
        drop(open);
        self.evicted.fetch_add(evicted as u64, Ordering::Relaxed);
        (
            Admission {
                pending: self.clone(),
                conn,
                started,
                evict,
            },
            evicted,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn the_oldest_is_evicted_beyond_the_bound() {
        let p = Arc::new(Pending::new(2, 2));
        let (a, _) = p.admit(1, LOCAL);
        let (b, _) = p.admit(2, LOCAL);
        let (c, n) = p.admit(3, LOCAL);
        assert_eq!(n, 1);
        assert!(a.evict.is_cancelled());
        assert!(!b.evict.is_cancelled() && !c.evict.is_cancelled());
        assert_eq!(p.len(), 2);
        drop(b);
        assert_eq!(p.len(), 1);
        let (d, n) = p.admit(4, LOCAL);
        assert_eq!(n, 0);
        assert!(!c.evict.is_cancelled() && !d.evict.is_cancelled());
        drop(a);
        assert_eq!(
            p.len(),
            2,
            "an evicted connection was already out of the set"
        );
        assert_eq!(p.evicted.load(Ordering::Relaxed), 1);
    }

    const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
    const FLOOD: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 66));

    #[test]
    fn one_host_flooding_evicts_only_its_own_connections() {
        let p = Arc::new(Pending::new(8, 4));
        // Three real clients on their own hosts, mid-handshake.
        let real: Vec<_> = (1..=3u8)
            .map(|i| {
                let (a, _) = p.admit(u64::from(i), IpAddr::V4(Ipv4Addr::new(10, 0, 1, i)));
                a.started();
                a
            })
            .collect();
        let mut flood = Vec::new();
        for conn in 10..60 {
            flood.push(p.admit(conn, FLOOD).0);
        }
        assert!(real.iter().all(|a| !a.evict.is_cancelled()));
        let live = flood.iter().filter(|a| !a.evict.is_cancelled()).count();
        assert_eq!(
            live, 4,
            "the flooding host keeps maxPendingConnectionsPerHost"
        );
        assert_eq!(p.len(), 7);
        assert_eq!(p.evicted.load(Ordering::Relaxed), 46);
        // The same host over IPv4-mapped IPv6 is the same host.
        let mapped = IpAddr::V6(Ipv4Addr::new(10, 0, 0, 66).to_ipv6_mapped());
        let (_m, n) = p.admit(100, mapped);
        assert_eq!(n, 1);
    }

    #[test]
    fn beyond_the_global_bound_the_busiest_host_loses_an_idle_connection_first() {
        let p = Arc::new(Pending::new(4, 4));
        let (busy_started, _) = p.admit(1, FLOOD);
        busy_started.started();
        let (busy_idle, _) = p.admit(2, FLOOD);
        let (busy_idle2, _) = p.admit(3, FLOOD);
        let (other, _) = p.admit(4, LOCAL);
        other.started();
        let (newcomer, n) = p.admit(5, IpAddr::V4(Ipv4Addr::new(10, 0, 1, 1)));
        assert_eq!(n, 1);
        assert!(
            busy_idle.evict.is_cancelled(),
            "the busiest host's oldest idle one"
        );
        assert!(!busy_started.evict.is_cancelled() && !busy_idle2.evict.is_cancelled());
        assert!(!other.evict.is_cancelled() && !newcomer.evict.is_cancelled());
    }

    #[test]
    fn the_pre_auth_cap_holds_the_largest_legal_messages_with_margin() {
        use crate::auth::engine::message::{MAX_APP_ID_LEN, MAX_CIPHERTEXT_LEN, MAX_SALT_LEN};
        let engine =
            8 + 1 + 8 + 4 + (1 + 4 + MAX_APP_ID_LEN + 4 + MAX_SALT_LEN + 4 + MAX_CIPHERTEXT_LEN);
        assert!(engine as u64 <= LARGEST_AUTH_FRAME);
        const { assert!(PRE_AUTH_MAX_FRAME >= 2 * LARGEST_AUTH_FRAME) };
    }
}
