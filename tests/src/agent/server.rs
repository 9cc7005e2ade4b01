//! The stand-in's HTTP side: connection handling, the agent's validation order and texts
//! (`src/slave/http.cpp` `Http::executor`, `validateExecutorCall`), SUBSCRIBE streams, UPDATE
//! acknowledgements.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use croupier_proto::v1::executor::{call, event, Call, Event};
use croupier_proto::v1::{TaskId, TaskState, TaskStatus};
use http::{header, HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, Limited};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use prost::Message;
use tokio::sync::mpsc;

use super::{RecordedRequest, RecordedUpdate, Shared, State, Stream, UpdateFault, UpdateOrigin};

type Body = BoxBody<Bytes, Infallible>;

const PROTOBUF: &str = "application/x-protobuf";
const JSON: &str = "application/json";

pub(crate) async fn serve(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((tcp, _peer)) = listener.accept().await else {
            continue;
        };
        // As the real agent (libprocess turns Nagle off on every accepted TCP socket): without
        // it a small event queued right after another can wait for the executor's delayed ACK.
        let _ = tcp.set_nodelay(true);
        serve_connection(tcp, shared.clone());
    }
}

/// The same API over TLS (an agent with `LIBPROCESS_SSL_ENABLED`); every handshake is recorded.
pub(crate) async fn serve_tls(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    shared: Arc<Shared>,
) {
    loop {
        let Ok((tcp, _peer)) = listener.accept().await else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = match shared.lock().tls_now.clone() {
            Some(now) => tokio_rustls::TlsAcceptor::from(now),
            None => acceptor.clone(),
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let result = acceptor.accept(tcp).await;
            let record = match &result {
                Ok(s) => super::TlsHandshake::Done {
                    client_certs: s.get_ref().1.peer_certificates().map_or(0, |c| c.len()),
                },
                Err(e) => super::TlsHandshake::Failed(e.to_string()),
            };
            shared.lock().rec.tls_handshakes.push(record);
            shared.bump();
            if let Ok(stream) = result {
                serve_connection(stream, shared);
            }
        });
    }
}

/// The same API on a unix socket (the agent's `--http_executor_domain_sockets`).
pub(crate) async fn serve_unix(listener: tokio::net::UnixListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _peer)) = listener.accept().await else {
            continue;
        };
        serve_connection(stream, shared.clone());
    }
}

fn serve_connection<S>(io: S, shared: Arc<Shared>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    {
        let tcp = io;
        let mut drop_rx = shared.drop_connections.subscribe();
        drop_rx.borrow_and_update();
        tokio::spawn(async move {
            let svc_shared = shared.clone();
            let service = hyper::service::service_fn(move |req| {
                let shared = svc_shared.clone();
                async move {
                    let resp = handle(shared, req).await;
                    if resp.extensions().get::<DropConnection>().is_some() {
                        // An error from the service makes hyper close the connection unanswered.
                        return Err(InjectedDrop);
                    }
                    Ok(resp)
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(tcp), service);
            tokio::select! {
                _ = conn => {}
                // Dropping the connection future closes the socket (agent restart).
                _ = drop_rx.changed() => {}
            }
        });
    }
}

/// Marks a response that must not be sent: the connection is closed instead.
#[derive(Debug, Clone, Copy)]
struct DropConnection;

/// The service error behind [`DropConnection`].
#[derive(Debug)]
struct InjectedDrop;

impl std::fmt::Display for InjectedDrop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("injected fault: connection dropped before answering")
    }
}

impl std::error::Error for InjectedDrop {}

fn text(status: StatusCode, msg: &str) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(msg.to_string())).boxed());
    *resp.status_mut() = status;
    if !msg.is_empty() {
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
    }
    resp
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

/// `Some(true)` = JSON stream, `Some(false)` = protobuf, `None` = 406.
fn negotiate(accept: Option<&str>) -> Option<bool> {
    let Some(accept) = accept else {
        return Some(true);
    };
    let admits = |wanted: &str| {
        accept.split(',').any(|range| {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let zero_q = parts.any(|p| {
                let p = p.trim();
                p.strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .map(|q| q == 0.0)
                    .unwrap_or(false)
            });
            let (ty, _) = wanted.split_once('/').unwrap_or((wanted, ""));
            !zero_q && (media == wanted || media == "*/*" || media == format!("{ty}/*"))
        })
    };
    if admits(JSON) {
        Some(true)
    } else if admits(PROTOBUF) {
        Some(false)
    } else {
        None
    }
}

