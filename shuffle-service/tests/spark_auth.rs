//! Real Spark 3.5.7 jobs (pyspark, `local-cluster[2,1,1024]`, readHostLocalDisk=false) against
//! the service with `spark.authenticate=true`: SASL `auth`, SASL `auth-conf`, and the auth engine
//! (versions 1 and 2) with AES-CTR. A frame-decoding tap between Spark and the service shows
//! what crossed the wire in the clear: the authentication messages, then, on encrypted
//! connections, nothing decodable and none of the job's block contents (searched for in the raw
//! bytes; the SASL `auth` run is the control where they are found); the service log shows the
//! registrations and fetches happened.
//! Results are checked exactly by `tests/interop/spark/jobs.py`.
//!
//! `CROUPIER_ESS_UNDER_TEST=spark-mesos` runs the same transcript against Spark's own JVM
//! `MesosExternalShuffleService` with the same settings.

mod spark_support;

use std::time::Duration;

use spark_support::{run_python, serial, Btm, Flavour, Msg, PyRun, Service, Tap};

const SECRET: &str = "croupier-interop-secret-0123456789";
const TAG_AUTH_ENGINE: u8 = 0xFB;
const TAG_SASL: u8 = 0xEA;

struct Run {
    service: Service,
    tap: Tap,
    py: PyRun,
    app: String,
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn run(service_conf: &[(&str, &str)], app_conf: &[(&str, &str)]) -> Run {
    let _one_cluster_at_a_time = serial();
    let mut service = Service::start(service_conf);
    let tap = Tap::start(service.port);
    let mut args = vec!["lean".to_string(), tap.port.to_string()];
    for (k, v) in app_conf {
        args.push(format!("{k}={v}"));
    }
    let py = run_python("jobs.py", &args, Duration::from_secs(420));
    let context = format!(
        "{:?} under test, {:.1?}\nstdout:\n{}\nstderr tail:\n{}\ntap: {}\nservice log tail:\n{}",
        service.flavour,
        py.elapsed,
        py.stdout,
        py.stderr_tail(),
        tap.summary(),
        tail(&service.log(), 40)
    );
    assert!(
        py.status.success(),
        "pyspark jobs failed: {}\n{context}",
        py.status
    );
    assert!(service.is_running(), "the service died\n{context}");
    let app = py
        .info("app_id")
        .unwrap_or_else(|| panic!("no app_id line\n{context}"));
    let checks = py.lines("CHECK");
    assert_eq!(
        checks,
        [
            "rdd_reduce_by_key ok",
            "rdd_group_by_key_strings ok",
            "done ok"
        ],
        "{context}"
    );
    eprintln!(
        "{:?}: {:.1?}; tap: {}",
        service.flavour,
        py.elapsed,
        tap.summary()
    );
    service.stop_cleanly();
    Run {
        service,
        tap,
        py,
        app,
    }
}

impl Run {
    fn fail(&self, what: &str) -> ! {
        panic!(
            "{what}\ntap: {}\nstdout:\n{}\nservice log tail:\n{}",
            self.tap.summary(),
            self.py.stdout,
            tail(&self.service.log(), 40)
        )
    }

    /// Connections (by tap number) and the tag of their first client RpcRequest.
    fn first_requests(&self) -> Vec<(u64, u8)> {
        let mut seen = std::collections::BTreeMap::new();
        for e in self.tap.events() {
            if e.from_server {
                continue;
            }
            if let Msg::RpcRequest { btm, .. } = &e.msg {
                let tag = match btm {
                    Btm::Other { type_id, .. } => *type_id,
                    _ => 0,
                };
                seen.entry(e.conn).or_insert(tag);
            }
        }
        seen.into_iter().collect()
    }

    /// Every connection opened its conversation with an authentication message of `tag`, and
    /// no failure frame was sent.
    fn assert_authenticated_with(&self, tag: u8) {
        let firsts = self.first_requests();
        if firsts.is_empty() {
            self.fail("no connection reached the service");
        }
        for (conn, t) in &firsts {
            if *t != tag {
                self.fail(&format!(
                    "conn {conn}: first request tag 0x{t:02x}, want 0x{tag:02x}"
                ));
            }
        }
        let failures = self.tap.count(|e| {
            matches!(
                e.msg,
                Msg::RpcFailure { .. } | Msg::ChunkFetchFailure { .. } | Msg::StreamFailure { .. }
            )
        });
        if failures > 0 {
            self.fail(&format!("{failures} failure frames"));
        }
    }

    /// Block-transfer requests the tap could read in the clear: requests whose body decodes
    /// to a known BlockTransferMessage. Bare ChunkFetchRequest/ChunkFetchSuccess frames are not
    /// counted: an encrypted SASL frame keeps a plain 8-byte length, and its first ciphertext
    /// byte is the chunk-fetch type code one time in a few hundred, after which any bytes
    /// "decode" (a stream id, a chunk index, a body). Chunk contents in the clear are caught by
    /// `plaintext_blocks`, which looks for the job's own strings in the raw bytes.
    fn plaintext_requests(&self) -> usize {
        self.tap
            .requests()
            .iter()
            .filter(|(_, b)| !matches!(b, Btm::Other { .. }))
            .count()
    }

