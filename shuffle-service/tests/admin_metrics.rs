//! The admin endpoint of the real binary: `/healthz`, and `/metrics` after real fetches through
//! the service, parsed by the Prometheus project's own Python parsers (classic text format and
//! OpenMetrics) from the interop venv; and no admin port unless `croupier.admin.address` is set.

mod shuffle_support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use croupier_testkit::shuffle::layout::ExecutorDirs;
use croupier_testkit::shuffle::Client;
use shuffle_support::Ess;

const APP: &str = "app-20261123220000-0001";

/// A parsed HTTP response.
struct Http {
    status: u16,
    content_type: String,
    body: String,
}

/// One GET on a fresh connection (`Connection: close`), bounded in time.
fn get(addr: SocketAddr, path: &str, accept: Option<&str>) -> Http {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect to the admin endpoint {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let accept = accept
        .map(|a| format!("Accept: {a}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{accept}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw)
        .unwrap_or_else(|e| panic!("read the response to GET {path}: {e}"));
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {raw:?}"));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad status line in {head:?}"));
    let content_type = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    Http {
        status,
        content_type,
        body: body.to_string(),
    }
}

/// Families and samples as the Python `prometheus_client` parser sees them.
#[derive(Debug, Default)]
struct Parsed {
    /// family name → type
    families: BTreeMap<String, String>,
    /// `sample_name{k=v,...}` (labels sorted) → value
    samples: BTreeMap<String, f64>,
}

impl Parsed {
    fn value(&self, key: &str) -> f64 {
        *self
            .samples
            .get(key)
            .unwrap_or_else(|| panic!("no sample {key}; have {:#?}", self.samples.keys()))
    }
}

const PARSER: &str = r#"
import sys
from prometheus_client.parser import text_string_to_metric_families as classic
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om
text = sys.stdin.read()
parse = om if sys.argv[1] == "openmetrics" else classic
for f in parse(text):
    print("F", f.name, f.type)
    for s in f.samples:
        labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
        print("S", f"{s.name}{{{labels}}}", repr(float(s.value)))
"#;

/// Parses exposition text with the venv's `prometheus_client` (`flavour`: "classic" for the
/// Prometheus text format 0.0.4, "openmetrics" for OpenMetrics 1.0). Fails on any parse error.
fn parse(text: &str, flavour: &str) -> Parsed {
    let mut child = Command::new(croupier_testkit::env::python())
        .args(["-c", PARSER, flavour])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the venv's python (run scripts/test.sh to create the venv)");
    child
        .stdin
        .take()
        .expect("stdin piped")
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prometheus_client ({flavour}) rejected the exposition: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut p = Parsed::default();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let parts: Vec<&str> = line.split(' ').collect();
        match parts.as_slice() {
            ["F", name, ty] => {
                p.families.insert(name.to_string(), ty.to_string());
            }
            ["S", key, v] => {
                p.samples.insert(key.to_string(), v.parse().unwrap());
            }
            _ => panic!("unexpected parser output line {line:?}"),
        }
    }
    p
}

fn scrape(admin: SocketAddr, flavour: &str) -> Parsed {
    let accept =
        (flavour == "openmetrics").then_some("application/openmetrics-text; version=1.0.0");
    let r = get(admin, "/metrics", accept);
    assert_eq!(r.status, 200, "{}", r.body);
    let expected_type = if flavour == "openmetrics" {
        "application/openmetrics-text"
    } else {
        "text/plain; version=0.0.4"
    };
    assert!(
        r.content_type.starts_with(expected_type),
        "{flavour}: content type {:?}",
        r.content_type
    );
    parse(&r.body, flavour)
}

