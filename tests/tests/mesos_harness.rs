//! Real-Mesos tier: the harness itself, against a real master and agent.
//!
//! A port picked for a master or agent can be taken by another process before the server binds
//! it; libprocess then aborts (`Failed to bind on ADDR: Address already in use`). The harness
//! recognises that death and starts the server again on another port, so a test fails only for
//! what it tests.

use std::net::TcpListener;

use croupier_testkit::mesos::{ClusterOpts, Install, MesosCluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_whose_port_is_taken_starts_on_another() {
    Install::require();
    // Hold a port and ask for it (a later agent flag wins over the harness's own --port).
    let held = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let taken = held.local_addr().expect("local address").port();
    let mut opts = ClusterOpts::reference();
    opts.agent_flags.push(format!("--port={taken}"));
    let cluster = MesosCluster::start(opts)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let log = cluster.agent_log();
    assert!(
        log.contains(&format!("Failed to bind on 127.0.0.1:{taken}"))
            && log.contains("Address already in use"),
        "the first agent start was expected to find port {taken} taken; agent log:\n{log}"
    );
    assert_ne!(cluster.agent_addr().port(), taken);
    assert!(!cluster.agent_id().is_empty(), "the agent registered");
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_whose_port_is_taken_starts_on_another() {
    Install::require();
    let held = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let taken = held.local_addr().expect("local address").port();
    let mut opts = ClusterOpts::reference();
    opts.master_flags.push(format!("--port={taken}"));
    let cluster = MesosCluster::start(opts)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let log = cluster.master_log();
    assert!(
        log.contains(&format!("Failed to bind on 127.0.0.1:{taken}"))
            && log.contains("Address already in use"),
        "the first master start was expected to find port {taken} taken; master log:\n{log}"
    );
    assert_ne!(cluster.master_addr().port(), taken);
    assert!(!cluster.agent_id().is_empty(), "the agent registered");
    drop(held);
}
