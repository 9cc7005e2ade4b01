//! Fetching over HTTP(S) and from local paths, against a real server on 127.0.0.1, and the
//! refusal of bad input (each bad input its own test).

mod fetcher_support;

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

use croupier_executor::fetcher::{fetch_all, FetchErrorKind, Uri};
use fetcher_support::*;

fn fetch(
    uris: &[Uri],
    tmp: &std::path::Path,
) -> Result<croupier_executor::fetcher::FetchSummary, croupier_executor::fetcher::FetchError> {
    let sb = sandbox(tmp);
    let cfg = config(&tmp.join("cache"));
    rt().block_on(fetch_all(uris, &sb, None, &cfg))
}

#[test]
fn plain_file_over_http() {
    let srv = Server::start();
    let body = bytes(3 * 1024 * 1024 + 17, 1);
    srv.route("/d/app.jar", Route::Ok(Arc::new(body.clone())));
    let t = tempdir();
    let s = fetch(&[uri(&srv.url("/d/app.jar"))], t.path()).unwrap();
    let got = std::fs::read(t.path().join("sandbox/app.jar")).unwrap();
    assert_eq!(got, body);
    assert_eq!(s.items[0].bytes, body.len() as u64);
    assert_eq!(srv.hits("/d/app.jar"), 1);
}

#[test]
fn output_file_with_subdirectory() {
    let srv = Server::start();
    srv.route("/x.bin", Route::Ok(Arc::new(b"hello".to_vec())));
    let t = tempdir();
    let mut u = uri(&srv.url("/x.bin"));
    u.output_file = Some("lib/renamed.bin".into());
    fetch(&[u], t.path()).unwrap();
    assert_eq!(
        std::fs::read(t.path().join("sandbox/lib/renamed.bin")).unwrap(),
        b"hello"
    );
}

#[test]
fn query_string_kept_in_name_and_not_extracted() {
    let srv = Server::start();
    let tgz = gzip(&RawTar::new().file("inside.txt", b"x").finish());
    srv.route("/a.tgz?v=1", Route::Ok(Arc::new(tgz.clone())));
    let t = tempdir();
    fetch(&[uri(&srv.url("/a.tgz?v=1"))], t.path()).unwrap();
    assert_eq!(
        std::fs::read(t.path().join("sandbox/a.tgz?v=1")).unwrap(),
        tgz
    );
    assert!(!t.path().join("sandbox/inside.txt").exists());
}

#[test]
fn executable_gets_0755_and_is_not_extracted() {
    let srv = Server::start();
    let tgz = gzip(&RawTar::new().file("inside.txt", b"x").finish());
    srv.route("/run.tgz", Route::Ok(Arc::new(tgz)));
    let t = tempdir();
    let mut u = uri(&srv.url("/run.tgz"));
    u.executable = Some(true);
    fetch(&[u], t.path()).unwrap();
    let m = std::fs::metadata(t.path().join("sandbox/run.tgz")).unwrap();
    assert_eq!(m.permissions().mode() & 0o777, 0o755);
    assert!(!t.path().join("sandbox/inside.txt").exists());
}

#[test]
fn redirects_are_followed() {
    let srv = Server::start();
    srv.route("/final.bin", Route::Ok(Arc::new(b"final".to_vec())));
    srv.route("/start.bin", Route::Redirect(srv.url("/final.bin")));
    let t = tempdir();
    fetch(&[uri(&srv.url("/start.bin"))], t.path()).unwrap();
    // Named after the URI asked for, as upstream.
    assert_eq!(
        std::fs::read(t.path().join("sandbox/start.bin")).unwrap(),
        b"final"
    );
}

#[test]
fn http_404_fails_naming_uri_and_status() {
    let srv = Server::start();
    let t = tempdir();
    let u = srv.url("/missing.jar");
    let e = fetch(&[uri(&u)], t.path()).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains(&u) && msg.contains("404"), "{msg}");
    assert!(!e.retryable());
}

#[test]
fn http_503_is_retryable() {
    let srv = Server::start();
    srv.route("/busy", Route::Status(503));
    let t = tempdir();
    let e = fetch(&[uri(&srv.url("/busy"))], t.path()).unwrap_err();
    assert!(
        matches!(e.kind, FetchErrorKind::HttpStatus { status: 503, .. }),
        "{e}"
    );
    assert!(e.retryable());
}

#[test]
fn http_204_is_refused() {
    let srv = Server::start();
    srv.route("/empty", Route::Status(204));
    let t = tempdir();
    let e = fetch(&[uri(&srv.url("/empty"))], t.path()).unwrap_err();
    assert!(e.to_string().contains("204"), "{e}");
}

