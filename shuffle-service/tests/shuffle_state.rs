//! Registrations kept in `croupier.state.dir` across restarts of the binary: a SIGKILLed service
//! restarted on the same port serves the executors registered before without them registering
//! again; a corrupt store never stops the service; removing an application removes its records.

mod shuffle_support;

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use croupier_testkit::ports::loopback_port as free_port;
use croupier_testkit::shuffle::layout::ExecutorDirs;
use croupier_testkit::shuffle::Client;
use shuffle_support::Ess;

const APP: &str = "app-20261203090000-0001";

fn start(port: u16, state: &Path, extra: &[(&str, &str)]) -> Ess {
    let mut args: Vec<String> = vec![
        "--host".into(),
        "127.0.0.1".into(),
        "--port".into(),
        port.to_string(),
        "--conf".into(),
        format!("croupier.state.dir={}", state.display()),
    ];
    for (k, v) in extra {
        args.push("--conf".into());
        args.push(format!("{k}={v}"));
    }
    Ess::start_with(&args, &[])
}

fn restored_line(ess: &Ess) -> String {
    ess.wait_log("restored ", Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no `restored` line in {:?}", ess.log()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_survive_sigkill_and_serve_without_reregistering() {
    let state = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let port = free_port();
    // An agent that never answers (port 1 is closed): drivers are restored, nothing is deleted.
    let agent_off = [("croupier.mesos.agent.address", "127.0.0.1:1")];
    let mut ess = start(port, state.path(), &agent_off);
    assert!(restored_line(&ess).contains("restored 0 executor and 0 driver"));
    let dirs = ExecutorDirs::create(files.path(), "exec-7", 3);
    dirs.write_map_output(2, 9, &[b"first", b"", b"third block"]);
    let c = Client::connect(ess.addr).await.unwrap();
    c.register_executor(APP, "7", dirs.info.clone())
        .await
        .unwrap();
    c.register_driver(APP, 3_600_000).await.unwrap();
    drop(c);
    ess.kill();

    let ess = start(port, state.path(), &agent_off);
    let line = restored_line(&ess);
    assert!(line.contains("restored 1 executor and 1 driver"), "{line}");
    let mut ess = ess;
    let c = Client::connect(ess.addr).await.unwrap();
    let got = c
        .fetch_blocks(APP, "7", &["shuffle_2_9_0", "shuffle_2_9_2"])
        .await
        .unwrap();
    let got: Vec<(String, Bytes)> = got.into_iter().map(|(id, r)| (id, r.unwrap())).collect();
    assert_eq!(
        got,
        vec![
            ("shuffle_2_9_0".into(), Bytes::from_static(b"first")),
            ("shuffle_2_9_2".into(), Bytes::from_static(b"third block")),
        ]
    );
    let local = c.get_local_dirs(APP, &["7"]).await.unwrap();
    assert_eq!(local["7"], dirs.info.local_dirs);
    // The restored driver is known: its heartbeats are not "from an unknown app".
    c.heartbeat(APP).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !ess.log().iter().any(|l| l.contains("unknown app")),
        "{:?}",
        ess.log()
    );
    drop(c);
    ess.kill();

    // Heartbeat-only cleanup (Spark's rule): a restored driver would never heartbeat again and
    // its app would be deleted one timeout after the restart, so drivers are not restored (as
    // Spark's service, which keeps nothing, deletes nothing after a restart); executors are.
    let ess = start(
        port,
        state.path(),
        &[("croupier.mesos.agent.address", "none")],
    );
    let line = restored_line(&ess);
    assert!(line.contains("restored 1 executor and 0 driver"), "{line}");
    assert!(
        ess.log()
            .iter()
            .any(|l| l.contains("not restoring 1 driver registration")),
        "{:?}",
        ess.log()
    );
    let c = Client::connect(ess.addr).await.unwrap();
    let got = c.fetch_blocks(APP, "7", &["shuffle_2_9_0"]).await.unwrap();
    assert_eq!(got[0].1.as_ref().unwrap(), &Bytes::from_static(b"first"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_store_is_moved_aside_and_the_service_serves() {
    let state = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let port = free_port();
    let store = state.path().join(format!("registrations-{port}.redb"));
    let garbage: Vec<u8> = (0..100_000u32).map(|i| (i * 7919 % 251) as u8).collect();
    std::fs::write(&store, &garbage).unwrap();
    let conf = [
        ("croupier.mesos.agent.address", "none"),
        ("croupier.admin.address", "127.0.0.1:0"),
    ];
    let mut ess = start(port, state.path(), &conf);
    let loud = ess
        .wait_log("REGISTRATION STORE CORRUPT", Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no corruption report in {:?}", ess.log()));
    assert!(loud.contains(&store.display().to_string()), "{loud}");
    // The bad file is kept, byte for byte, beside the new one.
    let aside: Vec<_> = std::fs::read_dir(state.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains(".corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(std::fs::read(&aside[0]).unwrap(), garbage);
    // Counted in the metrics.
    let admin = ess
        .wait_log("admin endpoint listening on ", Duration::from_secs(10))
        .unwrap();
    let admin = admin[admin.find("listening on ").unwrap() + 13..]
        .trim()
        .to_owned();
    let metrics = http_get(&admin, "/metrics");
    assert!(
        metrics
            .lines()
            .any(|l| l == "croupier_shuffle_store_corrupt_total 1"),
        "{metrics}"
    );
    // New registrations are served and stored.
    let dirs = ExecutorDirs::create(files.path(), "exec-1", 2);
    dirs.write_map_output(0, 1, &[b"abc"]);
    let c = Client::connect(ess.addr).await.unwrap();
    c.register_executor(APP, "1", dirs.info.clone())
        .await
        .unwrap();
    let got = c.fetch_blocks(APP, "1", &["shuffle_0_1_0"]).await.unwrap();
    assert_eq!(got[0].1.as_ref().unwrap(), &Bytes::from_static(b"abc"));
    drop(c);
    ess.stop();
    let ess = start(port, state.path(), &conf);
    assert!(restored_line(&ess).contains("restored 1 executor"));
    assert!(!ess.log().iter().any(|l| l.contains("CORRUPT")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_an_app_removes_its_records() {
    let state = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let port = free_port();
    let conf = [
        ("croupier.mesos.agent.address", "none"),
        ("spark.shuffle.cleaner.interval", "200ms"),
    ];
    let mut ess = start(port, state.path(), &conf);
    let gone = ExecutorDirs::create(files.path(), "gone", 1);
    let kept = ExecutorDirs::create(files.path(), "kept", 1);
    let c = Client::connect(ess.addr).await.unwrap();
    c.register_executor("app-gone", "1", gone.info.clone())
        .await
        .unwrap();
    c.register_driver("app-gone", 300).await.unwrap();
    c.register_executor("app-kept", "1", kept.info.clone())
        .await
        .unwrap();
    ess.wait_log("Application app-gone timed out", Duration::from_secs(20))
        .unwrap_or_else(|| panic!("app-gone was not removed: {:?}", ess.log()));
    ess.wait_log(
        "removed the shuffle files of app-gone",
        Duration::from_secs(20),
    )
    .unwrap_or_else(|| panic!("{:?}", ess.log()));
    assert!(!Path::new(&gone.info.local_dirs[0]).exists());
    drop(c);
    ess.stop();
    let ess = start(port, state.path(), &conf);
    let line = restored_line(&ess);
    assert!(line.contains("restored 1 executor and 0 driver"), "{line}");
    let c = Client::connect(ess.addr).await.unwrap();
    assert!(c.get_local_dirs("app-gone", &["1"]).await.is_err());
    assert_eq!(
        c.get_local_dirs("app-kept", &["1"]).await.unwrap()["1"],
        kept.info.local_dirs
    );
}

fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_locked_by_another_process_does_not_stop_the_service() {
    let state = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let port = free_port();
    let conf = [
        ("croupier.mesos.agent.address", "none"),
        ("croupier.admin.address", "127.0.0.1:0"),
    ];
    // Make the store file, then have another process hold its lock (util-linux flock(1)).
    let mut ess = start(port, state.path(), &conf);
    restored_line(&ess);
    ess.stop();
    let store = state.path().join(format!("registrations-{port}.redb"));
    assert!(store.exists(), "no store file at {}", store.display());
    // flock runs its command once it holds the lock (-o: the command does not inherit the
    // lock's descriptor, so killing flock releases it); the command marks that moment.
    let held = state.path().join("held");
    let mut holder = std::process::Command::new("flock")
        .args(["-x", "-o"])
        .arg(&store)
        .args(["sh", "-c", "touch \"$0\"; exec sleep 60"])
        .arg(&held)
        .spawn()
        .unwrap_or_else(|e| panic!("flock(1) from util-linux: {e}"));
    let until = std::time::Instant::now() + Duration::from_secs(20);
    while !held.exists() {
        assert!(
            std::time::Instant::now() < until,
            "flock did not take the lock of {} in 20 s",
            store.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let ess = start(port, state.path(), &conf);
    let loud = ess.wait_log("REGISTRATION STORE IN USE", Duration::from_secs(10));
    // Serves all the same, in memory.
    let dirs = ExecutorDirs::create(files.path(), "exec-3", 1);
    dirs.write_map_output(0, 2, &[b"still served"]);
    let c = Client::connect(ess.addr).await.unwrap();
    let served = c.register_executor(APP, "3", dirs.info.clone()).await;
    let got = c.fetch_blocks(APP, "3", &["shuffle_0_2_0"]).await;
    // Shown in the metrics: not persisting, and not counted as a corrupt store.
    let metrics = ess
        .wait_log("admin endpoint listening on ", Duration::from_secs(10))
        .map(|l| {
            http_get(
                l[l.find("listening on ").unwrap() + 13..].trim(),
                "/metrics",
            )
        });
    let _ = holder.kill();
    let _ = holder.wait();
    assert!(loud.is_some(), "no IN USE report in {:?}", ess.log());
    let metrics = metrics.expect("no admin endpoint line");
    for want in [
        "croupier_shuffle_store_unavailable 1",
        "croupier_shuffle_store_corrupt_total 0",
    ] {
        assert!(
            metrics.lines().any(|l| l == want),
            "no {want:?} in {metrics}"
        );
    }
    served.unwrap();
    assert_eq!(
        got.unwrap()[0].1.as_ref().unwrap(),
        &Bytes::from_static(b"still served")
    );
}
