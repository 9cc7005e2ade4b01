//! croupier-proto against the official Mesos Java classes in `mesos-1.4.3-shaded-protobuf.jar`
//! (shipped in pyspark's `jars/`): every field and enum value we declare exists there with the
//! same number, label, type and default; our Call bytes parse there (initialized, no unknown
//! fields, byte-identical re-encoding); Events encoded there decode here field by field and
//! re-encode byte-identically.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use croupier_proto::v1::executor::{call, event, Call, Event};
use croupier_proto::v1::*;
use croupier_testkit::env;
use prost::Message;
use prost_reflect::{Cardinality, DescriptorPool, Kind};

/// Values we declare that Mesos 1.4.3 did not have yet (all later additions upstream).
/// Checked against upstream HEAD `include/mesos/v1/mesos.proto` (numbers as we declare them).
const NEWER_THAN_1_4_3: &[&str] = &[
    // HEARTBEAT calls/events: Mesos 1.8 (MESOS-7564).
    "E mesos.v1.executor.Event.Type HEARTBEAT",
    "E mesos.v1.executor.Call.Type HEARTBEAT",
    "E mesos.v1.TaskStatus.Reason REASON_AGENT_REMOVED_BY_OPERATOR",
    "E mesos.v1.TaskStatus.Reason REASON_AGENT_REREGISTERED",
    "E mesos.v1.TaskStatus.Reason REASON_MAX_COMPLETION_TIME_REACHED",
    "E mesos.v1.TaskStatus.Reason REASON_AGENT_DRAINING",
    "F mesos.v1.HealthCheck.HTTPCheckInfo protocol",
    "F mesos.v1.HealthCheck.TCPCheckInfo protocol",
    "F mesos.v1.TaskInfo max_completion_time",
];

struct Java {
    _dir: tempfile::TempDir,
    classes: PathBuf,
    jar: PathBuf,
}

fn java() -> Java {
    let jars = env::spark_home().join("jars");
    let jar = std::fs::read_dir(&jars)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}; run scripts/test.sh", jars.display()))
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.starts_with("mesos-") && name.ends_with("-shaded-protobuf.jar")
        })
        .unwrap_or_else(|| {
            panic!(
                "no mesos-*-shaded-protobuf.jar in {}: run scripts/test.sh",
                jars.display()
            )
        });
    let dir = tempfile::tempdir().expect("temp dir");
    let classes = dir.path().to_path_buf();
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("interop/mesos/CrossCheck.java");
    let out = Command::new("javac")
        .arg("-cp")
        .arg(&jar)
        .arg("-d")
        .arg(&classes)
        .arg(&src)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run javac ({e}): a JDK is required; run scripts/test.sh")
        });
    assert!(
        out.status.success(),
        "javac {} failed:\n{}",
        src.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Java {
        _dir: dir,
        classes,
        jar,
    }
}

