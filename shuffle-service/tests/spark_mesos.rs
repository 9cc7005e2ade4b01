//! Spark's own Mesos driver client (`MesosExternalBlockStoreClient` from the pyspark 3.5.7 jars,
//! driven through py4j by `tests/interop/spark/mesos_driver.py`) against our service:
//! RegisterDriver + heartbeats, cleanup of a stopped application's files after its heartbeat
//! timeout, a live application's files kept, and its idle heartbeat connection never closed by the
//! service (spec section 4.2).

mod spark_support;

use std::time::Duration;

use spark_support::{run_python, Btm, Msg, Service, Tap};

#[test]
fn spark_mesos_driver_cleanup_after_heartbeat_timeout() {
    croupier_testkit::require_venv!();
    // connectionTimeout=2s is shorter than B's 4 s heartbeat interval: a service that idle-closed
    // connections would silently stop B's heartbeats and then delete B's files.
    let mut service = Service::start(&[
        ("spark.shuffle.cleaner.interval", "1s"),
        ("spark.shuffle.io.connectionTimeout", "2s"),
        // Spark's heartbeat-only rule (no Mesos agent is asked).
        ("croupier.mesos.agent.address", "none"),
    ]);
    let tap = Tap::start(service.port);
    let work = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let py = run_python(
        "mesos_driver.py",
        &[tap.port.to_string(), work.path().display().to_string()],
        Duration::from_secs(120),
    );
    let alive = service.is_running();
    let context = || {
        format!(
            "({:?} under test, {:.1?})\nstdout:\n{}\nstderr tail:\n{}\ntap: {}\nservice log:\n{}",
            service.flavour,
            py.elapsed,
            py.stdout,
            py.stderr_tail(),
            tap.summary(),
            service.log()
        )
    };
    assert!(
        py.status.success(),
        "mesos_driver.py failed: {}\n{}",
        py.status,
        context()
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
        "{}",
        context()
    );
    let app_a = py
        .info("app_A")
        .unwrap_or_else(|| panic!("no app_A line\n{}", context()));
    let app_b = py
        .info("app_B")
        .unwrap_or_else(|| panic!("no app_B line\n{}", context()));

    // The files on disk, checked here too: A's local dir gone, B's intact.
    let dirs = |app: &str| -> Vec<std::path::PathBuf> {
        let parent = work.path().join(&app[..1]);
        std::fs::read_dir(&parent)
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    };
    assert!(
        dirs(&app_a).is_empty(),
        "A's blockmgr dir survived: {:?}\n{}",
        dirs(&app_a),
        context()
    );
    let b_dirs = dirs(&app_b);
    assert_eq!(
        b_dirs.len(),
        1,
        "B's blockmgr dir is gone: {b_dirs:?}\n{}",
        context()
    );

    // On the wire: each RegisterDriver carried the app's timeout and was answered with an empty
    // RpcResponse (without it Spark never starts heartbeating), heartbeats flowed on the same
    // connection, and the service never closed B's heartbeat connection.
    let requests = tap.requests();
    for (app, timeout_ms, min_heartbeats) in [(&app_a, 4000, 4), (&app_b, 10000, 5)] {
        let (reg, _) = requests
            .iter()
            .find(|(_, b)| matches!(b, Btm::RegisterDriver { app: a, .. } if a == app))
            .unwrap_or_else(|| {
                panic!(
                    "no RegisterDriver for {app} went through the service\n{}",
                    context()
                )
            });
        let Msg::RpcRequest { id, btm } = &reg.msg else {
            unreachable!()
        };
        assert_eq!(
            btm,
            &Btm::RegisterDriver {
                app: app.clone(),
                timeout_ms
            },
            "{}",
            context()
        );
        match tap.answer(reg.conn, *id) {
            Some(Msg::RpcResponse { body, .. }) if body.is_empty() => {}
            other => panic!(
                "RegisterDriver {app} answered {other:?}, want an empty RpcResponse\n{}",
                context()
            ),
        }
        let heartbeats = requests
            .iter()
            .filter(|(e, b)| {
                e.conn == reg.conn && matches!(b, Btm::Heartbeat { app: a } if a == app)
            })
            .count();
        assert!(
            heartbeats >= min_heartbeats,
            "{heartbeats} heartbeats from {app} on its registration connection, want >= {min_heartbeats}\n{}",
            context()
        );
        let closes: Vec<(u64, bool)> = tap
            .events()
            .iter()
            .filter(|e| e.conn == reg.conn)
            .filter_map(|e| match e.msg {
                Msg::Closed { from_server } => Some((e.seq, from_server)),
                _ => None,
            })
            .collect();
        let client_close = closes.iter().find(|(_, s)| !s).map(|(q, _)| *q);
        let server_close = closes.iter().find(|(_, s)| *s).map(|(q, _)| *q);
        if let Some(server) = server_close {
            assert!(
                client_close.is_some_and(|c| c < server),
                "the service closed {app}'s heartbeat connection (conn {}) before the driver did\n{}",
                reg.conn,
                context()
            );
        }
    }
    let executors = requests
        .iter()
        .filter(|(_, b)| matches!(b, Btm::RegisterExecutor { .. }))
        .count();
    assert_eq!(executors, 2, "{}", context());
    for e in tap.events() {
        assert!(
            !matches!(
                e.msg,
                Msg::RpcFailure { .. } | Msg::Garbage { .. } | Msg::OtherFrame { .. }
            ),
            "unexpected {:?}\n{}",
            e.msg,
            context()
        );
    }
    assert!(alive, "the service died\n{}", context());
    service.stop_cleanly();
}