fn admin_addr(ess: &Ess) -> SocketAddr {
    let line = ess
        .wait_log("admin endpoint listening on ", Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no admin endpoint line in {:?}", ess.log()));
    let at = line.find("listening on ").unwrap() + "listening on ".len();
    line[at..].trim().parse().unwrap()
}

/// TCP ports in LISTEN state held by the process that listens on `port` (found through
/// /proc/net/tcp{,6} and /proc/*/fd).
fn listening_ports_of_process_on(port: u16) -> Vec<u16> {
    // inode → port, for every listening socket on the machine.
    let mut listening = BTreeMap::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() > 9 && f[3] == "0A" {
                let p = f[1]
                    .rsplit_once(':')
                    .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
                if let Some(p) = p {
                    listening.insert(f[9].to_string(), p);
                }
            }
        }
    }
    let socket_inodes = |pid: &str| -> Vec<String> {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| std::fs::read_link(e.path()).ok())
            .filter_map(|l| {
                l.to_str()?
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')
                    .map(str::to_string)
            })
            .collect()
    };
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let pid = entry.file_name().to_string_lossy().to_string();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let ports: Vec<u16> = socket_inodes(&pid)
            .iter()
            .filter_map(|i| listening.get(i).copied())
            .collect();
        if ports.contains(&port) {
            let mut ports = ports;
            ports.sort_unstable();
            ports.dedup();
            return ports;
        }
    }
    panic!("no process listens on port {port}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_after_real_fetches_parse_and_add_up() {
    croupier_testkit::require_venv!();
    let ess = Ess::start(&[
        ("croupier.admin.address", "127.0.0.1:0"),
        ("spark.shuffle.cleaner.interval", "100ms"),
        // Spark's heartbeat-only rule (no Mesos agent is asked).
        ("croupier.mesos.agent.address", "none"),
    ]);
    let admin = admin_addr(&ess);
    assert!(
        ess.log()
            .iter()
            .any(|l| l.contains("configuration") && l.contains("admin_address=\"127.0.0.1:0\"")),
        "admin address in the configuration line: {:?}",
        ess.log()
    );
    let mut ports = listening_ports_of_process_on(ess.addr.port());
    ports.retain(|p| *p != ess.addr.port());
    assert_eq!(ports, vec![admin.port()], "one extra (admin) listener");

    let health = get(admin, "/healthz", None);
    assert_eq!((health.status, health.body.trim()), (200, "ok"));
    assert_eq!(get(admin, "/nope", None).status, 404);

    let before = scrape(admin, "classic");
    assert_eq!(before.value("croupier_shuffle_blocks_served_total{}"), 0.0);
    assert_eq!(
        before.value("croupier_shuffle_fetch_latency_seconds_count{}"),
        0.0
    );
    assert_eq!(before.value("croupier_shuffle_registered_executors{}"), 0.0);

    let tmp = tempfile::tempdir().unwrap();
    let dirs = ExecutorDirs::create(tmp.path(), "admin", 2);
    let parts: [&[u8]; 3] = [b"first-partition", b"", b"third-partition-is-longer"];
    dirs.write_map_output(0, 1, &parts);
    dirs.write_map_output(0, 2, &[b"x", b"yy", b"zzz"]);
    let c = Client::connect(ess.addr).await.unwrap();
    c.register_executor(APP, "0", dirs.info.clone())
        .await
        .unwrap();
    // A driver that never heartbeats: the cleaner removes it (no executors of its own).
    c.register_driver("app-silent-driver", 50).await.unwrap();

    let ids = [
        "shuffle_0_1_0",
        "shuffle_0_1_1",
        "shuffle_0_1_2",
        "shuffle_0_2_1",
        "shuffle_0_2_2",
    ];
    let got = c.fetch_blocks(APP, "0", &ids).await.unwrap();
    let mut fetched_bytes = 0usize;
    for (id, r) in &got {
        fetched_bytes += r
            .as_ref()
            .unwrap_or_else(|e| panic!("fetch {id}: {e}"))
            .len();
    }
    assert_eq!(fetched_bytes, 15 + 25 + 2 + 3);
    // And a block of a map that does not exist: one unknown_block error.
    let missing = c.fetch_blocks(APP, "0", &["shuffle_0_99_0"]).await.unwrap();
    assert!(missing[0].1.is_err());
    assert!(
        ess.wait_log("app-silent-driver timed out", Duration::from_secs(10))
            .is_some(),
        "{:?}",
        ess.log()
    );

    for flavour in ["classic", "openmetrics"] {
        let m = scrape(admin, flavour);
        for (family, ty) in [
            ("croupier_shuffle_registered_executors", "gauge"),
            ("croupier_shuffle_registered_apps", "gauge"),
            ("croupier_shuffle_open_streams", "gauge"),
            ("croupier_shuffle_connections", "gauge"),
            ("croupier_shuffle_blocks_served", "counter"),
            ("croupier_shuffle_bytes_served", "counter"),
            ("croupier_shuffle_cleanups", "counter"),
            ("croupier_shuffle_errors", "counter"),
            ("croupier_shuffle_fetch_latency_seconds", "histogram"),
        ] {
            assert_eq!(
                m.families.get(family).map(String::as_str),
                Some(ty),
                "{flavour}: family {family}: {:?}",
                m.families
            );
        }
        let v = |k: &str| m.value(k);
        assert_eq!(
            v("croupier_shuffle_blocks_served_total{}"),
            ids.len() as f64
        );
        assert_eq!(
            v("croupier_shuffle_bytes_served_total{}"),
            fetched_bytes as f64
        );
        assert_eq!(
            v("croupier_shuffle_fetch_latency_seconds_count{}"),
            ids.len() as f64,
            "{flavour}: one observation per chunk sent"
        );
        assert_eq!(
            v("croupier_shuffle_fetch_latency_seconds_bucket{le=+Inf}"),
            ids.len() as f64
        );
        let sum = v("croupier_shuffle_fetch_latency_seconds_sum{}");
        assert!(sum > 0.0 && sum < 10.0, "latency sum {sum}");
        assert_eq!(v("croupier_shuffle_registered_executors{}"), 1.0);
        assert_eq!(v("croupier_shuffle_registered_apps{}"), 0.0);
        assert_eq!(v("croupier_shuffle_cleanups_total{}"), 1.0);
        assert_eq!(v("croupier_shuffle_open_streams{}"), 0.0);
        assert_eq!(v("croupier_shuffle_connections{}"), 1.0);
        assert_eq!(v("croupier_shuffle_errors_total{kind=unknown_block}"), 1.0);
        for kind in ["bad_frame", "bad_request", "io", "unsupported", "limit"] {
            assert_eq!(
                v(&format!("croupier_shuffle_errors_total{{kind={kind}}}")),
                0.0,
                "{flavour}: {kind}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registered_apps_and_errors_by_kind() {
    croupier_testkit::require_venv!();
    let ess = Ess::start(&[("croupier.admin.address", "127.0.0.1:0")]);
    let admin = admin_addr(&ess);
    let c = Client::connect(ess.addr).await.unwrap();
    c.register_driver("app-a", 600_000).await.unwrap();
    c.register_driver("app-b", 600_000).await.unwrap();
    // unsupported: a push-based shuffle request.
    let push = croupier_shuffle_service::protocol::BlockTransferMessage::FinalizeShuffleMerge {
        app_id: "app-a".into(),
        app_attempt_id: -1,
        shuffle_id: 0,
        shuffle_merge_id: 0,
    };
    assert!(c.rpc(&push).await.is_err());
    // bad_request: a block id that is not one.
    assert!(c
        .fetch_blocks("app-a", "7", &["bogus_block"])
        .await
        .is_err());
    // bad_frame: a frame of an unknown message type, on its own connection.
    let mut raw = TcpStream::connect(ess.addr).unwrap();
    let mut frame = 9u64.to_be_bytes().to_vec();
    frame.push(99);
    raw.write_all(&frame).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let m = loop {
        let m = scrape(admin, "classic");
        // One scrape reads the gauges one after another: the bad frame's connection can be
        // counted as an error in a scrape that read the connection gauge just before that
        // connection was. Wait for a scrape that has both.
        if (m.value("croupier_shuffle_errors_total{kind=bad_frame}") >= 1.0
            && m.value("croupier_shuffle_connections{}") >= 2.0)
            || Instant::now() > deadline
        {
            break m;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(m.value("croupier_shuffle_registered_apps{}"), 2.0);
    assert_eq!(m.value("croupier_shuffle_registered_executors{}"), 0.0);
    assert_eq!(
        m.value("croupier_shuffle_errors_total{kind=unsupported}"),
        1.0
    );
    assert_eq!(
        m.value("croupier_shuffle_errors_total{kind=bad_request}"),
        1.0
    );
    assert_eq!(
        m.value("croupier_shuffle_errors_total{kind=bad_frame}"),
        1.0
    );
    assert_eq!(m.value("croupier_shuffle_connections{}"), 2.0);
}

#[test]
fn admin_endpoint_is_off_by_default() {
    let ess = Ess::start(&[]);
    assert_eq!(
        listening_ports_of_process_on(ess.addr.port()),
        vec![ess.addr.port()],
        "only the shuffle port is bound"
    );
    let log = ess.log();
    assert!(
        log.iter()
            .any(|l| l.contains("configuration") && l.contains("admin_address=\"off\"")),
        "{log:?}"
    );
    assert!(!log.iter().any(|l| l.contains("admin endpoint")), "{log:?}");
}

#[test]
fn a_bad_admin_address_fails_the_start_naming_the_setting() {
    let out = Command::new(env!("CARGO_BIN_EXE_croupier-shuffle-service"))
        .args(["--host", "127.0.0.1", "--port", "0"])
        .args(["--conf", "croupier.admin.address=127.0.0.1"])
        .env_remove("SPARK_SHUFFLE_OPTS")
        .env_remove("SPARK_CONF_DIR")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("croupier.admin.address") && err.contains("host:port"),
        "{err}"
    );
    // A port in use: the service refuses to start rather than run without its endpoint.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_croupier-shuffle-service"))
        .args(["--host", "127.0.0.1", "--port", "0"])
        .args(["--conf", &format!("croupier.admin.address={addr}")])
        .env_remove("SPARK_SHUFFLE_OPTS")
        .env_remove("SPARK_CONF_DIR")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&addr.to_string()) && err.contains("croupier.admin.address"),
        "{err}"
    );
    assert!(!err.contains("listening on"), "{err}");
}
