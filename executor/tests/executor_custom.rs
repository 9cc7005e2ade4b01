//! Custom-executor mode: several concurrent tasks, delivered by LAUNCH_GROUP and by LAUNCH with
//! the CommandInfo in `TaskInfo.data`, each in its own `tasks/<id>/` directory; group semantics.

mod common;

use std::time::Duration;

use common::*;
use croupier_proto::v1::{environment, CommandInfo, Environment, TaskState};

#[tokio::test]
async fn launch_group_runs_tasks_concurrently_in_their_own_directories() {
    let mut agent = start(cfg()).await;
    let ids = ["g1", "g2", "g3"];
    let tasks = ids
        .iter()
        .map(|id| {
            let mut t = agent.command_task(
                id,
                // Each marks itself up and finishes only once all three are up at once
                // (within 20 s): they ran side by side.
                "echo \"$MESOS_TASK_ID $MESOS_SANDBOX $GREETING\"; pwd > pwd; \
                 touch ../$MESOS_TASK_ID.up; i=0; \
                 until [ -e ../g1.up ] && [ -e ../g2.up ] && [ -e ../g3.up ]; do \
                 i=$((i+1)); [ $i -gt 400 ] && exit 1; sleep 0.05; done",
            );
            if let Some(c) = t.command.as_mut() {
                c.environment = Some(Environment {
                    variables: vec![environment::Variable {
                        name: "GREETING".into(),
                        value: Some(format!("hi-{id}")),
                        ..Default::default()
                    }],
                });
            }
            t
        })
        .collect();
    agent.launch_group(tasks).unwrap();
    for id in ids {
        let done = agent
            .wait_terminal(id, Duration::from_secs(40))
            .await
            .unwrap();
        assert_eq!(
            done.state,
            TaskState::TaskFinished as i32,
            "{id} did not see its siblings running: {done:?}"
        );
    }
    for id in ids {
        let dir = task_dir(&agent, id);
        let out = std::fs::read_to_string(dir.join("stdout")).unwrap();
        assert_eq!(out.trim(), format!("{id} {} hi-{id}", dir.display()));
        let pwd = std::fs::read_to_string(dir.join("pwd")).unwrap();
        assert_eq!(pwd.trim(), dir.display().to_string());
        assert!(dir.join("stderr").exists());
    }
    shutdown_ok(&mut agent).await;
}

