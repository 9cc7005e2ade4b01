//! The examples we ship to framework authors are real Mesos messages: the ExecutorInfo in
//! packaging/marathon/ and the `data` of the README's scheduler ACCEPT example parse through the
//! Mesos JSON mapping into `mesos.v1` types with every required field present.

use std::path::PathBuf;

use base64::Engine;
use croupier_proto::json;
use croupier_proto::v1::{executor_info, ExecutorInfo};
use prost::Message;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

#[test]
fn executor_info_example_is_a_custom_executor_running_croupier() {
    let path = repo().join("packaging/marathon/executor-info.example.json");
    let text = std::fs::read(&path).expect("read the example");
    let info: ExecutorInfo = json::from_json_slice(&text)
        .unwrap_or_else(|e| panic!("{} is not a mesos.v1.ExecutorInfo: {e}", path.display()));
    assert_eq!(info.r#type, Some(executor_info::Type::Custom as i32));
    let cmd = info.command.as_ref().expect("command");
    assert_eq!(cmd.value.as_deref(), Some("/usr/bin/croupier-executor"));
    assert_eq!(cmd.shell, Some(false));
    let names: Vec<&str> = info.resources.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["cpus", "mem"]);
    assert!(
        json::missing_required_fields::<ExecutorInfo>(&info.encode_to_vec()).is_empty(),
        "required fields missing"
    );
}

#[test]
fn readme_accept_example_carries_a_command_info_in_data() {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README.md");
    let b64 = readme
        .split("\"data\": \"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("the README's ACCEPT example has a data field");
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("data is base64");
    assert_eq!(raw.first(), Some(&b'{'), "data holds Mesos JSON");
    let cmd = json::command_info_from_json(&raw).expect("a mesos.v1.CommandInfo");
    assert_eq!(cmd.value.as_deref(), Some("echo hello; sleep 5"));
    assert_eq!(cmd.uris.len(), 1);
    assert_eq!(cmd.uris[0].value, "https://example.com/app.tgz");
}