#[test]
fn stalled_server_times_out() {
    let srv = Server::start();
    srv.route(
        "/stall",
        Route::Stall {
            len: 1 << 20,
            sent: 1000,
        },
    );
    let t = tempdir();
    let sb = sandbox(t.path());
    let mut cfg = config(&t.path().join("cache"));
    cfg.stall_timeout = Duration::from_millis(700);
    let started = std::time::Instant::now();
    let e = rt()
        .block_on(fetch_all(&[uri(&srv.url("/stall"))], &sb, None, &cfg))
        .unwrap_err();
    assert!(matches!(e.kind, FetchErrorKind::Stalled(_)), "{e}");
    assert!(e.to_string().contains("stalled"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(!sb.join("stall").exists(), "partial file left behind");
}

#[test]
fn lying_content_length_is_detected() {
    let srv = Server::start();
    srv.route(
        "/lie.bin",
        Route::LieLength {
            body: Arc::new(bytes(10_000, 2)),
            claimed: 20_000,
        },
    );
    let t = tempdir();
    let e = fetch(&[uri(&srv.url("/lie.bin"))], t.path()).unwrap_err();
    assert!(
        matches!(
            e.kind,
            FetchErrorKind::Truncated {
                expected: 20_000,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.retryable());
}

#[test]
fn truncated_chunked_body_is_detected() {
    let srv = Server::start();
    srv.route(
        "/trunc.bin",
        Route::TruncatedChunked(Arc::new(bytes(50_000, 3))),
    );
    let t = tempdir();
    let e = fetch(&[uri(&srv.url("/trunc.bin"))], t.path()).unwrap_err();
    assert!(
        matches!(
            e.kind,
            FetchErrorKind::Transfer(_) | FetchErrorKind::Truncated { .. }
        ),
        "{e}"
    );
    assert!(!t.path().join("sandbox/trunc.bin").exists());
}

#[test]
fn connection_refused_is_a_retryable_connect_error() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    let t = tempdir();
    let u = format!("http://127.0.0.1:{port}/x.jar");
    let e = fetch(&[uri(&u)], t.path()).unwrap_err();
    assert!(matches!(e.kind, FetchErrorKind::Connect(_)), "{e}");
    assert!(e.to_string().contains(&u));
    assert!(e.retryable());
}

/// Runs `fetch` on a thread of its own in a new, empty network namespace (only a loopback
/// interface, down; no routes), so a name lookup really goes to the system resolver
/// (`/etc/hosts`, then the `nameserver` of `/etc/resolv.conf`) and really fails, while no packet
/// can leave this host. Threads started from there (the resolver's blocking pool) inherit the
/// namespace; the rest of the test process keeps its own. Needs root (CAP_SYS_ADMIN), as CI has.
fn fetch_without_network(
    uris: Vec<Uri>,
    tmp: std::path::PathBuf,
) -> croupier_executor::fetcher::FetchError {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "this test makes a network namespace and must run as root (CI runs scripts/test.sh as root)"
    );
    std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
            .expect("unshare(CLONE_NEWNET) as root");
        // Proof that this thread has no way out: no route at all.
        assert!(!has_route(), "the new network namespace has a route");
        fetch(&uris, &tmp).expect_err("a fetch with no network must fail")
    })
    .join()
    .expect("fetch thread")
}

/// Whether any IPv4 route exists in the calling thread's network namespace.
fn has_route() -> bool {
    std::fs::read_to_string("/proc/thread-self/net/route")
        .map(|t| t.lines().count() > 1)
        .unwrap_or(true)
}

