//! The Mesos JSON mapping of our messages, as the agent speaks it on `/api/v1/executor` when a
//! client asks for `application/json`: proto field names (snake_case), enums by name, `bytes`
//! as standard base64, 64-bit integers and doubles as JSON numbers, unset optional fields left out.
//!
//! Built on `prost-reflect` and the descriptor set of our own `.proto` files: a prost message is
//! re-read as a dynamic message and serialized with those options (and the other way round).

use std::sync::OnceLock;

use prost::{Message, Name};
use prost_reflect::{
    Cardinality, DescriptorPool, DeserializeOptions, DynamicMessage, Kind, MessageDescriptor,
    ReflectMessage, SerializeOptions, Value as RValue,
};
use serde_json::Value;

use crate::v1::executor::{Call, Event};
use crate::v1::CommandInfo;

/// A JSON document that does not map onto the expected message. Not retryable.
#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    /// Not JSON at all.
    #[error("failed to parse body into JSON: {0}")]
    Syntax(#[source] serde_json::Error),
    /// JSON, but not a valid `message` (unknown enum name, wrong type, bad base64, ...).
    #[error("failed to convert JSON into {message} protobuf: {detail}")]
    Convert {
        /// The protobuf message's full name.
        message: String,
        /// What was wrong.
        detail: String,
    },
    /// Valid, but proto2 `required` fields are missing (dotted paths, as Mesos reports them).
    #[error("failed to convert JSON into {message} protobuf: Missing required fields: {}", fields.join(", "))]
    MissingRequired {
        /// The protobuf message's full name.
        message: String,
        /// Paths of the missing fields, e.g. `executor_id.value`.
        fields: Vec<String>,
    },
    /// Internal: our descriptor set does not describe the type (a build problem).
    #[error("message type {0} is not in croupier-proto's descriptor set")]
    UnknownType(String),
}

impl JsonError {
    /// Always `false`: the document must be fixed.
    pub fn is_retryable(&self) -> bool {
        false
    }
}

fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        // The descriptor set is produced by our own build script from our own .proto files.
        DescriptorPool::decode(crate::FILE_DESCRIPTOR_SET)
            .unwrap_or_else(|e| panic!("croupier-proto descriptor set is corrupt: {e}"))
    })
}

fn descriptor<M: Name>() -> Result<MessageDescriptor, JsonError> {
    let name = M::full_name();
    pool()
        .get_message_by_name(&name)
        .ok_or(JsonError::UnknownType(name))
}

fn serialize_options() -> SerializeOptions {
    SerializeOptions::new()
        .use_proto_field_name(true)
        .stringify_64_bit_integers(false)
        .use_enum_numbers(false)
        .skip_default_fields(true)
}

/// Any of our messages to its Mesos JSON form.
pub fn to_json<M: Message + Name>(msg: &M) -> Value {
    let dynamic = match descriptor::<M>().and_then(|d| {
        DynamicMessage::decode(d, msg.encode_to_vec().as_slice()).map_err(|e| JsonError::Convert {
            message: M::full_name(),
            detail: e.to_string(),
        })
    }) {
        Ok(m) => m,
        // Our own encoding of our own type always re-decodes against our own descriptors.
        Err(e) => panic!("croupier-proto: {e}"),
    };
    dynamic
        .serialize_with_options(serde_json::value::Serializer, &serialize_options())
        .unwrap_or(Value::Null)
}

/// Any of our messages from its Mesos JSON form. Unknown fields are ignored (newer peers);
/// missing proto2 `required` fields are an error, as in Mesos.
pub fn from_json<M: Message + Name + Default>(json: &Value) -> Result<M, JsonError> {
    let desc = descriptor::<M>()?;
    let options = DeserializeOptions::new().deny_unknown_fields(false);
    let dynamic = DynamicMessage::deserialize_with_options(desc, json, &options).map_err(|e| {
        JsonError::Convert {
            message: M::full_name(),
            detail: e.to_string(),
        }
    })?;
    let missing = missing_required(&dynamic);
    if !missing.is_empty() {
        return Err(JsonError::MissingRequired {
            message: M::full_name(),
            fields: missing,
        });
    }
    dynamic.transcode_to::<M>().map_err(|e| JsonError::Convert {
        message: M::full_name(),
        detail: e.to_string(),
    })
}

/// Like [`from_json`], from raw bytes.
pub fn from_json_slice<M: Message + Name + Default>(bytes: &[u8]) -> Result<M, JsonError> {
    let json: Value = serde_json::from_slice(bytes).map_err(JsonError::Syntax)?;
    from_json(&json)
}

