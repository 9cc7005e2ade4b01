//! Connection load against the service binary (issue 16): thousands of idle connections are
//! held and answered at a bounded memory cost each; clients that trickle one byte at a time,
//! that never read what they asked for, or that vanish without FIN or RST cost bounded memory
//! and do not stop an honest client from being served. The 10,000-connection figures, beside
//! Spark's JVM service, come from `bench/connections.sh`; the authenticated-path limits are in
//! `shuffle_auth.rs`.

mod shuffle_support;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use croupier_shuffle_service::protocol::{Message, StreamChunkId};
use croupier_testkit::bench::conns;
use croupier_testkit::bench::procfs::Proc;
use croupier_testkit::shuffle::layout::ExecutorDirs;
use croupier_testkit::shuffle::Client;
use shuffle_support::Ess;

const APP: &str = "app-20261203140000-0001";

/// Our plaintext service without a state store or agent, its admin endpoint on.
fn start(extra: &[(&str, &str)], nofile: u32) -> Ess {
    let mut conf = vec![
        ("croupier.admin.address", "127.0.0.1:0"),
        ("croupier.state.dir", "none"),
        ("croupier.mesos.agent.address", "none"),
    ];
    conf.extend_from_slice(extra);
    Ess::start_with_nofile(&conf, nofile)
}