#[test]
fn unresolvable_host_is_a_dns_error_naming_host_and_uri() {
    let t = tempdir();
    let u = "http://croupier-no-such-host.invalid:8080/dist/spark-3.5.7.tgz".to_string();
    let e = fetch_without_network(vec![uri(&u)], t.path().to_path_buf());
    assert!(matches!(e.kind, FetchErrorKind::Dns(_)), "{e}");
    let msg = e.to_string();
    eprintln!("{msg}");
    assert!(msg.contains(&u), "{msg}");
    assert!(msg.contains("DNS resolution failed"), "{msg}");
    assert!(msg.contains("croupier-no-such-host.invalid"), "{msg}");
    // A resolver that cannot be reached may come back: retrying is right.
    assert!(e.retryable(), "{msg}");
    // Nothing was left behind in the sandbox.
    let left: Vec<_> = std::fs::read_dir(t.path().join("sandbox"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn empty_basename_is_refused() {
    let t = tempdir();
    let e = fetch(&[uri("http://127.0.0.1:9/dir/")], t.path()).unwrap_err();
    assert!(matches!(e.kind, FetchErrorKind::InvalidUri(_)), "{e}");
}

#[test]
fn dot_basename_is_refused() {
    let t = tempdir();
    let e = fetch(&[uri("http://127.0.0.1:9/dir/.")], t.path()).unwrap_err();
    assert!(matches!(e.kind, FetchErrorKind::InvalidUri(_)), "{e}");
}

#[test]
fn dotdot_basename_is_refused() {
    let t = tempdir();
    let e = fetch(&[uri("http://127.0.0.1:9/dir/..")], t.path()).unwrap_err();
    assert!(matches!(e.kind, FetchErrorKind::InvalidUri(_)), "{e}");
    assert!(!t.path().join("..").join("dir").exists());
}

#[test]
fn output_file_escaping_the_sandbox_is_refused() {
    let t = tempdir();
    let mut u = uri("http://127.0.0.1:9/x");
    u.output_file = Some("../escape".into());
    let e = fetch(&[u], t.path()).unwrap_err();
    assert!(matches!(e.kind, FetchErrorKind::InvalidUri(_)), "{e}");
}

#[test]
fn unsupported_scheme_is_a_clear_error() {
    let t = tempdir();
    let e = fetch(&[uri("gopher://h/x.jar")], t.path()).unwrap_err();
    assert!(
        e.to_string().contains("unsupported URI scheme 'gopher'"),
        "{e}"
    );
    assert!(!e.retryable());
}

#[test]
fn first_failure_stops_the_rest() {
    let srv = Server::start();
    srv.route("/ok2", Route::Ok(Arc::new(b"2".to_vec())));
    let t = tempdir();
    let e = fetch(
        &[uri(&srv.url("/missing")), uri(&srv.url("/ok2"))],
        t.path(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("/missing"));
    assert_eq!(srv.hits("/ok2"), 0);
}

#[test]
fn local_absolute_path_and_file_uri() {
    let t = tempdir();
    let src = t.path().join("src.bin");
    std::fs::write(&src, bytes(100_000, 4)).unwrap();
    let file_uri = format!("file://{}", src.display());
    let mut u2 = uri(&file_uri);
    u2.output_file = Some("copy2.bin".into());
    fetch(&[uri(src.to_str().unwrap()), u2], t.path()).unwrap();
    assert_eq!(
        std::fs::read(t.path().join("sandbox/src.bin")).unwrap(),
        bytes(100_000, 4)
    );
    assert_eq!(
        std::fs::read(t.path().join("sandbox/copy2.bin")).unwrap(),
        bytes(100_000, 4)
    );
}

#[test]
fn local_missing_file_is_not_found() {
    let t = tempdir();
    let e = fetch(&[uri("/nonexistent/croupier/x.jar")], t.path()).unwrap_err();
    assert!(matches!(e.kind, FetchErrorKind::NotFound(_)), "{e}");
    assert!(e.to_string().contains("/nonexistent/croupier/x.jar"));
}

#[test]
fn local_directory_is_refused() {
    let t = tempdir();
    std::fs::create_dir(t.path().join("adir")).unwrap();
    let e = fetch(&[uri(t.path().join("adir").to_str().unwrap())], t.path()).unwrap_err();
    assert!(e.to_string().contains("directory"), "{e}");
}

#[test]
fn relative_path_without_frameworks_home_is_refused() {
    let t = tempdir();
    let e = fetch(&[uri("relative/x.jar")], t.path()).unwrap_err();
    assert!(e.to_string().contains("frameworks home"), "{e}");
}

#[test]
fn https_with_a_test_ca() {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf_params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap();
    let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
    let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let server_cfg = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            tokio_rustls::rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        )
        .unwrap();
    let srv = Server::start_tls(tokio_rustls::TlsAcceptor::from(Arc::new(server_cfg)));
    let body = bytes(200_000, 5);
    srv.route("/secure.bin", Route::Ok(Arc::new(body.clone())));
    let t = tempdir();
    let sb = sandbox(t.path());
    let ca_file = t.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();

    // Without the CA: a certificate error naming the URI.
    let cfg = config(&t.path().join("cache"));
    let e = rt()
        .block_on(fetch_all(&[uri(&srv.url("/secure.bin"))], &sb, None, &cfg))
        .unwrap_err();
    assert!(e.to_string().contains(&srv.url("/secure.bin")), "{e}");

    let mut cfg = config(&t.path().join("cache"));
    cfg.ca_file = Some(ca_file);
    rt().block_on(fetch_all(&[uri(&srv.url("/secure.bin"))], &sb, None, &cfg))
        .unwrap();
    assert_eq!(std::fs::read(sb.join("secure.bin")).unwrap(), body);
}

#[test]
fn full_disk_fails_naming_disk_full() {
    let t = tempdir();
    let small = t.path().join("small");
    let _tmpfs = Tmpfs::mount(&small, "2m");
    let srv = Server::start();
    srv.route("/big.bin", Route::Ok(Arc::new(bytes(4 << 20, 6))));
    let cfg = config(&t.path().join("cache"));
    let e = rt()
        .block_on(fetch_all(&[uri(&srv.url("/big.bin"))], &small, None, &cfg))
        .unwrap_err();
    assert!(matches!(e.kind, FetchErrorKind::DiskFull(_)), "{e}");
    assert!(e.to_string().contains("disk full"), "{e}");
    assert!(e.to_string().contains("/big.bin"), "{e}");
}
