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
    port_taken_first(Role::Agent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_whose_port_is_taken_starts_on_another() {
    port_taken_first(Role::Master).await;
}

enum Role {
    Master,
    Agent,
}

/// Holds a port, asks for it as the role's `--port` (an extra flag replaces the harness's own),
/// and checks that the first start died of it and the cluster came up on another port.
async fn port_taken_first(role: Role) {
    Install::require();
    let held = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let taken = held.local_addr().expect("local address").port();
    let mut opts = ClusterOpts::reference();
    let flag = format!("--port={taken}");
    match role {
        Role::Master => opts.master_flags.push(flag),
        Role::Agent => opts.agent_flags.push(flag),
    }
    let cluster = MesosCluster::start(opts)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (log, port) = match role {
        Role::Master => (cluster.master_log(), cluster.master_addr().port()),
        Role::Agent => (cluster.agent_log(), cluster.agent_addr().port()),
    };
    assert!(
        log.contains(&format!("Failed to bind on 127.0.0.1:{taken}"))
            && log.contains("Address already in use"),
        "the first start was expected to find port {taken} taken; log:\n{log}"
    );
    assert_ne!(port, taken);
    assert!(!cluster.agent_id().is_empty(), "the agent registered");
    drop(held);
}