/// Waits (bounded) until the service counts `want` open connections.
fn wait_connections(ess: &Ess, want: f64, within: Duration) {
    let end = Instant::now() + within;
    loop {
        let n = ess.metric("croupier_shuffle_connections");
        if n == want {
            return;
        }
        assert!(
            Instant::now() < end,
            "the service counts {n} connections, expected {want}, after {within:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// 2,000 connections (the CI-sized version of the 10,000 of `bench/connections.sh`): every one
/// is held and answers a request, and the service's resident memory grows by a bounded amount
/// per connection, both idle and after each connection was answered once.
#[test]
fn thousands_of_connections_are_held_answered_and_cheap() {
    const N: usize = 2_000;
    let limit = conns::raise_nofile(N as u64 + 512).unwrap();
    assert!(limit >= N as u64 + 64, "open-file limit {limit}");
    let ess = start(&[], (N + 512) as u32);
    let server = Proc(ess.pid());
    // One connection first, so the runtime's first-use allocations are in the base line.
    let mut held = Vec::with_capacity(N);
    conns::open_to(ess.addr, &mut held, 1).unwrap();
    conns::ask_all(ess.addr, &mut held, Duration::from_secs(30)).unwrap();
    let within = Duration::from_secs(5);
    let base = conns::settled_rss_kib(server, within).unwrap();
    conns::open_to(ess.addr, &mut held, N).unwrap();
    wait_connections(&ess, N as f64, Duration::from_secs(30));
    let idle = conns::settled_rss_kib(server, within).unwrap();
    let answered = conns::ask_all(ess.addr, &mut held, Duration::from_secs(30)).unwrap();
    assert_eq!(answered, N);
    let after = conns::settled_rss_kib(server, within).unwrap();
    let per = |kib: u64| kib.saturating_sub(base) as f64 / N as f64;
    eprintln!(
        "{N} connections: base {base} KiB, idle {idle} KiB ({:.2} KiB each), answered {after} KiB ({:.2} KiB each)",
        per(idle),
        per(after)
    );
    // The release build measures ~2.3 KiB idle and ~5.3 KiB answered (bench/connections.sh);
    // this debug build's futures are larger. The bounds catch a return of the 12 KiB per idle
    // connection measured before the idle-cost work, with slack for a busy machine.
    assert!(per(idle) < 4.5, "{:.2} KiB per idle connection", per(idle));
    assert!(
        per(after) < 8.5,
        "{:.2} KiB per answered connection",
        per(after)
    );
    drop(held);
    wait_connections(&ess, 0.0, Duration::from_secs(30));
}

/// A socket whose close sends neither FIN nor RST: TCP_REPAIR (needs CAP_NET_ADMIN) makes
/// the kernel drop the socket silently, as if the client host had vanished. The peer's kernel
/// answers anything the server sends afterwards with a RST (loopback: no socket any more).
fn vanish(s: TcpStream) {
    let on: libc::c_int = 1;
    // SAFETY: a valid descriptor and a c_int option value of the right size.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_REPAIR,
            std::ptr::addr_of!(on).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(
        r,
        0,
        "TCP_REPAIR needs CAP_NET_ADMIN: run this test as root (scripts/test.sh): {}",
        std::io::Error::last_os_error()
    );
    drop(s);
}

/// A client that does not read has little room for answers (else the kernel's autotuned
/// buffers, several MB on loopback, would take them all).
fn small_receive_buffer(s: &TcpStream) {
    let size: libc::c_int = 4096;
    // SAFETY: a valid descriptor and a c_int option value of the right size.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            std::ptr::addr_of!(size).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0, "SO_RCVBUF: {}", std::io::Error::last_os_error());
}

/// An OpenBlocks for block `shuffle_0_1_2` (the test's big block), then a ChunkFetchRequest for
/// it; the answer is not read.
fn ask_big_block(addr: SocketAddr, request_id: i64) -> TcpStream {
    shuffle_support::ask_block_unread(addr, APP, "shuffle_0_1_2", request_id)
}

const SILENT: usize = 4;
const SILENT_REQUESTS: i32 = 150_000;

/// Hostile clients at once: 64 that send one byte per second of a frame declaring 1 MiB, 4
/// that pipeline requests and never read the answers, 16 that vanish (no FIN/RST) while idle
/// and 4 that vanish with a 32 MiB block being sent to them. An honest client's RPCs and
/// fetches keep being answered, the service's memory grows by a bounded amount, the
/// never-reading and vanished-mid-send connections are closed after
/// spark.shuffle.io.connectionTimeout (or at the peer's RST), and the idle vanished ones are
/// held at the cost of any idle connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_silent_and_vanished_clients_stay_bounded_and_do_not_starve_others() {
    let ess = start(&[("spark.shuffle.io.connectionTimeout", "3s")], 1024);
    let server = Proc(ess.pid());
    let tmp = tempfile::tempdir().unwrap();
    let dirs = ExecutorDirs::create(tmp.path(), "e-0", 1);
    let honest = Client::connect(ess.addr).await.unwrap();
    honest
        .register_executor(APP, "0", dirs.info.clone())
        .await
        .unwrap();
    let big = vec![7u8; 32 << 20];
    dirs.write_map_output(0, 1, &[b"alpha", b"beta", &big]);
    let fetch_small = || async {
        let got = tokio::time::timeout(
            Duration::from_secs(30),
            honest.fetch_blocks(APP, "0", &["shuffle_0_1_0", "shuffle_0_1_1"]),
        )
        .await
        .expect("blocks served within 30 s")
        .expect("blocks served");
        let got: Vec<_> = got.into_iter().map(|(_, r)| r.unwrap()).collect();
        assert_eq!(got, vec![&b"alpha"[..], &b"beta"[..]]);
    };
    fetch_small().await;
    let base = conns::settled_rss_kib(server, Duration::from_secs(3)).unwrap();
    let addr = ess.addr;

    // 64 slow senders: a frame declaring 1 MiB, then one byte per second (a thread each
    // would be 64 threads: one thread drips on all of them).
    let slow: Vec<TcpStream> = (0..64)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            let mut head = ((1u64 << 20) + 8).to_be_bytes().to_vec();
            head.push(3); // RpcRequest
            s.write_all(&head).unwrap();
            s
        })
        .collect();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let dripper = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut slow = slow;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for s in &mut slow {
                    let _ = s.write_all(&[0]);
                }
                std::thread::sleep(Duration::from_secs(1));
            }
            slow
        })
    };

    // 4 that ask for the 32 MiB block, pipeline 150,000 requests behind it and never read: their writes stop once the service stops reading them (its queue to
    // the socket is full).
    let silent: Vec<_> = (0..SILENT)
        .map(|i| {
            std::thread::spawn(move || {
                // First the 32 MiB block (more than any socket buffers take), so each one
                // surely stalls, then the pipelined requests behind it.
                let mut s = ask_big_block(addr, 1000 + i as i64);
                small_receive_buffer(&s);
                s.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
                let mut reqs = Vec::new();
                for i in 0..SILENT_REQUESTS {
                    reqs.extend_from_slice(
                        &Message::ChunkFetchRequest(StreamChunkId {
                            stream_id: conns::UNKNOWN_STREAM,
                            chunk_index: i,
                        })
                        .to_bytes(),
                    );
                }
                // Until all is written or the service closes the connection (a slow,
                // loaded service may take a while to read them all).
                let end = Instant::now() + Duration::from_secs(60);
                let mut sent = 0;
                while sent < reqs.len() && Instant::now() < end {
                    match s.write(&reqs[sent..]) {
                        Ok(n) if n > 0 => sent += n,
                        Err(e)
                            if matches!(
                                e.kind(),
                                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                            ) => {}
                        _ => break,
                    }
                }
                s
            })
        })
        .collect();

    // 16 idle connections and 4 with a 32 MiB block on its way vanish without FIN or RST.
    for _ in 0..16 {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(
            &Message::ChunkFetchRequest(StreamChunkId {
                stream_id: conns::UNKNOWN_STREAM,
                chunk_index: 0,
            })
            .to_bytes(),
        )
        .unwrap();
        let _ = shuffle_support::read_frame(&mut s, None);
        vanish(s);
    }
    for i in 0..4 {
        vanish(ask_big_block(addr, 100 + i));
    }

    // Meanwhile the honest client is served: RPCs and fetches, each well within its bound.
    let mut slowest = Duration::ZERO;
    for i in 0..20 {
        let t = Instant::now();
        tokio::time::timeout(
            Duration::from_secs(10),
            honest.register_executor(APP, &format!("x{i}"), dirs.info.clone()),
        )
        .await
        .expect("RegisterExecutor answered within 10 s")
        .unwrap();
        fetch_small().await;
        slowest = slowest.max(t.elapsed());
    }
    let during = conns::settled_rss_kib(server, Duration::from_secs(3)).unwrap();
    eprintln!(
        "hostile clients: RSS {base} -> {during} KiB; slowest honest RPC + fetch {slowest:?}"
    );
    // 64 slow + 4 silent + 20 vanished connections; the silent ones hold at most their
    // queue (512 answers of ~100 bytes) and a read buffer; the slow ones the bytes they sent.
    assert!(
        during.saturating_sub(base) < 16 << 10,
        "RSS grew by {} KiB",
        during.saturating_sub(base)
    );

    // The connections that read nothing of what is sent to them are closed after the
    // no-progress deadline (3 s) or at the vanished peers' RST.
    let end = Instant::now() + Duration::from_secs(60);
    while ess.metric("croupier_shuffle_send_timeouts_total") < SILENT as f64 {
        assert!(
            Instant::now() < end,
            "the never-reading connections were not closed within 60 s:\n{}",
            ess.log().join("\n")
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // Left: the honest client, 64 slow senders and 16 idle vanished ones (held, like any
    // idle connection); the silent ones are gone: the service closed each of them (with
    // requests of theirs unread, its close is a reset), which their sockets show without
    // reading anything (reading would let a service that had not closed them make progress).
    let silent: Vec<TcpStream> = silent.into_iter().map(|t| t.join().unwrap()).collect();
    for (i, s) in silent.iter().enumerate() {
        assert!(
            closed_by_peer(s, Duration::from_secs(20)),
            "silent client {i} was not closed by the service:\n{}",
            ess.log().join("\n")
        );
    }
    drop(silent);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let slow = dripper.join().unwrap();
    wait_connections(&ess, 1.0 + 64.0 + 16.0, Duration::from_secs(30));
    drop(slow);
    wait_connections(&ess, 1.0 + 16.0, Duration::from_secs(30));
    fetch_small().await;
}

/// Whether the peer closed `s` (a reset, or a FIN) within `within`, seen from the socket's TCP
/// state alone: nothing is read (reading would let a service that had not closed it make
/// progress), and what the socket received before stays unread.
fn closed_by_peer(s: &TcpStream, within: Duration) -> bool {
    let end = Instant::now() + within;
    loop {
        // SAFETY: TCP_INFO fills at most `len` bytes of a zeroed tcp_info on a socket we own.
        let state = unsafe {
            let mut info: libc::tcp_info = std::mem::zeroed();
            let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
            let rc = libc::getsockopt(
                s.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_INFO,
                (&mut info as *mut libc::tcp_info).cast(),
                &mut len,
            );
            assert_eq!(rc, 0, "TCP_INFO: {}", std::io::Error::last_os_error());
            info.tcpi_state
        };
        // TCP_CLOSE (reset), TCP_CLOSE_WAIT (FIN received), TCP_LAST_ACK
        if matches!(state, 7..=9) {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `croupier.shuffle.io.sendThreads` bounds the connections sending at once: while 64
/// connections fetch an 8 MiB block each, the service never runs more than 2 send jobs (its
/// `croupier_shuffle_sending` gauge, counted by the jobs, sampled), the others wait their turn
/// (counted), and every byte arrives. Connections that never read what they asked for hold no
/// turn: with one sending thread and 3 of them stalled mid-block (the 8 MiB block asked for
/// through `ask_big_block`, answers unread), another client is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sending_threads_are_bounded_and_not_held_by_clients_that_do_not_read() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let tmp = tempfile::tempdir().unwrap();
    let dirs = ExecutorDirs::create(tmp.path(), "e-0", 1);
    let big: Arc<Vec<u8>> = Arc::new((0..8u32 << 20).map(|i| (i % 251) as u8).collect());
    dirs.write_map_output(0, 1, &[b"alpha", b"beta", &big]);

    let ess = Arc::new(start(&[("croupier.shuffle.io.sendThreads", "2")], 1024));
    let first = Client::connect(ess.addr).await.unwrap();
    first
        .register_executor(APP, "0", dirs.info.clone())
        .await
        .unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let watch = {
        let (done, ess) = (done.clone(), ess.clone());
        std::thread::spawn(move || {
            let mut most = 0.0f64;
            while !done.load(Ordering::Relaxed) {
                most = most.max(ess.metric("croupier_shuffle_sending"));
                std::thread::sleep(Duration::from_millis(2));
            }
            most
        })
    };
    let fetchers: Vec<_> = (0..64)
        .map(|_| {
            let (addr, big) = (ess.addr, big.clone());
            tokio::spawn(async move {
                let c = Client::connect(addr).await.unwrap();
                let got = c.fetch_blocks(APP, "0", &["shuffle_0_1_2"]).await.unwrap();
                let (_, r) = got.into_iter().next().unwrap();
                assert!(r.unwrap() == big[..], "the 8 MiB block arrived altered");
            })
        })
        .collect();
    for f in fetchers {
        tokio::time::timeout(Duration::from_secs(60), f)
            .await
            .expect("64 fetches of 8 MiB within 60 s")
            .unwrap();
    }
    done.store(true, Ordering::Relaxed);
    let most = watch.join().unwrap();
    // Send jobs actually running, counted by the jobs themselves: at most the 2 turns, plus
    // any job that gave its turn up after waiting 10 ms (few from the page cache,
    // but a loaded machine may deschedule one that long).
    let released = ess.metric("croupier_shuffle_slow_sends_total");
    assert!(
        most <= 2.0 + released,
        "{most} send jobs at once with sendThreads=2 ({released} gave up their turn)"
    );
    let waits = ess.metric("croupier_shuffle_send_turn_waits_total");
    assert!(
        waits > 0.0,
        "64 connections never waited for one of 2 sending threads"
    );
    eprintln!("sendThreads=2: at most {most} sending, {waits} waits for a turn");
    drop(ess);

    // One turn; three clients stall mid-block without reading; a fourth is served.
    let ess = start(&[("croupier.shuffle.io.sendThreads", "1")], 1024);
    let honest = Client::connect(ess.addr).await.unwrap();
    honest
        .register_executor(APP, "0", dirs.info.clone())
        .await
        .unwrap();
    let stalled: Vec<TcpStream> = (0..3)
        .map(|i| {
            let s = ask_big_block(ess.addr, 10 + i);
            small_receive_buffer(&s);
            s
        })
        .collect();
    // Until each of them has its 8 MiB chunk on the way (and its socket full).
    let end = Instant::now() + Duration::from_secs(20);
    while ess.metric("croupier_shuffle_chunks_in_flight") < 3.0 {
        assert!(
            Instant::now() < end,
            "the 3 stalled clients' chunks never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let got = tokio::time::timeout(
        Duration::from_secs(30),
        honest.fetch_blocks(APP, "0", &["shuffle_0_1_0", "shuffle_0_1_2"]),
    )
    .await
    .expect("served within 30 s beside 3 stalled clients and one sending thread")
    .unwrap();
    let got: Vec<_> = got.into_iter().map(|(_, r)| r.unwrap()).collect();
    assert!(got[0] == b"alpha"[..] && got[1] == big[..]);
    drop(stalled);
}