/// Paths of the proto2 `required` fields missing from the protobuf encoding `bytes` of an `M`
/// (recursively), e.g. `["executor_id.value", "update.status.task_id"]`. Empty when complete.
///
/// prost's decoder does not enforce `required` (and its encoder always writes them), while the
/// Mesos agent rejects a body missing one; the agent stand-in checks received bodies with this.
/// Bytes that do not decode at all give one entry describing the decode error.
pub fn missing_required_fields<M: Name>(bytes: &[u8]) -> Vec<String> {
    match descriptor::<M>().and_then(|d| {
        DynamicMessage::decode(d, bytes).map_err(|e| JsonError::Convert {
            message: M::full_name(),
            detail: e.to_string(),
        })
    }) {
        Ok(dynamic) => missing_required(&dynamic),
        Err(e) => vec![e.to_string()],
    }
}

fn missing_required(msg: &DynamicMessage) -> Vec<String> {
    let mut out = Vec::new();
    walk_required(msg, "", &mut out);
    out
}

fn walk_required(msg: &DynamicMessage, prefix: &str, out: &mut Vec<String>) {
    for field in msg.descriptor().fields() {
        let path = format!("{prefix}{}", field.name());
        if field.cardinality() == Cardinality::Required && !msg.has_field(&field) {
            out.push(path);
            continue;
        }
        if !matches!(field.kind(), Kind::Message(_)) || !msg.has_field(&field) {
            continue;
        }
        match &*msg.get_field(&field) {
            RValue::Message(m) => walk_required(m, &format!("{path}."), out),
            RValue::List(items) => {
                for (i, item) in items.iter().enumerate() {
                    if let RValue::Message(m) = item {
                        walk_required(m, &format!("{path}[{i}]."), out);
                    }
                }
            }
            RValue::Map(entries) => {
                for (k, v) in entries {
                    if let RValue::Message(m) = v {
                        walk_required(m, &format!("{path}[{k:?}]."), out);
                    }
                }
            }
            _ => {}
        }
    }
}

/// A [`Call`] to Mesos JSON.
pub fn call_to_json(call: &Call) -> Value {
    to_json(call)
}

/// A [`Call`] from Mesos JSON.
pub fn call_from_json(json: &Value) -> Result<Call, JsonError> {
    from_json(json)
}

/// An [`Event`] to Mesos JSON.
pub fn event_to_json(event: &Event) -> Value {
    to_json(event)
}

/// An [`Event`] from Mesos JSON.
pub fn event_from_json(json: &Value) -> Result<Event, JsonError> {
    from_json(json)
}