    /// Connections on which block contents of `rdd_group_by_key_strings` crossed the tap in
    /// the clear (server to client).
    fn plaintext_blocks(&self) -> usize {
        self.tap.raw_matches(true, contains_grouped_string)
    }

    /// On an encrypted run nothing but the handshake is readable, yet our service registered
    /// the app's executors and served chunks (its own log and shutdown metrics say so).
    fn assert_encrypted(&self) {
        let n = self.plaintext_requests();
        if n > 0 {
            self.fail(&format!(
                "{n} block-transfer messages crossed the tap in the clear"
            ));
        }
        let n = self.plaintext_blocks();
        if n > 0 {
            self.fail(&format!(
                "block contents (the job's strings) crossed the tap in the clear on {n} connections"
            ));
        }
        if self.service.flavour == Flavour::Ours {
            let log = self.service.log();
            let registered = log
                .lines()
                .filter(|l| l.contains("Registered executor") && l.contains(&self.app))
                .count();
            if registered < 2 {
                self.fail(&format!(
                    "{registered} executors registered for {}",
                    self.app
                ));
            }
            let served = log
                .lines()
                .find_map(|l| l.split("blockTransferMessageRate ").nth(1))
                .and_then(|r| r.split_whitespace().next())
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0);
            if served == 0 {
                self.fail("the service served no chunks");
            }
        }
    }

    fn assert_our_log_names_app(&self, protocol: &str) {
        if self.service.flavour != Flavour::Ours {
            return;
        }
        let log = self.service.log();
        let n = log
            .lines()
            .filter(|l| {
                l.contains("authenticated (") && l.contains(protocol) && l.contains(&self.app)
            })
            .count();
        if n < 2 {
            self.fail(&format!(
                "{n} `authenticated ({protocol}` lines for {}",
                self.app
            ));
        }
        if log.contains(SECRET) {
            self.fail("the secret reached the service log");
        }
    }
}

/// Whether `b` holds one of the values `rdd_group_by_key_strings` shuffles (jobs.py): six
/// times the same six digits, then `----` (40 bytes; pickled strings are raw UTF-8, and the
/// apps run with spark.shuffle.compress=false so block bytes are what was pickled).
fn contains_grouped_string(b: &[u8]) -> bool {
    b.windows(40).any(|w| {
        w.ends_with(b"----")
            && w[..36].iter().all(u8::is_ascii_digit)
            && (6..36).all(|i| w[i] == w[i - 6])
    })
}

/// The applications' settings: the service's plus uncompressed shuffle blocks (so a block's
/// content is recognisable on the wire).
fn app_conf<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut v = service_conf(extra);
    v.push(("spark.shuffle.compress", "false"));
    v
}

fn service_conf<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut v = vec![
        ("spark.authenticate", "true"),
        ("spark.authenticate.secret", SECRET),
    ];
    v.extend_from_slice(extra);
    v
}

#[test]
fn sasl_auth() {
    let r = run(&service_conf(&[]), &app_conf(&[]));
    r.assert_authenticated_with(TAG_SASL);
    // qop=auth: the requests after the exchange are readable (authenticated, not encrypted),
    // and so are the blocks: the control for the encrypted runs' marker search.
    if r.plaintext_requests() == 0 {
        r.fail("no plaintext block-transfer requests after SASL auth");
    }
    if r.plaintext_blocks() == 0 {
        r.fail("no block content of the job readable after SASL auth (the marker search finds nothing even in the clear)");
    }
    r.assert_our_log_names_app("qop auth)");
}

#[test]
fn sasl_auth_conf() {
    let r = run(
        &service_conf(&[]),
        &app_conf(&[("spark.authenticate.enableSaslEncryption", "true")]),
    );
    r.assert_authenticated_with(TAG_SASL);
    r.assert_encrypted();
    r.assert_our_log_names_app("qop auth-conf");
}

#[test]
fn auth_engine_v1_ctr() {
    let crypto = [("spark.network.crypto.enabled", "true")];
    let r = run(&service_conf(&crypto), &app_conf(&crypto));
    r.assert_authenticated_with(TAG_AUTH_ENGINE);
    r.assert_encrypted();
    r.assert_our_log_names_app("auth engine");
}

#[test]
fn auth_engine_v2_ctr() {
    let crypto = [
        ("spark.network.crypto.enabled", "true"),
        ("spark.network.crypto.authEngineVersion", "2"),
    ];
    let r = run(&service_conf(&crypto), &app_conf(&crypto));
    r.assert_authenticated_with(TAG_AUTH_ENGINE);
    r.assert_encrypted();
    r.assert_our_log_names_app("auth engine");
}

