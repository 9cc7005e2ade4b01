//! How the executor reaches the agent: over the unix socket of `MESOS_DOMAIN_SOCKET` when the
//! agent gives one (its `--http_executor_domain_sockets`).

mod common;

use common::*;
use croupier_proto::v1::TaskState;

#[tokio::test]
async fn the_domain_socket_is_used_when_the_agent_gives_one() {
    let mut c = cfg();
    // The stand-in serves only the socket: MESOS_AGENT_ENDPOINT's TCP port is closed.
    c.domain_socket = true;
    let mut agent = start(c).await;
    agent
        .launch(agent.command_task("over-unix", "echo via-socket"))
        .expect("launch sent");
    let done = agent.wait_terminal("over-unix", T).await.expect("terminal");
    assert_eq!(
        done.state,
        TaskState::TaskFinished as i32,
        "{done:?}\nexecutor log:\n{}",
        agent.executor_stderr()
    );
    let log = agent.executor_stderr();
    assert!(log.contains("agent.sock"), "{log}");
    shutdown_ok(&mut agent).await;
}