/// A [`CommandInfo`] from Mesos JSON bytes (e.g. a `TaskInfo.data` that starts with `{`).
pub fn command_info_from_json(bytes: &[u8]) -> Result<CommandInfo, JsonError> {
    from_json_slice(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::executor::{call, event};
    use crate::v1::*;
    use serde_json::json;

    fn update_call() -> Call {
        Call {
            executor_id: ExecutorId { value: "E".into() },
            framework_id: FrameworkId { value: "F".into() },
            r#type: Some(call::Type::Update as i32),
            update: Some(call::Update {
                status: TaskStatus {
                    task_id: TaskId { value: "T".into() },
                    state: TaskState::TaskRunning as i32,
                    source: Some(task_status::Source::Executor as i32),
                    executor_id: Some(ExecutorId { value: "E".into() }),
                    uuid: Some(vec![
                        0x0f, 0x6c, 0x2a, 0x4e, 0x3b, 0x1d, 0x4c, 0x5e, 0x9a, 0x7b, 0x2d, 0x3e,
                        0x4f, 0x5a, 0x6b, 0x7c,
                    ]),
                    timestamp: Some(1_700_000_000.5),
                    ..Default::default()
                },
            }),
            ..Default::default()
        }
    }

    #[test]
    fn call_json_shape() {
        let j = call_to_json(&update_call());
        assert_eq!(
            j,
            json!({"type":"UPDATE","executor_id":{"value":"E"},"framework_id":{"value":"F"},
                   "update":{"status":{"task_id":{"value":"T"},"state":"TASK_RUNNING",
                   "source":"SOURCE_EXECUTOR","executor_id":{"value":"E"},
                   "uuid":"D2wqTjsdTF6aey0+T1prfA==","timestamp":1700000000.5}}})
        );
        assert_eq!(call_from_json(&j).expect("round trip"), update_call());
    }

    #[test]
    fn subscribe_has_empty_object() {
        let c = Call {
            executor_id: ExecutorId { value: "e".into() },
            framework_id: FrameworkId { value: "f".into() },
            r#type: Some(call::Type::Subscribe as i32),
            subscribe: Some(call::Subscribe::default()),
            ..Default::default()
        };
        assert_eq!(c.encode_to_vec(), hex("0a030a016512030a016618012200"));
        let j = call_to_json(&c);
        assert_eq!(j["subscribe"], json!({}));
        assert_eq!(call_from_json(&j).expect("parses"), c);
    }

    #[test]
    fn event_round_trip_with_int64_and_bytes() {
        let e = Event {
            r#type: Some(event::Type::Kill as i32),
            kill: Some(event::Kill {
                task_id: TaskId { value: "T".into() },
                kill_policy: Some(KillPolicy {
                    grace_period: Some(DurationInfo {
                        nanoseconds: 5_000_000_000,
                    }),
                }),
            }),
            ..Default::default()
        };
        let j = event_to_json(&e);
        assert_eq!(
            j,
            json!({"type":"KILL","kill":{"task_id":{"value":"T"},
                   "kill_policy":{"grace_period":{"nanoseconds":5000000000u64}}}})
        );
        assert_eq!(event_from_json(&j).expect("parses"), e);

        let m = Event {
            r#type: Some(event::Type::Message as i32),
            message: Some(event::Message {
                data: b"hello".to_vec(),
            }),
            ..Default::default()
        };
        let j = event_to_json(&m);
        assert_eq!(j, json!({"type":"MESSAGE","message":{"data":"aGVsbG8="}}));
        assert_eq!(event_from_json(&j).expect("parses"), m);
    }

    #[test]
    fn launch_event_round_trip() {
        let e = Event {
            r#type: Some(event::Type::Launch as i32),
            launch: Some(event::Launch {
                task: TaskInfo {
                    name: "t".into(),
                    task_id: TaskId { value: "T".into() },
                    agent_id: AgentId { value: "A".into() },
                    command: Some(CommandInfo {
                        value: Some("echo hi".into()),
                        shell: Some(true),
                        uris: vec![command_info::Uri {
                            value: "http://x/y.tgz".into(),
                            extract: Some(true),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }),
                    resources: vec![Resource {
                        name: "cpus".into(),
                        r#type: value::Type::Scalar as i32,
                        scalar: Some(value::Scalar { value: 0.5 }),
                        ..Default::default()
                    }],
                    ..Default::default()
                },
            }),
            ..Default::default()
        };
        let j = event_to_json(&e);
        assert_eq!(j["launch"]["task"]["resources"][0]["type"], json!("SCALAR"));
        assert_eq!(event_from_json(&j).expect("parses"), e);
    }

    #[test]
    fn enum_numbers_and_unknown_fields_accepted() {
        let j = json!({"type": 2, "executor_id":{"value":"E"},"framework_id":{"value":"F"},
                       "something_new": 1});
        let c = call_from_json(&j).expect("liberal");
        assert_eq!(c.r#type, Some(call::Type::Update as i32));
    }

    #[test]
    fn missing_required_reported_with_paths() {
        let j = json!({"type":"SUBSCRIBE","executor_id":{},"subscribe":{}});
        let err = call_from_json(&j).expect_err("missing");
        match &err {
            JsonError::MissingRequired { fields, .. } => {
                assert_eq!(
                    fields,
                    &vec!["executor_id.value".to_string(), "framework_id".into()]
                )
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(err
            .to_string()
            .contains("Missing required fields: executor_id.value"));
        // Hand-made protobuf: ids "e"/"f", type UPDATE, update { status { state: RUNNING } }.
        let no_task_id = hex("0a030a016512030a016618022a04") // ids, type UPDATE, update (4 bytes)
            .into_iter()
            .chain(hex("0a021001")) // status { state = 1 }
            .collect::<Vec<u8>>();
        assert_eq!(
            missing_required_fields::<Call>(&no_task_id),
            vec!["update.status.task_id".to_string()]
        );
        assert!(missing_required_fields::<Call>(&update_call().encode_to_vec()).is_empty());
        assert_eq!(missing_required_fields::<Call>(&[0x1a, 0xff]).len(), 1);
    }

    #[test]
    fn bad_enum_name_rejected() {
        let j = json!({"type":"NOPE","executor_id":{"value":"E"},"framework_id":{"value":"F"}});
        assert!(matches!(call_from_json(&j), Err(JsonError::Convert { .. })));
    }

    #[test]
    fn command_info_from_json_bytes() {
        let c = command_info_from_json(
            br#"{"value":"/bin/echo","shell":false,"arguments":["echo","hi"],
                 "environment":{"variables":[{"name":"A","value":"1"}]},
                 "uris":[{"value":"file:///tmp/x","executable":true}]}"#,
        )
        .expect("valid");
        assert_eq!(c.shell, Some(false));
        assert_eq!(c.arguments, vec!["echo", "hi"]);
        assert_eq!(c.environment.map(|e| e.variables.len()), Some(1));
        assert_eq!(c.uris[0].executable, Some(true));
        assert!(matches!(
            command_info_from_json(b"{"),
            Err(JsonError::Syntax(_))
        ));
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap_or(0))
            .collect()
    }
}
