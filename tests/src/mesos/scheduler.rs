//! [`Scheduler`]: a small v1 HTTP scheduler (JSON) of our own, for what `mesos-execute` cannot
//! do: CUSTOM executors, several launches on one executor, KILL at a chosen moment, TEARDOWN.
//!
//! It SUBSCRIBEs to the master's `/api/v1/scheduler`, reads the RecordIO event stream on a
//! background task, records every event (every UPDATE especially), queues OFFERS, and
//! ACKNOWLEDGEs updates that carry a uuid unless told not to.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use http_body_util::BodyExt;
use hyper::Method;
use serde_json::{json, Value};

use super::error::MesosError;
use super::http;

const PATH: &str = "/api/v1/scheduler";
/// Largest event accepted from the master.
const MAX_EVENT: usize = 16 << 20;

/// The framework the scheduler registers.
#[derive(Debug, Clone)]
pub struct FrameworkOpts {
    /// `FrameworkInfo.name`.
    pub name: String,
    /// `FrameworkInfo.user` (tasks run as this user when the agent runs as root).
    pub user: String,
    /// `FrameworkInfo.checkpoint`.
    pub checkpoint: bool,
    /// `FrameworkInfo.failover_timeout` in seconds.
    pub failover_timeout: f64,
    /// Framework capabilities (`TASK_KILLING_STATE`, `PARTITION_AWARE`, ...).
    pub capabilities: Vec<String>,
    /// ACKNOWLEDGE every update with a uuid as it arrives (default true).
    pub auto_acknowledge: bool,
}

impl Default for FrameworkOpts {
    fn default() -> Self {
        FrameworkOpts {
            name: "croupier-test-scheduler".into(),
            user: "root".into(),
            checkpoint: true,
            failover_timeout: 0.0,
            capabilities: vec!["TASK_KILLING_STATE".into()],
            auto_acknowledge: true,
        }
    }
}

#[derive(Debug, Default)]
struct State {
    framework_id: Option<String>,
    stream_id: Option<String>,
    events: Vec<Value>,
    updates: Vec<Value>,
    offers: VecDeque<Value>,
    closed: Option<String>,
    error: Option<String>,
}

