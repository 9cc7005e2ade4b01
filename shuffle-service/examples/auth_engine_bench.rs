//! Micro-benchmark of the auth engine primitives, run by `bench/auth-engine.sh` beside the same
//! measurement of Spark's classes (`AuthEngineCrossCheck bench`).
//!
//! `auth_engine_bench <seconds>` prints, for one process:
//! - `handshake_us V`: the server's work per new connection (decode the challenge, answer it,
//!   derive keys, build the channel ciphers), µs per handshake, v1;
//! - `ctr_MiB_s SIZE V`: AES-CTR encryption in place of SIZE-byte messages, MiB/s.

use std::hint::black_box;
use std::time::{Duration, Instant};

use croupier_shuffle_service::auth::engine::{self, AuthMessage, ClientAuth, EngineVersion};
use rand::rngs::OsRng;

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn main() {
    let secs: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    let budget = Duration::from_secs_f64(secs);

    // Handshakes: a pool of real client challenges, answered round robin.
    let challenges: Vec<Vec<u8>> = (0..64)
        .map(|i| {
            let app = format!("app-20261203-{i:04}");
            ClientAuth::start(SECRET, &app, EngineVersion::V1, &mut OsRng)
                .1
                .encode()
        })
        .collect();
    let mut n = 0usize;
    let start = Instant::now();
    while start.elapsed() < budget {
        let body = &challenges[n % challenges.len()];
        let challenge = AuthMessage::decode(body).expect("our own challenge decodes");
        let (response, keys) = engine::server_response(SECRET, &challenge, EngineVersion::V1)
            .expect("our own challenge authenticates");
        black_box(response.encode());
        black_box(keys.channel().expect("session cipher"));
        n += 1;
    }
    let us = start.elapsed().as_secs_f64() * 1e6 / n as f64;
    println!("handshake_us {us:.1}");

    // CTR throughput with a v1 (AES-256) session, as a server's writer encrypts chunk bodies.
    let (_, keys) = {
        let challenge = AuthMessage::decode(&challenges[0]).expect("decodes");
        engine::server_response(SECRET, &challenge, EngineVersion::V1).expect("authenticates")
    };
    for size in [1 << 20, 32 << 10] {
        let (mut enc, _) = keys.channel().expect("session cipher").split();
        let mut buf = vec![0x5au8; size];
        let mut bytes = 0u64;
        let start = Instant::now();
        while start.elapsed() < budget {
            enc.encrypt(&mut buf);
            black_box(&buf);
            bytes += size as u64;
        }
        let mib_s = bytes as f64 / (1 << 20) as f64 / start.elapsed().as_secs_f64();
        println!("ctr_MiB_s {size} {mib_s:.0}");
    }
}