struct Outcome {
    resp: Response<Body>,
    call: Option<Call>,
    error: String,
}

impl Outcome {
    fn err(status: StatusCode, msg: impl Into<String>, call: Option<Call>) -> Outcome {
        let msg = msg.into();
        Outcome {
            resp: text(status, &msg),
            call,
            error: msg,
        }
    }
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    let headers = req.headers().clone();
    let mut record = RecordedRequest {
        at: Instant::now(),
        content_type: header_str(&headers, header::CONTENT_TYPE),
        accept: header_str(&headers, header::ACCEPT),
        authorization: header_str(&headers, header::AUTHORIZATION),
        call: None,
        status: 0,
        error: String::new(),
    };
    let outcome = process(&shared, req).await;
    record.status = outcome.resp.status().as_u16();
    record.call = outcome.call;
    record.error = outcome.error;
    tracing::debug!(status = record.status, error = %record.error, "agent stand-in answered");
    shared.lock().rec.requests.push(record);
    shared.bump();
    outcome.resp
}

async fn process(shared: &Arc<Shared>, req: Request<Incoming>) -> Outcome {
    let path = req.uri().path();
    if path != "/api/v1/executor" && path != "/slave(1)/api/v1/executor" {
        return Outcome::err(StatusCode::NOT_FOUND, "", None);
    }
    // libprocess authenticates before the route handler runs.
    if let Some(token) = &shared.cfg.auth_token {
        let expected = format!("Bearer {token}");
        let got = req
            .headers()
            .get(header::AUTHORIZATION)
            .map(|v| v.as_bytes() == expected.as_bytes())
            .unwrap_or(false);
        if !got {
            let mut o = Outcome::err(StatusCode::UNAUTHORIZED, "", None);
            o.error = "401 Unauthorized (missing or wrong bearer token)".into();
            o.resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"mesos-agent-executor\""),
            );
            return o;
        }
    }
    if shared.lock().recovering {
        return Outcome::err(
            StatusCode::SERVICE_UNAVAILABLE,
            "Agent has not finished recovery",
            None,
        );
    }
    if req.method() != Method::POST {
        let mut o = Outcome::err(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("Expecting 'POST', received '{}'", req.method()),
            None,
        );
        o.resp
            .headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("POST"));
        return o;
    }
    let Some(content_type) = header_str(req.headers(), header::CONTENT_TYPE) else {
        return Outcome::err(
            StatusCode::BAD_REQUEST,
            "Expecting 'Content-Type' to be present",
            None,
        );
    };
    if content_type != PROTOBUF && content_type != JSON {
        return Outcome::err(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Expecting 'Content-Type' of application/json or application/x-protobuf",
            None,
        );
    }
    let accept = header_str(req.headers(), header::ACCEPT);
    let body = match Limited::new(req.into_body(), shared.cfg.max_request_body)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return Outcome::err(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("Failed to read request body: {e}"),
                None,
            )
        }
    };

    let call = if content_type == PROTOBUF {
        match Call::decode(body.as_ref()) {
            Ok(c) if croupier_proto::json::missing_required_fields::<Call>(&body).is_empty() => c,
            _ => {
                return Outcome::err(
                    StatusCode::BAD_REQUEST,
                    "Failed to parse body into Call protobuf",
                    None,
                )
            }
        }
    } else {
        let json: serde_json::Value = match serde_json::from_slice(&body) {
            Ok(j) => j,
            Err(e) => {
                return Outcome::err(
                    StatusCode::BAD_REQUEST,
                    format!("Failed to parse body into JSON: {e}"),
                    None,
                )
            }
        };
        match croupier_proto::json::call_from_json(&json) {
            Ok(c) => c,
            Err(croupier_proto::json::JsonError::MissingRequired { fields, .. }) => {
                return Outcome::err(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "Failed to convert JSON into Call protobuf: Missing required fields: {}",
                        fields.join(", ")
                    ),
                    None,
                )
            }
            Err(e) => {
                return Outcome::err(
                    StatusCode::BAD_REQUEST,
                    format!("Failed to convert JSON into Call protobuf: {e}"),
                    None,
                )
            }
        }
    };

    // An agent older than 1.8 does not know HEARTBEAT: the enum value is dropped on parse.
    let mut known_type = call.r#type.and_then(|t| call::Type::try_from(t).ok());
    if known_type == Some(call::Type::Heartbeat) && !shared.cfg.supports_heartbeat_calls {
        known_type = None;
    }
    if let Err(msg) = validate(&call, known_type) {
        return Outcome::err(
            StatusCode::BAD_REQUEST,
            format!("Failed to validate Executor::Call: {msg}"),
            Some(call),
        );
    }
    let Some(kind) = known_type else {
        return Outcome::err(StatusCode::BAD_REQUEST, "unreachable", Some(call));
    };

    if kind == call::Type::Subscribe {
        let json =
            match negotiate(accept.as_deref()) {
                Some(j) => j,
                None => return Outcome::err(
                    StatusCode::NOT_ACCEPTABLE,
                    "Expecting 'Accept' to allow 'application/x-protobuf' or 'application/json'",
                    Some(call),
                ),
            };
        return subscribe(shared, call, json);
    }
    if kind == call::Type::Heartbeat {
        return accepted(call);
    }
    if call.framework_id.value != shared.cfg.framework_id {
        return Outcome::err(
            StatusCode::BAD_REQUEST,
            "Framework cannot be found",
            Some(call),
        );
    }
    if call.executor_id.value != shared.cfg.executor_id {
        return Outcome::err(
            StatusCode::BAD_REQUEST,
            "Executor cannot be found",
            Some(call),
        );
    }
    if !shared.lock().rec.subscribed {
        return Outcome::err(
            StatusCode::FORBIDDEN,
            "Executor is not subscribed",
            Some(call),
        );
    }
    match kind {
        call::Type::Update => {
            let fault = shared.lock().update_faults.pop_front();
            if let Some(UpdateFault::Status(code)) = fault {
                let status =
                    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                return Outcome::err(status, "injected fault", Some(call));
            }
            if let Some(update) = &call.update {
                let mut st = shared.lock();
                record_update(shared, &mut st, update.status.clone(), UpdateOrigin::Call);
            }
            let mut outcome = accepted(call);
            if fault == Some(UpdateFault::DropBeforeAccepted) {
                outcome.resp.extensions_mut().insert(DropConnection);
                outcome.error = "injected fault: connection dropped before 202".into();
            }
            outcome
        }
        call::Type::Message => {
            if let Some(m) = &call.message {
                shared.lock().rec.messages.push(m.data.clone());
            }
            accepted(call)
        }
        _ => Outcome::err(StatusCode::NOT_IMPLEMENTED, "", Some(call)),
    }
}