impl Java {
    fn run(&self, args: &[&str]) -> String {
        let cp = format!("{}:{}", self.classes.display(), self.jar.display());
        let out = Command::new("java")
            .arg("-cp")
            .arg(cp)
            .arg("CrossCheck")
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run java ({e}); run scripts/test.sh"));
        assert!(
            out.status.success(),
            "java CrossCheck {args:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

fn java_type_name(kind: &Kind) -> &'static str {
    match kind {
        Kind::Double => "DOUBLE",
        Kind::Float => "FLOAT",
        Kind::Int32 => "INT32",
        Kind::Int64 => "INT64",
        Kind::Uint32 => "UINT32",
        Kind::Uint64 => "UINT64",
        Kind::Sint32 => "SINT32",
        Kind::Sint64 => "SINT64",
        Kind::Fixed32 => "FIXED32",
        Kind::Fixed64 => "FIXED64",
        Kind::Sfixed32 => "SFIXED32",
        Kind::Sfixed64 => "SFIXED64",
        Kind::Bool => "BOOL",
        Kind::String => "STRING",
        Kind::Bytes => "BYTES",
        Kind::Message(_) => "MESSAGE",
        Kind::Enum(_) => "ENUM",
    }
}

#[test]
fn every_declared_field_and_enum_value_matches_mesos_1_4_3() {
    croupier_testkit::require_venv!();
    let java = java();
    let dump = java.run(&["descriptors"]);
    // (message, field) -> (number, label, type, type name, default)
    let mut fields: HashMap<(String, String), Vec<String>> = HashMap::new();
    let mut enums: HashMap<(String, String), i32> = HashMap::new();
    for line in dump.lines() {
        let cols: Vec<&str> = line.split('\t').collect();
        match cols.as_slice() {
            ["F", msg, name, rest @ ..] => {
                fields.insert(
                    (msg.to_string(), name.to_string()),
                    rest.iter().map(|s| s.to_string()).collect(),
                );
            }
            ["E", en, name, num] => {
                enums.insert(
                    (en.to_string(), name.to_string()),
                    num.parse().expect("number"),
                );
            }
            _ => {}
        }
    }
    assert!(fields.len() > 300, "descriptor dump looks truncated");

    let pool = DescriptorPool::decode(croupier_proto::FILE_DESCRIPTOR_SET).expect("our pool");
    let mut problems = Vec::new();
    let mut checked_fields = 0;
    let mut checked_values = 0;
    for msg in pool.all_messages() {
        for f in msg.fields() {
            let key = (msg.full_name().to_string(), f.name().to_string());
            let Some(theirs) = fields.get(&key) else {
                if NEWER_THAN_1_4_3.contains(&format!("F {} {}", key.0, key.1).as_str()) {
                    continue;
                }
                problems.push(format!("field {}.{} missing in Mesos 1.4.3", key.0, key.1));
                continue;
            };
            let label = match f.cardinality() {
                Cardinality::Required => "required",
                Cardinality::Repeated => "repeated",
                Cardinality::Optional => "optional",
            };
            let type_name = match f.kind() {
                Kind::Message(m) => m.full_name().to_string(),
                Kind::Enum(e) => e.full_name().to_string(),
                _ => "-".to_string(),
            };
            let ours = [
                f.number().to_string(),
                label.to_string(),
                java_type_name(&f.kind()).to_string(),
                type_name,
            ];
            if theirs[..4] != ours[..] {
                problems.push(format!(
                    "field {}.{}: ours {ours:?}, Mesos {theirs:?}",
                    key.0, key.1
                ));
            }
            // Explicit defaults (the Java side reports one for every scalar; compare ours only
            // where we declare one, and require Mesos to have the same).
            let our_default = f.field_descriptor_proto().default_value.clone();
            if let Some(d) = our_default {
                let same = match f.kind() {
                    Kind::Double => d.parse::<f64>().ok() == theirs[4].parse::<f64>().ok(),
                    _ => d == theirs[4],
                };
                if !same {
                    problems.push(format!(
                        "default of {}.{}: ours {d:?}, Mesos {:?}",
                        key.0, key.1, theirs[4]
                    ));
                }
            }
            checked_fields += 1;
        }
    }
    for en in pool.all_enums() {
        for v in en.values() {
            let tag = format!("E {} {}", en.full_name(), v.name());
            match enums.get(&(en.full_name().to_string(), v.name().to_string())) {
                Some(n) if *n == v.number() => checked_values += 1,
                Some(n) => problems.push(format!("{tag}: ours {}, Mesos {n}", v.number())),
                None if NEWER_THAN_1_4_3.contains(&tag.as_str()) => {}
                None => problems.push(format!("{tag} missing in Mesos 1.4.3")),
            }
        }
    }
    assert!(problems.is_empty(), "mismatches:\n{}", problems.join("\n"));
    assert!(
        checked_fields > 150 && checked_values > 90,
        "{checked_fields} {checked_values}"
    );
}

fn uuid4() -> Vec<u8> {
    uuid::Uuid::new_v4().as_bytes().to_vec()
}

fn parse_in_java(java: &Java, dir: &Path, name: &str, call: &Call) -> String {
    let path = dir.join(format!("{name}.bin"));
    std::fs::write(&path, call.encode_to_vec()).expect("write call");
    let out = java.run(&["parse-call", path.to_str().expect("utf-8 path")]);
    assert!(out.contains("initialized=true"), "{name}: {out}");
    assert!(out.contains("unknown_fields=0"), "{name}: {out}");
    assert!(out.contains("reencoded_equal=true"), "{name}: {out}");
    out
}

fn ids() -> (ExecutorId, FrameworkId) {
    (
        ExecutorId {
            value: "exec-1".into(),
        },
        FrameworkId {
            value: "fw-1".into(),
        },
    )
}

fn full_status(uuid: Vec<u8>) -> TaskStatus {
    TaskStatus {
        task_id: TaskId {
            value: "task-1".into(),
        },
        state: TaskState::TaskFailed as i32,
        message: Some("Command exited with status 3".into()),
        source: Some(task_status::Source::Executor as i32),
        reason: Some(task_status::Reason::CommandExecutorFailed as i32),
        data: Some(vec![1, 2, 3]),
        executor_id: Some(ids().0),
        timestamp: Some(1_700_000_000.25),
        uuid: Some(uuid),
        healthy: Some(false),
        labels: Some(Labels {
            labels: vec![Label {
                key: "a".into(),
                value: Some("b".into()),
            }],
        }),
        container_status: Some(ContainerStatus {
            executor_pid: Some(4242),
            container_id: Some(ContainerId {
                value: "c-1".into(),
                parent: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn our_calls_parse_in_the_official_classes() {
    croupier_testkit::require_venv!();
    let java = java();
    let dir = tempfile::tempdir().expect("temp dir");
    let (eid, fid) = ids();

    let uuid = uuid4();
    let update = Call {
        executor_id: eid.clone(),
        framework_id: fid.clone(),
        r#type: Some(call::Type::Update as i32),
        update: Some(call::Update {
            status: full_status(uuid.clone()),
        }),
        ..Default::default()
    };
    let out = parse_in_java(&java, dir.path(), "update", &update);
    for want in [
        "type: UPDATE",
        "state: TASK_FAILED",
        "source: SOURCE_EXECUTOR",
        "reason: REASON_COMMAND_EXECUTOR_FAILED",
        "message: \"Command exited with status 3\"",
        "timestamp: 1.70000000025E9",
        "executor_pid: 4242",
        "uuid_len=16",
        "value: \"exec-1\"",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }

    let task = TaskInfo {
        name: "t".into(),
        task_id: TaskId {
            value: "task-1".into(),
        },
        agent_id: AgentId {
            value: "agent-1".into(),
        },
        command: Some(CommandInfo {
            value: Some("sleep 1".into()),
            shell: Some(true),
            environment: Some(Environment {
                variables: vec![environment::Variable {
                    name: "X".into(),
                    value: Some("1".into()),
                    r#type: Some(environment::variable::Type::Value as i32),
                    secret: None,
                }],
            }),
            uris: vec![command_info::Uri {
                value: "file:///x.tgz".into(),
                cache: Some(true),
                ..Default::default()
            }],
            ..Default::default()
        }),
        kill_policy: Some(KillPolicy {
            grace_period: Some(DurationInfo {
                nanoseconds: 3_000_000_000,
            }),
        }),
        ..Default::default()
    };
    let subscribe = Call {
        executor_id: eid.clone(),
        framework_id: fid.clone(),
        r#type: Some(call::Type::Subscribe as i32),
        subscribe: Some(call::Subscribe {
            unacknowledged_tasks: vec![task],
            unacknowledged_updates: vec![call::Update {
                status: full_status(uuid4()),
            }],
        }),
        ..Default::default()
    };
    let out = parse_in_java(&java, dir.path(), "subscribe", &subscribe);
    for want in [
        "type: SUBSCRIBE",
        "unacknowledged_tasks {",
        "unacknowledged_updates {",
        "nanoseconds: 3000000000",
        "cache: true",
        "name: \"X\"",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }

    // The empty SUBSCRIBE must still carry `subscribe` (tag 0x22 0x00).
    let empty = Call {
        executor_id: eid.clone(),
        framework_id: fid.clone(),
        r#type: Some(call::Type::Subscribe as i32),
        subscribe: Some(call::Subscribe::default()),
        ..Default::default()
    };
    let out = parse_in_java(&java, dir.path(), "subscribe_empty", &empty);
    assert!(out.contains("subscribe {\n}"), "{out}");

    let message = Call {
        executor_id: eid,
        framework_id: fid,
        r#type: Some(call::Type::Message as i32),
        message: Some(call::Message {
            data: b"to the framework".to_vec(),
        }),
        ..Default::default()
    };
    let out = parse_in_java(&java, dir.path(), "message", &message);
    assert!(out.contains("data: \"to the framework\""), "{out}");
}

fn decode_event(dir: &Path, name: &str) -> Event {
    let bytes = std::fs::read(dir.join(format!("{name}.bin"))).expect("java wrote it");
    let ev = Event::decode(bytes.as_slice()).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(
        croupier_proto::json::missing_required_fields::<Event>(&bytes).is_empty(),
        "{name}"
    );
    assert_eq!(
        ev.encode_to_vec(),
        bytes,
        "{name}: re-encoding is byte-identical"
    );
    ev
}

#[test]
fn events_encoded_by_the_official_classes_decode_here() {
    croupier_testkit::require_venv!();
    let java = java();
    let dir = tempfile::tempdir().expect("temp dir");
    java.run(&["encode-events", dir.path().to_str().expect("utf-8 path")]);

    let sub = decode_event(dir.path(), "subscribed");
    assert_eq!(sub.r#type, Some(event::Type::Subscribed as i32));
    let s = sub.subscribed.expect("subscribed");
    assert_eq!(s.executor_info.executor_id.value, "exec-1");
    assert_eq!(
        s.executor_info.r#type,
        Some(executor_info::Type::Custom as i32)
    );
    assert_eq!(s.executor_info.name.as_deref(), Some("croupier"));
    assert_eq!(
        s.executor_info.shutdown_grace_period.map(|d| d.nanoseconds),
        Some(5_000_000_000)
    );
    let cmd = s.executor_info.command.expect("command");
    assert_eq!(cmd.value.as_deref(), Some("/usr/bin/croupier-executor"));
    assert_eq!(cmd.shell, Some(false));
    assert_eq!(cmd.arguments, vec!["croupier-executor"]);
    assert_eq!(
        s.framework_info.id.map(|i| i.value).as_deref(),
        Some("fw-1")
    );
    assert_eq!(s.framework_info.user, "root");
    assert_eq!(s.framework_info.checkpoint, Some(true));
    assert_eq!(
        s.framework_info.capabilities[0].r#type,
        Some(framework_info::capability::Type::TaskKillingState as i32)
    );
    assert_eq!(s.agent_info.hostname, "agent.example");
    assert_eq!(s.agent_info.port, Some(5051));
    assert_eq!(s.agent_info.id.map(|i| i.value).as_deref(), Some("agent-1"));
    let cid = s.container_id.expect("container id");
    assert_eq!(cid.value, "container-1");
    assert_eq!(cid.parent.map(|p| p.value).as_deref(), Some("parent-1"));

    let launch = decode_event(dir.path(), "launch");
    assert_eq!(launch.r#type, Some(event::Type::Launch as i32));
    let task = launch.launch.expect("launch").task;
    assert_eq!(task.name, "task one");
    assert_eq!(task.task_id.value, "task-1");
    assert_eq!(task.agent_id.value, "agent-1");
    assert_eq!(task.data.as_deref(), Some(&[0u8, 1, 2, 0xff][..]));
    assert_eq!(
        task.kill_policy
            .and_then(|k| k.grace_period)
            .map(|d| d.nanoseconds),
        Some(7_000_000_000)
    );
    let label = &task.labels.expect("labels").labels[0];
    assert_eq!(
        (label.key.as_str(), label.value.as_deref()),
        ("k", Some("v"))
    );
    assert_eq!(task.resources.len(), 2);
    assert_eq!(task.resources[0].name, "cpus");
    assert_eq!(task.resources[0].r#type, value::Type::Scalar as i32);
    assert_eq!(
        task.resources[0].scalar.as_ref().map(|s| s.value),
        Some(0.5)
    );
    #[allow(deprecated)] // `role` is deprecated upstream but still on the wire.
    let role = task.resources[0].role.clone();
    assert_eq!(role.as_deref(), Some("*"));
    let range = &task.resources[1].ranges.as_ref().expect("ranges").range[0];
    assert_eq!((range.begin, range.end), (31000, 31010));
    let cmd = task.command.expect("command");
    assert_eq!(cmd.value.as_deref(), Some("/bin/echo"));
    assert_eq!(cmd.shell, Some(false));
    assert_eq!(cmd.arguments, vec!["echo", "hi"]);
    assert_eq!(cmd.user.as_deref(), Some("nobody"));
    let uri = &cmd.uris[0];
    assert_eq!(uri.value, "http://example.invalid/app.tgz");
    assert_eq!(
        (
            uri.executable,
            uri.extract,
            uri.cache,
            uri.output_file.as_deref()
        ),
        (Some(false), Some(true), Some(true), Some("app.tgz"))
    );
    let var = &cmd.environment.expect("environment").variables[0];
    assert_eq!(var.name, "GREETING");
    assert_eq!(var.value.as_deref(), Some("hello"));
    assert_eq!(var.r#type, Some(environment::variable::Type::Value as i32));

    let group = decode_event(dir.path(), "launch_group");
    assert_eq!(group.r#type, Some(event::Type::LaunchGroup as i32));
    let tasks = group.launch_group.expect("launch_group").task_group.tasks;
    let ids: Vec<&str> = tasks.iter().map(|t| t.task_id.value.as_str()).collect();
    assert_eq!(ids, vec!["task-1", "task-2"]);

    let kill = decode_event(dir.path(), "kill");
    assert_eq!(kill.r#type, Some(event::Type::Kill as i32));
    let k = kill.kill.expect("kill");
    assert_eq!(k.task_id.value, "task-1");
    assert_eq!(
        k.kill_policy
            .and_then(|p| p.grace_period)
            .map(|d| d.nanoseconds),
        Some(1_500_000_000)
    );

    let ack = decode_event(dir.path(), "acknowledged");
    assert_eq!(ack.r#type, Some(event::Type::Acknowledged as i32));
    let a = ack.acknowledged.expect("acknowledged");
    assert_eq!(a.task_id.value, "task-1");
    assert_eq!(a.uuid, (0..16u8).map(|i| i * 17).collect::<Vec<u8>>());

    let msg = decode_event(dir.path(), "message");
    assert_eq!(msg.r#type, Some(event::Type::Message as i32));
    assert_eq!(msg.message.expect("message").data, b"framework says hi");

    let err = decode_event(dir.path(), "error");
    assert_eq!(err.r#type, Some(event::Type::Error as i32));
    assert_eq!(err.error.expect("error").message, "boom");

    let shutdown = decode_event(dir.path(), "shutdown");
    assert_eq!(shutdown.r#type, Some(event::Type::Shutdown as i32));
    assert_eq!(shutdown.encode_to_vec(), vec![0x08, 0x07]);
}