/// Spark's Mesos driver client (`MesosExternalBlockStoreClient`, through py4j) with the auth
/// engine: RegisterDriver, heartbeats on the same encrypted connection, the stopped app's files
/// removed after its timeout and the live one's kept (checked by `mesos_driver.py`), with no
/// block-transfer message readable on the wire.
#[test]
fn mesos_driver_client_with_auth_engine() {
    let _one_cluster_at_a_time = serial();
    let crypto = [
        ("spark.network.crypto.enabled", "true"),
        ("spark.shuffle.cleaner.interval", "1s"),
        // Spark's heartbeat-only rule: no Mesos agent in this test.
        ("croupier.mesos.agent.address", "none"),
    ];
    let mut service = Service::start(&service_conf(&crypto));
    let tap = Tap::start(service.port);
    let work = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let py = run_python(
        "mesos_driver.py",
        &[
            tap.port.to_string(),
            work.path().display().to_string(),
            SECRET.to_string(),
            "crypto".to_string(),
        ],
        Duration::from_secs(120),
    );
    let context = format!(
        "({:?} under test, {:.1?})\nstdout:\n{}\nstderr tail:\n{}\ntap: {}\nservice log tail:\n{}",
        service.flavour,
        py.elapsed,
        py.stdout,
        py.stderr_tail(),
        tap.summary(),
        tail(&service.log(), 40)
    );
    assert!(
        py.status.success(),
        "mesos_driver.py failed: {}\n{context}",
        py.status
    );
    assert_eq!(
        py.lines("CHECK"),
        [
            "a_kept_while_heartbeating ok",
            "b_kept_while_heartbeating ok",
            "a_removed_after_timeout ok",
            "b_kept_past_twice_its_timeout ok",
            "done ok",
        ],
        "{context}"
    );
    let clear = tap
        .requests()
        .iter()
        .filter(|(_, b)| !matches!(b, Btm::Other { .. }))
        .count();
    assert_eq!(clear, 0, "block-transfer messages in the clear\n{context}");
    let engine_firsts = tap.count(|e| {
        !e.from_server
            && matches!(&e.msg, Msg::RpcRequest { btm: Btm::Other { type_id, .. }, .. } if *type_id == TAG_AUTH_ENGINE)
    });
    assert!(
        engine_firsts >= 4,
        "{engine_firsts} auth engine handshakes\n{context}"
    );
    if service.flavour == Flavour::Ours {
        let log = service.log();
        for app in ["app_A", "app_B"] {
            let id = py
                .info(app)
                .unwrap_or_else(|| panic!("no {app} line\n{context}"));
            assert!(
                log.contains(&format!("Received registration request from app {id}")),
                "{context}"
            );
        }
        assert!(!log.contains(SECRET), "the secret reached the log");
    }
    service.stop_cleanly();
}

/// Spark's own clients refused: a wrong secret, no authentication, and an app asking for another
/// app's blocks over its authenticated connection; the good app is served before and after.
/// Run with `CROUPIER_ESS_UNDER_TEST=spark-mesos`, the same CHECKs hold for Spark's JVM service.
#[test]
fn spark_clients_refused_wrong_secret_no_auth_other_app() {
    let _one_cluster_at_a_time = serial();
    let mut service = Service::start(&service_conf(&[("spark.network.crypto.enabled", "true")]));
    let work = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let py = run_python(
        "auth_negative.py",
        &[
            service.port.to_string(),
            work.path().display().to_string(),
            SECRET.to_string(),
        ],
        Duration::from_secs(120),
    );
    let context = format!(
        "({:?} under test, {:.1?})\nstdout:\n{}\nstderr tail:\n{}\nservice log tail:\n{}",
        service.flavour,
        py.elapsed,
        py.stdout,
        py.stderr_tail(),
        tail(&service.log(), 40)
    );
    assert!(
        py.status.success(),
        "auth_negative.py failed: {}\n{context}",
        py.status
    );
    assert_eq!(
        py.lines("CHECK"),
        [
            "good ok",
            "wrong ok",
            "none ok",
            "crossapp ok",
            "afterall ok"
        ],
        "{context}"
    );
    for case in ["wrong", "none", "crossapp"] {
        eprintln!(
            "{:?} {case}: {}",
            service.flavour,
            py.info(&format!("error_{case}")).unwrap_or_default()
        );
    }
    assert!(service.is_running(), "the service died\n{context}");
    if service.flavour == Flavour::Ours {
        let app_a = py.info("app_A").unwrap_or_default();
        let log = service.log();
        let failed = log
            .lines()
            .filter(|l| l.contains("authentication failed") && l.contains(&app_a))
            .count();
        assert!(
            failed >= 1,
            "no `authentication failed` line naming {app_a}\n{context}"
        );
        assert!(
            log.lines()
                .any(|l| l.contains("not authorized") || l.contains("authenticated as")),
            "no log line for the cross-app request\n{context}"
        );
        assert!(!log.contains(SECRET), "the secret reached the log");
    }
    service.stop_cleanly();
}
