//! The agent's v1 executor HTTP API, client side (hyper 1, HTTP/1.1, protobuf only).
//!
//! Two connections, as the agent requires: [`subscribe`] opens a fresh one for the SUBSCRIBE
//! request and its never-ending RecordIO event stream; [`Caller`] keeps a second keep-alive one
//! for UPDATE / MESSAGE / HEARTBEAT calls. Every request carries `Content-Type` and `Accept`
//! exactly `application/x-protobuf` (a missing `Accept` or `*/*` makes a real agent stream JSON)
//! and, when a token is configured, `Authorization: Bearer <token>`.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use croupier_proto::recordio::{Decoder, RecordIoError};
use croupier_proto::v1::executor::{Call, Event};
use http::{header, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use prost::Message;
use tokio::net::{TcpStream, UnixStream};

/// The executor API path on the agent.
pub const PATH: &str = "/api/v1/executor";
/// The only media type we speak.
pub const PROTOBUF: &str = "application/x-protobuf";
/// Largest event record accepted on the stream (a LAUNCH_GROUP of big TaskInfos fits easily).
pub const MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;
/// Largest error body read from a non-2xx answer.
const MAX_ERROR_BODY: usize = 4096;
/// Connect + response-header timeout for any request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A failed exchange with the agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("cannot connect to the agent at {endpoint}: {source}")]
    Connect {
        endpoint: String,
        source: std::io::Error,
    },
    #[error("HTTP exchange with the agent at {endpoint} failed: {source}")]
    Http {
        endpoint: String,
        source: hyper::Error,
    },
    #[error("TLS handshake with the agent at {endpoint} failed ({trust}): {source}")]
    Tls {
        endpoint: String,
        /// What the agent's certificate was checked against (the CA file or directory).
        trust: String,
        source: std::io::Error,
    },
    #[error("the agent at {endpoint} did not answer within {REQUEST_TIMEOUT:?}")]
    Timeout { endpoint: String },
    #[error("the agent at {endpoint} answered {call} with {status}: {body}")]
    Status {
        endpoint: String,
        call: &'static str,
        status: StatusCode,
        body: String,
    },
    #[error("the agent at {endpoint} closed the event stream")]
    StreamEnded { endpoint: String },
    #[error("malformed event stream from the agent at {endpoint}: {source}")]
    Framing {
        endpoint: String,
        source: RecordIoError,
    },
    #[error("undecodable event from the agent at {endpoint} ({len} bytes): {source}")]
    Decode {
        endpoint: String,
        len: usize,
        source: prost::DecodeError,
    },
    #[error(
        "the agent at {endpoint} sent SUBSCRIBE's answer as {content_type:?}, expected {PROTOBUF}"
    )]
    ContentType {
        endpoint: String,
        content_type: String,
    },
}

impl AgentError {
    /// Is this the agent being away (restart, recovery) rather than a refusal?
    ///
    /// Connection failures, stream ends, 503 (recovering) and 404 (routes not installed yet)
    /// are retryable. A garbled stream is also worth a fresh connection. 4xx refusals
    /// (400, 401, 403, 406, 415) are not.
    pub fn is_retryable(&self) -> bool {
        match self {
            AgentError::Status { status, .. } => {
                *status == StatusCode::SERVICE_UNAVAILABLE
                    || *status == StatusCode::NOT_FOUND
                    || status.is_server_error()
            }
            AgentError::ContentType { .. } => false,
            // A certificate refused (either way) or no common protocol will not heal by
            // retrying a first connection; a connection cut mid-handshake may (agent
            // restarting). Once subscribed, see `is_tls_refusal`.
            AgentError::Tls { .. } => !self.is_tls_refusal(),
            _ => true,
        }
    }

    /// Did the TLS handshake fail on a certificate (either side), an alert or no common
    /// protocol? Fatal before the first SUBSCRIBED (a misconfiguration); after it, the agent
    /// may be restarting with a rotated certificate, so the caller retries like any lost
    /// connection until the recovery timeout.
    pub fn is_tls_refusal(&self) -> bool {
        match self {
            AgentError::Tls { source, .. } => source
                .get_ref()
                .and_then(|e| e.downcast_ref::<rustls::Error>())
                .is_some_and(|e| {
                    matches!(
                        e,
                        rustls::Error::InvalidCertificate(_)
                            | rustls::Error::PeerIncompatible(_)
                            | rustls::Error::AlertReceived(_)
                            | rustls::Error::General(_)
                    )
                }),
            _ => false,
        }
    }
}