struct Shared {
    master: SocketAddr,
    opts: FrameworkOpts,
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A subscribed v1 scheduler. Dropping it closes the stream (the framework then fails over
/// after `failover_timeout`); call [`Scheduler::teardown`] to end it at once.
pub struct Scheduler {
    shared: Arc<Shared>,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Scheduler {
    /// SUBSCRIBEs to the master at `master` and waits for SUBSCRIBED.
    pub async fn subscribe(master: SocketAddr, opts: FrameworkOpts) -> Result<Self, MesosError> {
        let caps: Vec<Value> = opts
            .capabilities
            .iter()
            .map(|c| json!({ "type": c }))
            .collect();
        let call = json!({
            "type": "SUBSCRIBE",
            "subscribe": { "framework_info": {
                "user": opts.user,
                "name": opts.name,
                "checkpoint": opts.checkpoint,
                "failover_timeout": opts.failover_timeout,
                "capabilities": caps,
            }}
        });
        let body = serde_json::to_vec(&call).unwrap_or_default();
        let resp = http::send(
            master,
            Method::POST,
            PATH,
            &[
                ("Content-Type", "application/json"),
                ("Accept", "application/json"),
            ],
            body,
        )
        .await?;
        let status = resp.status().as_u16();
        let url = format!("http://{master}{PATH}");
        if status != 200 {
            let body = resp
                .into_body()
                .collect()
                .await
                .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
                .unwrap_or_default();
            return Err(MesosError::Refused {
                url,
                call: "SUBSCRIBE".into(),
                status,
                body,
            });
        }
        let stream_id = resp
            .headers()
            .get("Mesos-Stream-Id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| MesosError::Protocol {
                peer: url.clone(),
                message: "SUBSCRIBE answered 200 without Mesos-Stream-Id".into(),
            })?;
        let shared = Arc::new(Shared {
            master,
            opts,
            state: Mutex::new(State {
                stream_id: Some(stream_id),
                ..State::default()
            }),
        });
        let reader = tokio::spawn(read_stream(shared.clone(), resp.into_body()));
        let me = Scheduler { shared, reader };
        me.wait_until("SUBSCRIBED", Duration::from_secs(60), |s| {
            s.framework_id.clone()
        })
        .await?;
        Ok(me)
    }

    /// The framework id the master assigned.
    pub fn framework_id(&self) -> String {
        self.shared.lock().framework_id.clone().unwrap_or_default()
    }

    /// Every event received, in order (JSON as the master sent it).
    pub fn events(&self) -> Vec<Value> {
        self.shared.lock().events.clone()
    }

    /// Every `TaskStatus` received in an UPDATE, in order.
    pub fn updates(&self) -> Vec<Value> {
        self.shared.lock().updates.clone()
    }

    /// The states received for `task_id`, in order.
    pub fn states(&self, task_id: &str) -> Vec<String> {
        self.updates()
            .iter()
            .filter(|u| u["task_id"]["value"] == task_id)
            .filter_map(|u| u["state"].as_str().map(str::to_string))
            .collect()
    }

    /// Polls the recorded state every 20 ms until `f` yields a value.
    async fn wait_until<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut f: impl FnMut(&mut State) -> Option<T>,
    ) -> Result<T, MesosError> {
        let deadline = Instant::now() + timeout;
        loop {
            {
                let mut s = self.shared.lock();
                if let Some(v) = f(&mut s) {
                    return Ok(v);
                }
                if let Some(why) = &s.closed {
                    let error = s
                        .error
                        .as_deref()
                        .map(|e| format!("; the master's ERROR event: {e}"))
                        .unwrap_or_default();
                    return Err(MesosError::Protocol {
                        peer: format!("http://{}{PATH}", self.shared.master),
                        message: format!(
                            "event stream closed ({why}) while waiting for {what}{error}"
                        ),
                    });
                }
            }
            if Instant::now() > deadline {
                return Err(MesosError::Timeout {
                    what: what.to_string(),
                    waited: timeout,
                    details: self.summary(),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A short dump of the updates seen, for assertion messages.
    pub fn summary(&self) -> String {
        let s = self.shared.lock();
        let ups: Vec<String> = s
            .updates
            .iter()
            .map(|u| {
                format!(
                    "{}:{}{}",
                    u["task_id"]["value"].as_str().unwrap_or("?"),
                    u["state"].as_str().unwrap_or("?"),
                    u["message"]
                        .as_str()
                        .map(|m| format!(" ({m})"))
                        .unwrap_or_default()
                )
            })
            .collect();
        format!(
            "updates seen: [{}]; events: {}",
            ups.join(", "),
            s.events.len()
        )
    }

    /// Waits for an update of `task_id` in `state` and returns that `TaskStatus`.
    pub async fn wait_update(
        &self,
        task_id: &str,
        state: &str,
        timeout: Duration,
    ) -> Result<Value, MesosError> {
        self.wait_until(&format!("{task_id} in {state}"), timeout, |s| {
            s.updates
                .iter()
                .find(|u| u["task_id"]["value"] == task_id && u["state"] == state)
                .cloned()
        })
        .await
    }

    /// Waits for a terminal update of `task_id` and returns it.
    pub async fn wait_terminal(
        &self,
        task_id: &str,
        timeout: Duration,
    ) -> Result<Value, MesosError> {
        self.wait_until(&format!("a terminal update of {task_id}"), timeout, |s| {
            s.updates
                .iter()
                .find(|u| {
                    u["task_id"]["value"] == task_id && u["state"].as_str().is_some_and(is_terminal)
                })
                .cloned()
        })
        .await
    }

    /// Takes the next offer (waiting for one).
    pub async fn next_offer(&self, timeout: Duration) -> Result<Value, MesosError> {
        self.wait_until("an offer", timeout, |s| s.offers.pop_front())
            .await
    }

    /// POSTs a call (with `framework_id` and `Mesos-Stream-Id` filled in); expects 202.
    pub async fn call(&self, mut call: Value) -> Result<(), MesosError> {
        let (fid, sid) = {
            let s = self.shared.lock();
            (
                s.framework_id.clone().unwrap_or_default(),
                s.stream_id.clone().unwrap_or_default(),
            )
        };
        call["framework_id"] = json!({ "value": fid });
        let what = call["type"].as_str().unwrap_or("?").to_string();
        let body = serde_json::to_vec(&call).unwrap_or_default();
        let (status, resp) = http::request(
            self.shared.master,
            Method::POST,
            PATH,
            &[
                ("Content-Type", "application/json"),
                ("Accept", "application/json"),
                ("Mesos-Stream-Id", &sid),
            ],
            body,
        )
        .await?;
        if status != 202 {
            return Err(MesosError::Refused {
                url: format!("http://{}{PATH}", self.shared.master),
                call: what,
                status,
                body: String::from_utf8_lossy(&resp).into_owned(),
            });
        }
        Ok(())
    }

    /// ACCEPTs `offer` with these operations (`refuse_seconds` 0: the rest comes back soon).
    pub async fn accept(&self, offer: &Value, operations: Vec<Value>) -> Result<(), MesosError> {
        self.call(json!({
            "type": "ACCEPT",
            "accept": {
                "offer_ids": [offer["id"].clone()],
                "operations": operations,
                "filters": { "refuse_seconds": 0.0 },
            }
        }))
        .await
    }

    /// ACCEPT with one LAUNCH of `tasks` (their `agent_id` set from the offer).
    pub async fn launch(&self, offer: &Value, tasks: Vec<Value>) -> Result<(), MesosError> {
        let tasks = with_agent(offer, tasks);
        self.accept(
            offer,
            vec![json!({ "type": "LAUNCH", "launch": { "task_infos": tasks } })],
        )
        .await
    }

    /// ACCEPT with one LAUNCH_GROUP of `tasks` on `executor`.
    pub async fn launch_group(
        &self,
        offer: &Value,
        executor: Value,
        tasks: Vec<Value>,
    ) -> Result<(), MesosError> {
        let tasks = with_agent(offer, tasks);
        let executor = self.with_framework(executor);
        self.accept(
            offer,
            vec![json!({ "type": "LAUNCH_GROUP", "launch_group": {
                "executor": executor,
                "task_group": { "tasks": tasks },
            }})],
        )
        .await
    }

    /// DECLINEs an offer.
    pub async fn decline(&self, offer: &Value) -> Result<(), MesosError> {
        self.call(json!({
            "type": "DECLINE",
            "decline": { "offer_ids": [offer["id"].clone()], "filters": { "refuse_seconds": 0.0 } }
        }))
        .await
    }

    /// ACKNOWLEDGEs a status (for `auto_acknowledge: false`).
    pub async fn acknowledge(&self, status: &Value) -> Result<(), MesosError> {
        self.call(ack_call(status)).await
    }

    /// KILLs a task (optionally with a kill-policy grace period).
    pub async fn kill(
        &self,
        task_id: &str,
        agent_id: &str,
        grace: Option<Duration>,
    ) -> Result<(), MesosError> {
        let mut kill =
            json!({ "task_id": { "value": task_id }, "agent_id": { "value": agent_id } });
        if let Some(g) = grace {
            kill["kill_policy"] = json!({ "grace_period": { "nanoseconds": g.as_nanos() as i64 } });
        }
        self.call(json!({ "type": "KILL", "kill": kill })).await
    }

    /// TEARDOWN: the master kills every task and executor of the framework.
    pub async fn teardown(&self) -> Result<(), MesosError> {
        self.call(json!({ "type": "TEARDOWN" })).await
    }

    /// Sets `framework_id` in an `ExecutorInfo`.
    pub fn with_framework(&self, mut executor: Value) -> Value {
        executor["framework_id"] = json!({ "value": self.framework_id() });
        executor
    }
}

fn with_agent(offer: &Value, tasks: Vec<Value>) -> Vec<Value> {
    tasks
        .into_iter()
        .map(|mut t| {
            t["agent_id"] = offer["agent_id"].clone();
            t
        })
        .collect()
}

fn ack_call(status: &Value) -> Value {
    json!({
        "type": "ACKNOWLEDGE",
        "acknowledge": {
            "agent_id": status["agent_id"].clone(),
            "task_id": status["task_id"].clone(),
            "uuid": status["uuid"].clone(),
        }
    })
}

/// Whether a `TaskState` name is terminal.
pub fn is_terminal(state: &str) -> bool {
    matches!(
        state,
        "TASK_FINISHED"
            | "TASK_FAILED"
            | "TASK_KILLED"
            | "TASK_LOST"
            | "TASK_ERROR"
            | "TASK_DROPPED"
            | "TASK_GONE"
            | "TASK_GONE_BY_OPERATOR"
    )
}

async fn read_stream(shared: Arc<Shared>, mut body: hyper::body::Incoming) {
    let mut decoder = croupier_proto::recordio::Decoder::new(MAX_EVENT);
    let mut buf = BytesMut::new();
    let why = loop {
        match body.frame().await {
            None => break "end of stream".to_string(),
            Some(Err(e)) => break format!("read error: {e}"),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    buf.extend_from_slice(&data);
                }
            }
        }
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(record)) => match serde_json::from_slice::<Value>(&record) {
                    Ok(ev) => on_event(&shared, ev).await,
                    Err(e) => {
                        shared.lock().closed = Some(format!("an event is not JSON: {e}"));
                        return;
                    }
                },
                Ok(None) => break,
                Err(e) => {
                    shared.lock().closed = Some(format!("bad RecordIO framing: {e}"));
                    return;
                }
            }
        }
    };
    shared.lock().closed = Some(why);
}

async fn on_event(shared: &Arc<Shared>, ev: Value) {
    let mut ack = None;
    {
        let mut s = shared.lock();
        match ev["type"].as_str() {
            Some("SUBSCRIBED") => {
                s.framework_id = ev["subscribed"]["framework_id"]["value"]
                    .as_str()
                    .map(str::to_string);
            }
            Some("OFFERS") => {
                if let Some(offers) = ev["offers"]["offers"].as_array() {
                    s.offers.extend(offers.iter().cloned());
                }
            }
            Some("RESCIND") => {
                let id = ev["rescind"]["offer_id"].clone();
                s.offers.retain(|o| o["id"] != id);
            }
            Some("ERROR") => {
                s.error = ev["error"]["message"].as_str().map(str::to_string);
            }
            Some("UPDATE") => {
                let status = ev["update"]["status"].clone();
                if shared.opts.auto_acknowledge && status.get("uuid").is_some() {
                    ack = Some(ack_call(&status));
                }
                s.updates.push(status);
            }
            _ => {}
        }
        s.events.push(ev);
    }
    if let Some(mut call) = ack {
        let (fid, sid) = {
            let s = shared.lock();
            (
                s.framework_id.clone().unwrap_or_default(),
                s.stream_id.clone().unwrap_or_default(),
            )
        };
        call["framework_id"] = json!({ "value": fid });
        let body = serde_json::to_vec(&call).unwrap_or_default();
        let master = shared.master;
        tokio::spawn(async move {
            let _ = http::request(
                master,
                Method::POST,
                PATH,
                &[
                    ("Content-Type", "application/json"),
                    ("Accept", "application/json"),
                    ("Mesos-Stream-Id", &sid),
                ],
                body,
            )
            .await;
        });
    }
}
