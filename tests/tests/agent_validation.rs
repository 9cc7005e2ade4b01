//! The agent stand-in itself, driven by a plain HTTP client: status codes and message texts
//! as the real agent's, stream encodings, acks, restart/recovery, auth.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use croupier_proto::recordio;
use croupier_proto::v1::executor::{call, event, Call, Event};
use croupier_proto::v1::{task_status, ExecutorId, FrameworkId, TaskId, TaskState, TaskStatus};
use croupier_testkit::agent::{Agent, AgentConfig};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use prost::Message;

const T: Duration = Duration::from_secs(10);

async fn request(
    agent: &Agent,
    method: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> hyper::Response<Incoming> {
    let tcp = tokio::net::TcpStream::connect(agent.addr())
        .await
        .expect("connect");
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let mut req = hyper::Request::builder()
        .method(method)
        .uri("/api/v1/executor")
        .header("Host", agent.addr().to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(Bytes::from(body))).expect("request");
    tokio::time::timeout(T, send.send_request(req))
        .await
        .expect("answer in time")
        .expect("response")
}

async fn text_of(resp: hyper::Response<Incoming>) -> (u16, String) {
    let status = resp.status().as_u16();
    let body = tokio::time::timeout(T, resp.into_body().collect())
        .await
        .expect("body in time")
        .expect("body")
        .to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn pb() -> Vec<(&'static str, &'static str)> {
    vec![
        ("Content-Type", "application/x-protobuf"),
        ("Accept", "application/x-protobuf"),
    ]
}

fn base(agent: &Agent, t: call::Type) -> Call {
    Call {
        executor_id: ExecutorId {
            value: agent.config().executor_id.clone(),
        },
        framework_id: FrameworkId {
            value: agent.config().framework_id.clone(),
        },
        r#type: Some(t as i32),
        ..Default::default()
    }
}

fn subscribe_call(agent: &Agent, updates: Vec<call::Update>) -> Call {
    let mut c = base(agent, call::Type::Subscribe);
    c.subscribe = Some(call::Subscribe {
        unacknowledged_tasks: Vec::new(),
        unacknowledged_updates: updates,
    });
    c
}

fn status(agent: &Agent, task: &str, state: TaskState, uuid: Vec<u8>) -> TaskStatus {
    TaskStatus {
        task_id: TaskId { value: task.into() },
        state: state as i32,
        source: Some(task_status::Source::Executor as i32),
        executor_id: Some(ExecutorId {
            value: agent.config().executor_id.clone(),
        }),
        uuid: Some(uuid),
        timestamp: Some(1.7e9),
        ..Default::default()
    }
}

fn update_call(agent: &Agent, s: TaskStatus) -> Call {
    let mut c = base(agent, call::Type::Update);
    c.update = Some(call::Update { status: s });
    c
}

/// Reads RecordIO records from a SUBSCRIBE response.
struct Events {
    body: Incoming,
    buf: BytesMut,
    dec: recordio::Decoder,
    json: bool,
}

impl Events {
    fn new(resp: hyper::Response<Incoming>) -> Events {
        let json = resp
            .headers()
            .get("content-type")
            .map(|v| v.as_bytes() == b"application/json")
            .unwrap_or(false);
        Events {
            body: resp.into_body(),
            buf: BytesMut::new(),
            dec: recordio::Decoder::new(1 << 20),
            json,
        }
    }

    /// Next event, or `None` at end of stream.
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(rec) = self.dec.decode(&mut self.buf).expect("valid framing") {
                return Some(if self.json {
                    let v: serde_json::Value = serde_json::from_slice(&rec).expect("json");
                    croupier_proto::json::event_from_json(&v).expect("event")
                } else {
                    Event::decode(rec).expect("event")
                });
            }
            let frame = tokio::time::timeout(T, self.body.frame())
                .await
                .expect("event in time")?;
            match frame {
                Ok(f) => {
                    if let Ok(data) = f.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
                Err(_) => return None,
            }
        }
    }
}

#[tokio::test]
async fn content_type_method_and_parse_errors_match_the_agent() {
    let agent = Agent::start(AgentConfig::new("/bin/false"))
        .await
        .expect("start");
    let body = subscribe_call(&agent, vec![]).encode_to_vec();

    let (s, t) = text_of(request(&agent, "POST", &[], body.clone()).await).await;
    assert_eq!(
        (s, t.as_str()),
        (400, "Expecting 'Content-Type' to be present")
    );

    let (s, t) = text_of(
        request(
            &agent,
            "POST",
            &[("Content-Type", "application/json; charset=utf-8")],
            b"{}".to_vec(),
        )
        .await,
    )
    .await;
    assert_eq!(
        (s, t.as_str()),
        (
            415,
            "Expecting 'Content-Type' of application/json or application/x-protobuf"
        )
    );

    let resp = request(&agent, "GET", &pb(), Vec::new()).await;
    assert_eq!(resp.status().as_u16(), 405);
    assert_eq!(
        resp.headers().get("allow").map(|v| v.as_bytes()),
        Some(&b"POST"[..])
    );

    // Protobuf missing the required executor_id: the agent's ParseFromString fails.
    let (s, t) = text_of(request(&agent, "POST", &pb(), vec![0x18, 0x01, 0x22, 0x00]).await).await;
    assert_eq!(
        (s, t.as_str()),
        (400, "Failed to parse body into Call protobuf")
    );

    let json = [("Content-Type", "application/json")];
    let (s, t) = text_of(request(&agent, "POST", &json, b"{nope".to_vec()).await).await;
    assert_eq!(s, 400);
    assert!(t.starts_with("Failed to parse body into JSON: "), "{t}");
    let (s, t) = text_of(
        request(
            &agent,
            "POST",
            &json,
            br#"{"type":"SUBSCRIBE","executor_id":{},"subscribe":{}}"#.to_vec(),
        )
        .await,
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(
        t,
        "Failed to convert JSON into Call protobuf: Missing required fields: executor_id.value, framework_id"
    );

    // SUBSCRIBE without `subscribe`.
    let (s, t) = text_of(
        request(
            &agent,
            "POST",
            &pb(),
            base(&agent, call::Type::Subscribe).encode_to_vec(),
        )
        .await,
    )
    .await;
    assert_eq!(
        (s, t.as_str()),
        (
            400,
            "Failed to validate Executor::Call: Expecting 'subscribe' to be present"
        )
    );

    // Accept that admits neither encoding.
    let (s, t) = text_of(
        request(
            &agent,
            "POST",
            &[
                ("Content-Type", "application/x-protobuf"),
                ("Accept", "text/html"),
            ],
            body,
        )
        .await,
    )
    .await;
    assert_eq!(
        (s, t.as_str()),
        (
            406,
            "Expecting 'Accept' to allow 'application/x-protobuf' or 'application/json'"
        )
    );

    // Not subscribed yet.
    let u = update_call(&agent, status(&agent, "t", TaskState::TaskRunning, uuid()));
    let (s, t) = text_of(request(&agent, "POST", &pb(), u.encode_to_vec()).await).await;
    assert_eq!((s, t.as_str()), (403, "Executor is not subscribed"));
    assert_eq!(agent.requests().len(), 9, "every request recorded");
}

fn uuid() -> Vec<u8> {
    uuid::Uuid::new_v4().as_bytes().to_vec()
}

#[tokio::test]
async fn protobuf_stream_updates_acks_and_update_validation() {
    let agent = Agent::start(AgentConfig::new("/bin/false"))
        .await
        .expect("start");
    let resp = request(
        &agent,
        "POST",
        &pb(),
        subscribe_call(&agent, vec![]).encode_to_vec(),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.headers().get("content-type").map(|v| v.as_bytes()),
        Some(&b"application/x-protobuf"[..])
    );
    let mut events = Events::new(resp);
    let sub = events.next().await.expect("SUBSCRIBED");
    assert_eq!(sub.r#type, Some(event::Type::Subscribed as i32));
    let s = sub.subscribed.expect("subscribed");
    assert_eq!(
        s.executor_info.executor_id.value,
        agent.config().executor_id
    );
    assert_eq!(
        s.framework_info.id.map(|i| i.value),
        Some(agent.config().framework_id.clone())
    );
    assert_eq!(
        s.agent_info.id.map(|i| i.value),
        Some(agent.config().agent_id.clone())
    );
    assert_eq!(
        s.container_id.map(|c| c.value).as_deref(),
        Some(agent.container_id())
    );
    agent.wait_subscribed(T).await.expect("subscribed");

    let prefix = format!(
        "Failed to validate Executor::Call: Received Call from executor {} of framework {}",
        agent.config().executor_id,
        agent.config().framework_id
    );
    let mut bad = status(&agent, "t", TaskState::TaskRunning, uuid());
    bad.source = None;
    let (s, t) = text_of(
        request(
            &agent,
            "POST",
            &pb(),
            update_call(&agent, bad).encode_to_vec(),
        )
        .await,
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(
        t,
        format!("{prefix} with invalid source, expecting 'SOURCE_EXECUTOR'")
    );

    for bad_uuid in [vec![1u8; 15], {
        let mut v7 = uuid();
        v7[6] = 0x70 | (v7[6] & 0x0f);
        v7
    }] {
        let bad = status(&agent, "t", TaskState::TaskRunning, bad_uuid);
        let (s, t) = text_of(
            request(
                &agent,
                "POST",
                &pb(),
                update_call(&agent, bad).encode_to_vec(),
            )
            .await,
        )
        .await;
        assert_eq!(
            (s, t.as_str()),
            (400, "Failed to validate Executor::Call: Not a valid UUID")
        );
    }

    let staging = status(&agent, "t", TaskState::TaskStaging, uuid());
    let (s, t) = text_of(
        request(
            &agent,
            "POST",
            &pb(),
            update_call(&agent, staging).encode_to_vec(),
        )
        .await,
    )
    .await;
    assert_eq!(s, 400);
    assert!(t.ends_with("which is not allowed"), "{t}");

    let id = uuid();
    let good = update_call(
        &agent,
        status(&agent, "t", TaskState::TaskRunning, id.clone()),
    );
    let (s, t) = text_of(request(&agent, "POST", &pb(), good.encode_to_vec()).await).await;
    assert_eq!((s, t.as_str()), (202, ""));
    let ack = events.next().await.expect("ACKNOWLEDGED");
    assert_eq!(ack.r#type, Some(event::Type::Acknowledged as i32));
    let a = ack.acknowledged.expect("acknowledged");
    assert_eq!((a.task_id.value.as_str(), a.uuid), ("t", id));

    // Events the test pushes arrive in order.
    agent
        .kill("t", Some(Duration::from_millis(1500)))
        .expect("kill");
    agent.message(b"hi").expect("message");
    let kill = events.next().await.expect("KILL");
    assert_eq!(
        kill.kill
            .and_then(|k| k.kill_policy)
            .and_then(|p| p.grace_period)
            .map(|d| d.nanoseconds),
        Some(1_500_000_000)
    );
    let msg = events.next().await.expect("MESSAGE");
    assert_eq!(msg.message.map(|m| m.data), Some(b"hi".to_vec()));

    // Withheld acks are released later.
    agent.set_withhold_acks(true);
    let id2 = uuid();
    let fin = update_call(
        &agent,
        status(&agent, "t", TaskState::TaskFinished, id2.clone()),
    );
    let (s, _) = text_of(request(&agent, "POST", &pb(), fin.encode_to_vec()).await).await;
    assert_eq!(s, 202);
    assert!(!agent.recorded().acked.contains(&id2));
    agent.set_withhold_acks(false);
    let ack = events.next().await.expect("released ACK");
    assert_eq!(ack.acknowledged.map(|a| a.uuid), Some(id2));
    assert_eq!(
        agent.recorded().states("t"),
        vec![TaskState::TaskRunning, TaskState::TaskFinished]
    );
}

#[tokio::test]
async fn json_stream_when_accept_is_missing() {
    let agent = Agent::start(AgentConfig::new("/bin/false"))
        .await
        .expect("start");
    let body = serde_json::to_vec(&croupier_proto::json::call_to_json(&subscribe_call(
        &agent,
        vec![],
    )))
    .expect("json");
    let resp = request(
        &agent,
        "POST",
        &[("Content-Type", "application/json")],
        body,
    )
    .await;
    assert_eq!(resp.status().as_u16(), 200);
    let mut events = Events::new(resp);
    assert!(events.json, "no Accept means JSON, as the agent does");
    let sub = events.next().await.expect("SUBSCRIBED");
    assert_eq!(sub.r#type, Some(event::Type::Subscribed as i32));
}

#[tokio::test]
async fn restart_answers_503_then_replays_unacknowledged_updates() {
    let agent = Agent::start(AgentConfig::new("/bin/false"))
        .await
        .expect("start");
    let resp = request(
        &agent,
        "POST",
        &pb(),
        subscribe_call(&agent, vec![]).encode_to_vec(),
    )
    .await;
    let mut events = Events::new(resp);
    events.next().await.expect("SUBSCRIBED");

    agent.set_withhold_acks(true);
    let id = uuid();
    let st = status(&agent, "t", TaskState::TaskFinished, id.clone());
    let (s, _) = text_of(
        request(
            &agent,
            "POST",
            &pb(),
            update_call(&agent, st.clone()).encode_to_vec(),
        )
        .await,
    )
    .await;
    assert_eq!(s, 202);

    // Recovering until told otherwise (a fixed window could end before the subscription below
    // arrives on a loaded machine).
    agent.restart_held();
    agent.set_withhold_acks(false);
    assert!(
        events.next().await.is_none(),
        "stream closed by the restart"
    );
    let (s, t) = text_of(
        request(
            &agent,
            "POST",
            &pb(),
            subscribe_call(&agent, vec![]).encode_to_vec(),
        )
        .await,
    )
    .await;
    assert_eq!((s, t.as_str()), (503, "Agent has not finished recovery"));

    agent.finish_recovery();
    let resub = subscribe_call(&agent, vec![call::Update { status: st }]);
    let resp = request(&agent, "POST", &pb(), resub.encode_to_vec()).await;
    assert_eq!(resp.status().as_u16(), 200);
    let mut events = Events::new(resp);
    events.next().await.expect("SUBSCRIBED again");
    let ack = events.next().await.expect("ACK of the replayed update");
    assert_eq!(ack.acknowledged.map(|a| a.uuid), Some(id));
    let rec = agent.recorded();
    assert_eq!(rec.subscriptions.len(), 2);
    assert_eq!(rec.subscriptions[1].unacknowledged_updates.len(), 1);
    assert_eq!(rec.updates.len(), 2);
    assert!(
        rec.updates[1].duplicate,
        "same uuid: a duplicate, acked again"
    );
    assert_eq!(rec.terminal_updates("t").len(), 1);
}

#[tokio::test]
async fn bearer_token_and_pre_1_8_heartbeat() {
    let mut cfg = AgentConfig::new("/bin/false");
    cfg.auth_token = Some("s3cret".into());
    cfg.supports_heartbeat_calls = false;
    let agent = Agent::start(cfg).await.expect("start");
    let sub = subscribe_call(&agent, vec![]).encode_to_vec();

    let resp = request(&agent, "POST", &pb(), sub.clone()).await;
    assert_eq!(resp.status().as_u16(), 401);
    assert_eq!(
        resp.headers().get("www-authenticate").map(|v| v.as_bytes()),
        Some(&br#"Bearer realm="mesos-agent-executor""#[..])
    );
    let mut wrong = pb();
    wrong.push(("Authorization", "Bearer nope"));
    assert_eq!(
        request(&agent, "POST", &wrong, sub.clone())
            .await
            .status()
            .as_u16(),
        401
    );

    let mut good = pb();
    good.push(("Authorization", "Bearer s3cret"));
    let hb = base(&agent, call::Type::Heartbeat).encode_to_vec();
    let (s, t) = text_of(request(&agent, "POST", &good, hb).await).await;
    assert_eq!(
        (s, t.as_str()),
        (
            400,
            "Failed to validate Executor::Call: Expecting 'type' to be present"
        )
    );
    let resp = request(&agent, "POST", &good, sub).await;
    assert_eq!(resp.status().as_u16(), 200);
    let mut events = Events::new(resp);
    assert_eq!(
        events.next().await.and_then(|e| e.r#type),
        Some(event::Type::Subscribed as i32)
    );
}