#[tokio::test]
async fn launch_with_command_in_data_as_protobuf_and_json() {
    let mut agent = start(cfg()).await;
    let proto = CommandInfo {
        value: Some("echo from-protobuf; sleep 1".into()),
        ..Default::default()
    };
    agent.launch(agent.data_task("pb", &proto)).unwrap();
    let mut json = agent.data_task("js", &CommandInfo::default());
    json.data =
        Some(br#"{"value":"/bin/echo","shell":false,"arguments":["echo","from-json"]}"#.to_vec());
    agent.launch(json).unwrap();
    let mut bad = agent.data_task("bad", &CommandInfo::default());
    bad.data = None;
    agent.launch(bad).unwrap();

    for id in ["pb", "js"] {
        let done = agent.wait_terminal(id, T).await.unwrap();
        assert_eq!(done.state, TaskState::TaskFinished as i32, "{id}: {done:?}");
    }
    let out = std::fs::read_to_string(task_dir(&agent, "pb").join("stdout")).unwrap();
    assert_eq!(out.trim(), "from-protobuf");
    let out = std::fs::read_to_string(task_dir(&agent, "js").join("stdout")).unwrap();
    assert_eq!(out.trim(), "from-json");
    let bad = agent.wait_terminal("bad", T).await.unwrap();
    assert_eq!(bad.state, TaskState::TaskFailed as i32);
    let msg = bad.message.unwrap_or_default();
    assert!(
        msg.contains("TaskInfo.data holding a mesos.v1.CommandInfo"),
        "{msg}"
    );
    shutdown_ok(&mut agent).await;
}

#[tokio::test]
async fn a_failed_group_member_kills_its_siblings_only() {
    let mut agent = start(cfg()).await;
    // An unrelated task outside the group must not be touched.
    agent
        .launch(agent.command_task("bystander", "echo $$ > pid; exec sleep 1000"))
        .unwrap();
    agent
        .wait_update("bystander", TaskState::TaskRunning, T)
        .await
        .unwrap();
    let group = vec![
        // Fails once both siblings run (their pid files are written).
        agent.command_task(
            "fails",
            "until [ -s ../sib1/pid ] && [ -s ../sib2/pid ]; do sleep 0.05; done; exit 1",
        ),
        agent.command_task("sib1", "echo $$ > pid; exec sleep 1000"),
        agent.command_task("sib2", "echo $$ > pid; exec sleep 1000"),
    ];
    agent.launch_group(group).unwrap();
    let sib_pids = [
        read_pid(&task_dir(&agent, "sib1").join("pid"), T).await,
        read_pid(&task_dir(&agent, "sib2").join("pid"), T).await,
    ];
    let failed = agent.wait_terminal("fails", T).await.unwrap();
    assert_eq!(failed.state, TaskState::TaskFailed as i32);
    for id in ["sib1", "sib2"] {
        let s = agent.wait_terminal(id, T).await.unwrap();
        assert_eq!(s.state, TaskState::TaskKilled as i32, "{id}");
    }
    wait_gone(&sib_pids, Duration::from_secs(2)).await.unwrap();
    let bystander = read_pid(&task_dir(&agent, "bystander").join("pid"), T).await;
    assert!(alive(bystander));
    assert!(agent.recorded().terminal_updates("bystander").is_empty());
    shutdown_ok(&mut agent).await;
}

#[tokio::test]
async fn idle_timeout_exits_after_the_last_task() {
    let mut c = cfg();
    c.extra_env
        .push(("CROUPIER_EXECUTOR_IDLE_TIMEOUT".into(), "1secs".into()));
    let mut agent = start(c).await;
    agent.launch(agent.command_task("one", "sleep 1")).unwrap();
    agent.wait_terminal("one", T).await.unwrap();
    let status = agent.wait_executor_exit(T).await.unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(agent
        .executor_stderr()
        .contains("CROUPIER_EXECUTOR_IDLE_TIMEOUT"));
}

#[tokio::test]
async fn custom_mode_fetches_task_uris_into_the_task_directory() {
    use croupier_proto::v1::command_info::Uri;
    use croupier_proto::v1::task_status::Reason;
    let src = tempfile::tempdir().unwrap();
    let payload = src.path().join("payload.txt");
    std::fs::write(&payload, "fetched-bytes\n").unwrap();
    let mut agent = start(cfg()).await;
    let mut ok = agent.command_task("fetch-ok", "cat payload.txt");
    let mut missing = agent.command_task("fetch-missing", "true");
    if let Some(c) = ok.command.as_mut() {
        c.uris = vec![Uri {
            value: format!("file://{}", payload.display()),
            ..Default::default()
        }];
    }
    if let Some(c) = missing.command.as_mut() {
        c.uris = vec![Uri {
            value: src.path().join("nope.txt").display().to_string(),
            ..Default::default()
        }];
    }
    agent.launch(ok).unwrap();
    agent.launch(missing).unwrap();
    let done = agent.wait_terminal("fetch-ok", T).await.unwrap();
    assert_eq!(done.state, TaskState::TaskFinished as i32, "{done:?}");
    let out = std::fs::read_to_string(task_dir(&agent, "fetch-ok").join("stdout")).unwrap();
    assert_eq!(out.trim(), "fetched-bytes");
    let failed = agent.wait_terminal("fetch-missing", T).await.unwrap();
    assert_eq!(failed.state, TaskState::TaskFailed as i32);
    assert_eq!(failed.reason, Some(Reason::ContainerLaunchFailed as i32));
    let msg = failed.message.unwrap_or_default();
    assert!(msg.contains("nope.txt"), "{msg}");
    assert!(!agent
        .recorded()
        .states("fetch-missing")
        .contains(&TaskState::TaskRunning));
    // One summary line per task, with its fetch figures and how it ended.
    let log = agent.executor_stderr();
    let summary = |id: &str| -> String {
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("task summary") && l.contains(&format!("task_id={id} ")))
            .collect();
        assert_eq!(lines.len(), 1, "one summary line for {id}:\n{log}");
        lines[0].to_string()
    };
    let ok_line = summary("fetch-ok");
    for field in [
        "state=TASK_FINISHED",
        "exit=status:0",
        "fetch_uris=1",
        "fetch_bytes=14",
        "cache_hits=0",
        "cache_misses=0",
        "duration_secs=",
    ] {
        assert!(ok_line.contains(field), "{field} in {ok_line}");
    }
    let failed_line = summary("fetch-missing");
    for field in [
        "state=TASK_FAILED",
        "exit=none",
        "fetch_uris=0",
        "fetch_bytes=0",
    ] {
        assert!(failed_line.contains(field), "{field} in {failed_line}");
    }
    shutdown_ok(&mut agent).await;
}