/// What every request needs.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// `IP:PORT` (also the `Host` header when connecting over a unix socket).
    pub address: String,
    pub token: Option<String>,
    /// `MESOS_DOMAIN_SOCKET`: connect over this unix socket instead of TCP (the agent's
    /// `--http_executor_domain_sockets`; it may not listen on TCP for executors at all).
    pub unix_socket: Option<std::path::PathBuf>,
    /// `LIBPROCESS_SSL_ENABLED`: https over the TCP connection (not over the unix socket:
    /// libprocess speaks plain `http+unix` there).
    pub tls: Option<std::sync::Arc<crate::tls::AgentTls>>,
}

impl Endpoint {
    fn request(&self, call: &Call) -> Request<Full<Bytes>> {
        let mut b = Request::builder()
            .method(Method::POST)
            .uri(PATH)
            .header(header::HOST, &self.address)
            .header(header::CONTENT_TYPE, PROTOBUF)
            .header(header::ACCEPT, PROTOBUF);
        if let Some(t) = &self.token {
            b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        // The builder only fails on invalid header values; ours are ASCII we control, except
        // the token, which the agent minted. Fall back to a request without it on failure.
        b.body(Full::new(Bytes::from(call.encode_to_vec())))
            .unwrap_or_else(|_| {
                let mut r = Request::new(Full::new(Bytes::from(call.encode_to_vec())));
                *r.method_mut() = Method::POST;
                *r.uri_mut() = http::Uri::from_static(PATH);
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    header::HeaderValue::from_static(PROTOBUF),
                );
                r.headers_mut()
                    .insert(header::ACCEPT, header::HeaderValue::from_static(PROTOBUF));
                r
            })
    }

    /// POST `call` on `sender`, bounded by the request timeout.
    async fn send(
        &self,
        sender: &mut SendRequest<Full<Bytes>>,
        call: &Call,
    ) -> Result<hyper::Response<Incoming>, AgentError> {
        tokio::time::timeout(REQUEST_TIMEOUT, sender.send_request(self.request(call)))
            .await
            .map_err(|_| AgentError::Timeout {
                endpoint: self.address.clone(),
            })?
            .map_err(|source| AgentError::Http {
                endpoint: self.address.clone(),
                source,
            })
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, AgentError> {
        if let Some(path) = &self.unix_socket {
            let endpoint = format!("unix:{}", path.display());
            let stream = tokio::time::timeout(REQUEST_TIMEOUT, UnixStream::connect(path))
                .await
                .map_err(|_| AgentError::Timeout {
                    endpoint: endpoint.clone(),
                })?
                .map_err(|source| AgentError::Connect {
                    endpoint: endpoint.clone(),
                    source,
                })?;
            return handshake(stream, endpoint).await;
        }
        let endpoint = self.address.clone();
        let stream = tokio::time::timeout(REQUEST_TIMEOUT, TcpStream::connect(&self.address))
            .await
            .map_err(|_| AgentError::Timeout {
                endpoint: endpoint.clone(),
            })?
            .map_err(|source| AgentError::Connect {
                endpoint: endpoint.clone(),
                source,
            })?;
        let _ = stream.set_nodelay(true);
        if let Some(tls) = &self.tls {
            let connector = tokio_rustls::TlsConnector::from(tls.config.clone());
            let tls_err = |source| AgentError::Tls {
                endpoint: endpoint.clone(),
                trust: tls.trust.clone(),
                source,
            };
            let stream = tokio::time::timeout(
                REQUEST_TIMEOUT,
                connector.connect(tls.server_name.clone(), stream),
            )
            .await
            .map_err(|_| AgentError::Timeout {
                endpoint: endpoint.clone(),
            })?
            .map_err(tls_err)?;
            return handshake(stream, endpoint).await;
        }
        handshake(stream, endpoint).await
    }
}

/// HTTP/1.1 over an open connection to the agent (TCP or unix socket).
async fn handshake<S>(stream: S, endpoint: String) -> Result<SendRequest<Full<Bytes>>, AgentError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (sender, conn) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|source| AgentError::Http { endpoint, source })?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!("agent connection ended: {e}");
        }
    });
    Ok(sender)
}