fn accepted(call: Call) -> Outcome {
    Outcome {
        resp: text(StatusCode::ACCEPTED, ""),
        call: Some(call),
        error: String::new(),
    }
}

/// `validateExecutorCall`, in its order and with its texts.
fn validate(call: &Call, kind: Option<call::Type>) -> Result<(), String> {
    let Some(kind) = kind else {
        return Err("Expecting 'type' to be present".into());
    };
    match kind {
        call::Type::Subscribe if call.subscribe.is_none() => {
            Err("Expecting 'subscribe' to be present".into())
        }
        call::Type::Update => {
            let Some(update) = &call.update else {
                return Err("Expecting 'update' to be present".into());
            };
            let status = &update.status;
            let Some(uuid) = &status.uuid else {
                return Err("Expecting 'uuid' to be present".into());
            };
            // boost (1.65) knows UUID versions 1..=5; the agent wants exactly 16 bytes.
            if uuid.len() != 16 || !(1..=5).contains(&(uuid[6] >> 4)) {
                return Err("Not a valid UUID".into());
            }
            if let Some(eid) = &status.executor_id {
                if eid.value != call.executor_id.value {
                    return Err(format!(
                        "ExecutorID in Call: {} does not match ExecutorID in TaskStatus: {}",
                        call.executor_id.value, eid.value
                    ));
                }
            }
            if status.source.unwrap_or(0)
                != croupier_proto::v1::task_status::Source::Executor as i32
            {
                return Err(format!(
                    "Received Call from executor {} of framework {} with invalid source, expecting 'SOURCE_EXECUTOR'",
                    call.executor_id.value, call.framework_id.value
                ));
            }
            if status.state == TaskState::TaskStaging as i32 {
                return Err(format!(
                    "Received TASK_STAGING from executor {} of framework {} which is not allowed",
                    call.executor_id.value, call.framework_id.value
                ));
            }
            Ok(())
        }
        call::Type::Message if call.message.is_none() => {
            Err("Expecting 'message' to be present".into())
        }
        _ => Ok(()),
    }
}

