//! JSON builders for the `TaskInfo`, `ExecutorInfo` and `Resource` messages tests send (v1 JSON
//! mapping: bytes as base64, durations as `{"nanoseconds": n}`).

use base64::Engine;
use serde_json::{json, Value};

/// `cpus`, `mem` (MB) and, if non-zero, `disk` (MB) scalar resources.
pub fn resources(cpus: f64, mem: f64, disk: f64) -> Value {
    let mut r = vec![
        json!({ "name": "cpus", "type": "SCALAR", "scalar": { "value": cpus } }),
        json!({ "name": "mem", "type": "SCALAR", "scalar": { "value": mem } }),
    ];
    if disk > 0.0 {
        r.push(json!({ "name": "disk", "type": "SCALAR", "scalar": { "value": disk } }));
    }
    Value::Array(r)
}

/// A command task (`cpus:0.1;mem:32`) running `shell_command` through `/bin/sh -c`.
/// `agent_id` is left out: `mesos-execute` and [`super::scheduler::Scheduler::launch`] set it.
pub fn command_task(task_id: &str, shell_command: &str) -> Value {
    json!({
        "name": task_id,
        "task_id": { "value": task_id },
        "resources": resources(0.1, 32.0, 0.0),
        "command": { "value": shell_command, "shell": true },
    })
}

/// A task without `command`, for a task group or a custom executor.
pub fn bare_task(task_id: &str) -> Value {
    json!({
        "name": task_id,
        "task_id": { "value": task_id },
        "resources": resources(0.1, 32.0, 0.0),
    })
}

/// A CUSTOM `ExecutorInfo` running `executor` (croupier-executor) with these environment
/// variables; resources `cpus:0.1;mem:32;disk:32`.
pub fn custom_executor(executor_id: &str, executor: &str, env: &[(&str, &str)]) -> Value {
    let vars: Vec<Value> = env
        .iter()
        .map(|(k, v)| json!({ "name": k, "value": v }))
        .collect();
    json!({
        "executor_id": { "value": executor_id },
        "type": "CUSTOM",
        "name": executor_id,
        "command": {
            "value": executor,
            "shell": false,
            "arguments": [executor],
            "environment": { "variables": vars },
        },
        "resources": resources(0.1, 32.0, 32.0),
    })
}

/// Sets `TaskInfo.data` (base64 of `bytes`).
pub fn with_data(mut task: Value, bytes: &[u8]) -> Value {
    task["data"] = Value::String(base64::engine::general_purpose::STANDARD.encode(bytes));
    task
}

/// Adds URIs (`{"value": uri, "extract": .., "cache": ..}`) to a task's or executor's command.
pub fn with_uris(mut task_or_executor: Value, uris: &[Value]) -> Value {
    task_or_executor["command"]["uris"] = Value::Array(uris.to_vec());
    task_or_executor
}

/// Sets `TaskInfo.kill_policy.grace_period`.
pub fn with_kill_grace(mut task: Value, grace: std::time::Duration) -> Value {
    task["kill_policy"] = json!({ "grace_period": { "nanoseconds": grace.as_nanos() as i64 } });
    task
}