#[tokio::test]
async fn task_containers_we_cannot_give_fail_naming_the_field_and_a_plain_mesos_one_runs() {
    use croupier_proto::v1::{
        container_info, image, task_status, ContainerInfo, Image, NetworkInfo, Volume,
    };
    let mut agent = start(cfg()).await;
    let mesos = || ContainerInfo {
        r#type: container_info::Type::Mesos as i32,
        ..Default::default()
    };
    let mut cases: Vec<(&str, ContainerInfo, &str)> = Vec::new();
    let mut c = mesos();
    c.mesos = Some(container_info::MesosInfo {
        image: Some(Image {
            r#type: image::Type::Docker as i32,
            docker: Some(image::Docker {
                name: "busybox:1.36".into(),
            }),
            ..Default::default()
        }),
    });
    cases.push((
        "with-image",
        c,
        "TaskInfo.container.mesos.image asks for the image docker 'busybox:1.36'",
    ));
    let mut c = mesos();
    c.volumes.push(Volume {
        mode: croupier_proto::v1::volume::Mode::Rw as i32,
        container_path: "data".into(),
        host_path: Some("/srv/data".into()),
        image: None,
    });
    cases.push((
        "with-volume",
        c,
        "TaskInfo.container.volumes asks for a volume at 'data'",
    ));
    let mut c = mesos();
    c.network_infos.push(NetworkInfo {
        name: Some("overlay-1".into()),
        ..Default::default()
    });
    cases.push((
        "with-network",
        c,
        "TaskInfo.container.network_infos asks for joining the network 'overlay-1'",
    ));
    let docker = ContainerInfo {
        r#type: container_info::Type::Docker as i32,
        docker: Some(container_info::DockerInfo {
            image: "busybox".into(),
            network: None,
        }),
        ..Default::default()
    };
    cases.push((
        "docker",
        docker,
        "TaskInfo.container.type asks for a DOCKER container",
    ));
    for (id, ci, _) in &cases {
        let mut t = agent.command_task(id, "echo should-not-run > ran");
        t.container = Some(ci.clone());
        agent.launch(t).expect("launch sent");
    }
    let mut plain = agent.command_task("plain-mesos", "echo ran");
    plain.container = Some(mesos());
    agent.launch(plain).expect("launch sent");

    for (id, _, says) in &cases {
        let done = agent.wait_terminal(id, T).await.expect("terminal");
        assert_eq!(done.state, TaskState::TaskFailed as i32, "{id}: {done:?}");
        assert_eq!(
            done.reason,
            Some(task_status::Reason::ContainerLaunchFailed as i32),
            "{id}: {done:?}"
        );
        let msg = done.message.clone().unwrap_or_default();
        assert!(msg.contains(says), "{id}: {msg}");
        assert!(msg.contains("no nested containers"), "{id}: {msg}");
        assert!(!task_dir(&agent, id).join("ran").exists(), "{id} ran");
        assert_eq!(
            agent.recorded().states(id),
            vec![TaskState::TaskStarting, TaskState::TaskFailed],
            "{id}"
        );
    }
    let done = agent
        .wait_terminal("plain-mesos", T)
        .await
        .expect("terminal");
    assert_eq!(done.state, TaskState::TaskFinished as i32, "{done:?}");
    let out = std::fs::read_to_string(task_dir(&agent, "plain-mesos").join("stdout")).unwrap();
    assert_eq!(out.trim(), "ran");
    shutdown_ok(&mut agent).await;
}