fn subscribe(shared: &Arc<Shared>, call: Call, json: bool) -> Outcome {
    if call.framework_id.value != shared.cfg.framework_id {
        return Outcome::err(
            StatusCode::BAD_REQUEST,
            "Framework cannot be found",
            Some(call),
        );
    }
    if call.executor_id.value != shared.cfg.executor_id {
        return Outcome::err(
            StatusCode::BAD_REQUEST,
            "Executor cannot be found",
            Some(call),
        );
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let subscribe = call.subscribe.clone().unwrap_or_default();
    {
        let mut st = shared.lock();
        // A re-SUBSCRIBE replaces (closes) the previous stream.
        st.stream = Some(Stream { tx, json });
        st.rec.subscribed = true;
        st.rec.subscriptions.push(subscribe.clone());
        let subscribed = shared.subscribed_event();
        shared.send_event_locked(&mut st, subscribed);
        for update in subscribe.unacknowledged_updates {
            record_update(shared, &mut st, update.status, UpdateOrigin::Resubscribe);
        }
    }
    let mut resp = Response::new(BodyExt::boxed(EventStream { rx }));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(if json { JSON } else { PROTOBUF }),
    );
    Outcome {
        resp,
        call: Some(call),
        error: String::new(),
    }
}

/// Record a validated update and acknowledge it (duplicates and updates after a terminal one
/// are acknowledged too, as the agent's status update manager does).
fn record_update(shared: &Shared, st: &mut State, status: TaskStatus, origin: UpdateOrigin) {
    let uuid = status.uuid.clone().unwrap_or_default();
    // A set lookup, not a scan of every recorded update: a run of thousands of tasks records
    // tens of thousands of updates.
    let duplicate = !st.seen_uuids.insert(uuid.clone());
    let terminal = TaskState::try_from(status.state)
        .map(croupier_proto::is_terminal)
        .unwrap_or(false);
    if !duplicate && terminal {
        st.terminal.insert(status.task_id.value.clone());
    }
    let task_id = status.task_id.clone();
    st.rec.updates.push(RecordedUpdate {
        at: Instant::now(),
        status,
        origin,
        duplicate,
    });
    if st.withhold_acks {
        st.withheld.push((task_id, uuid));
    } else {
        ack_locked(shared, st, task_id, uuid);
    }
}

pub(crate) fn ack_locked(shared: &Shared, st: &mut State, task_id: TaskId, uuid: Vec<u8>) {
    let ev = Event {
        r#type: Some(event::Type::Acknowledged as i32),
        acknowledged: Some(event::Acknowledged {
            task_id,
            uuid: uuid.clone(),
        }),
        ..Default::default()
    };
    if shared.send_event_locked(st, ev) {
        st.rec.acked.insert(uuid);
    }
}

/// The SUBSCRIBE response body: RecordIO frames queued by the stand-in, never ending while the
/// sender lives (chunked, as the agent's `Response::PIPE`).
struct EventStream {
    rx: mpsc::UnboundedReceiver<Bytes>,
}

impl hyper::body::Body for EventStream {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(b)) => Poll::Ready(Some(Ok(Frame::data(b)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}