async fn error_body(resp: hyper::Response<Incoming>) -> String {
    match Limited::new(resp.into_body(), MAX_ERROR_BODY)
        .collect()
        .await
    {
        Ok(b) => String::from_utf8_lossy(&b.to_bytes()).trim().to_string(),
        Err(_) => "<body unreadable or longer than 4 KiB>".to_string(),
    }
}

/// SUBSCRIBE on a fresh connection; returns the event stream once the agent answered 200.
pub async fn subscribe(endpoint: &Endpoint, call: &Call) -> Result<EventStream, AgentError> {
    let addr = endpoint.address.clone();
    let mut sender = endpoint.connect().await?;
    let resp = endpoint.send(&mut sender, call).await?;
    let status = resp.status();
    if status != StatusCode::OK {
        let body = error_body(resp).await;
        return Err(AgentError::Status {
            endpoint: addr,
            call: "SUBSCRIBE",
            status,
            body,
        });
    }
    let ct = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    if !ct.is_empty() && ct != PROTOBUF {
        return Err(AgentError::ContentType {
            endpoint: addr,
            content_type: ct,
        });
    }
    Ok(EventStream {
        endpoint: addr,
        body: resp.into_body(),
        buf: BytesMut::new(),
        decoder: Decoder::new(MAX_EVENT_BYTES),
        _sender: sender,
    })
}

/// The SUBSCRIBE response body, decoded record by record.
pub struct EventStream {
    endpoint: String,
    body: Incoming,
    buf: BytesMut,
    decoder: Decoder,
    // Keeps the connection's request side alive for as long as the stream is read.
    _sender: SendRequest<Full<Bytes>>,
}

impl EventStream {
    /// The next event. Any error ends the stream (the agent is then treated as disconnected).
    pub async fn next(&mut self) -> Result<Event, AgentError> {
        loop {
            match self.decoder.decode(&mut self.buf) {
                Ok(Some(record)) => {
                    return Event::decode(record.as_ref()).map_err(|source| AgentError::Decode {
                        endpoint: self.endpoint.clone(),
                        len: record.len(),
                        source,
                    });
                }
                Ok(None) => {}
                Err(source) => {
                    return Err(AgentError::Framing {
                        endpoint: self.endpoint.clone(),
                        source,
                    })
                }
            }
            match self.body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
                Some(Err(source)) => {
                    return Err(AgentError::Http {
                        endpoint: self.endpoint.clone(),
                        source,
                    })
                }
                None => {
                    if let Err(source) = self.decoder.finish(&self.buf) {
                        return Err(AgentError::Framing {
                            endpoint: self.endpoint.clone(),
                            source,
                        });
                    }
                    return Err(AgentError::StreamEnded {
                        endpoint: self.endpoint.clone(),
                    });
                }
            }
        }
    }
}

/// The keep-alive connection for every call but SUBSCRIBE.
pub struct Caller {
    endpoint: Endpoint,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Caller {
    pub fn new(endpoint: Endpoint) -> Self {
        Caller {
            endpoint,
            sender: None,
        }
    }

    /// Drop the connection (a new one is opened by the next call).
    pub fn reset(&mut self) {
        self.sender = None;
    }

    /// Send one call; `Ok` when the agent answered 202 Accepted (or another 2xx).
    pub async fn call(&mut self, call: &Call, name: &'static str) -> Result<(), AgentError> {
        let addr = self.endpoint.address.clone();
        let reuse = self.sender.as_ref().is_some_and(|s| !s.is_closed());
        if !reuse {
            self.sender = Some(self.endpoint.connect().await?);
        }
        let Some(sender) = self.sender.as_mut() else {
            return Err(AgentError::StreamEnded { endpoint: addr });
        };
        let result = async {
            sender.ready().await.map_err(|source| AgentError::Http {
                endpoint: addr.clone(),
                source,
            })?;
            let resp = self.endpoint.send(sender, call).await?;
            let status = resp.status();
            if status.is_success() {
                // Drain the (empty) body so the connection can be reused.
                let _ = Limited::new(resp.into_body(), MAX_ERROR_BODY)
                    .collect()
                    .await;
                Ok(())
            } else {
                let body = error_body(resp).await;
                Err(AgentError::Status {
                    endpoint: addr.clone(),
                    call: name,
                    status,
                    body,
                })
            }
        }
        .await;
        if result
            .as_ref()
            .is_err_and(|e| !matches!(e, AgentError::Status { .. }))
        {
            self.sender = None;
        }
        result
    }
}
