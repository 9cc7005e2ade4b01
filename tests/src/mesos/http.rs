//! Minimal HTTP/1.1 client for the master's and agent's endpoints (hyper, one connection per
//! request).

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::error::MesosError;

/// How long a request may take to get its response's head, and [`request`] its body: a master
/// or agent that accepts a connection and never answers fails the call instead of hanging it.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest body [`request`] collects (an agent's `/state` with many tasks stays far below).
pub const MAX_BODY: usize = 64 << 20;

/// Sends one request and returns the response with its body unread (for streams).
pub async fn send(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Result<Response<Incoming>, MesosError> {
    let url = format!("http://{addr}{path}");
    let timed_out = MesosError::Http {
        method: method.to_string(),
        url: url.clone(),
        message: format!("no response within {REQUEST_TIMEOUT:?}"),
    };
    tokio::time::timeout(
        REQUEST_TIMEOUT,
        send_now(addr, method, &url, path, headers, body),
    )
    .await
    .map_err(|_| timed_out)?
}

async fn send_now(
    addr: SocketAddr,
    method: Method,
    url: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Result<Response<Incoming>, MesosError> {
    let err = |m: String| MesosError::Http {
        method: method.to_string(),
        url: url.to_string(),
        message: m,
    };
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| err(format!("connect: {e}")))?;
    let (mut sender, conn) = http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| err(format!("handshake: {e}")))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut req = Request::builder()
        .method(method.clone())
        .uri(path)
        .header("Host", addr.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| err(format!("building the request: {e}")))?;
    sender
        .send_request(req)
        .await
        .map_err(|e| err(format!("send: {e}")))
}

/// Sends one request and collects the body (bounded by [`MAX_BODY`]).
pub async fn request(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Result<(u16, Bytes), MesosError> {
    let resp = send(addr, method.clone(), path, headers, body).await?;
    let status = resp.status().as_u16();
    let limited = http_body_util::Limited::new(resp.into_body(), MAX_BODY);
    let failed = |message: String| MesosError::Http {
        method: method.to_string(),
        url: format!("http://{addr}{path}"),
        message,
    };
    let body = tokio::time::timeout(REQUEST_TIMEOUT, limited.collect())
        .await
        .map_err(|_| failed(format!("no whole body within {REQUEST_TIMEOUT:?}")))?
        .map_err(|e| failed(format!("reading the body (limit {MAX_BODY} bytes): {e}")))?
        .to_bytes();
    Ok((status, body))
}

/// `GET path` expecting `200` and a JSON body.
pub async fn get_json(addr: SocketAddr, path: &str) -> Result<serde_json::Value, MesosError> {
    let (status, body) = request(addr, Method::GET, path, &[], Vec::new()).await?;
    if status != 200 {
        return Err(MesosError::Refused {
            url: format!("http://{addr}{path}"),
            call: "GET".into(),
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
        });
    }
    serde_json::from_slice(&body).map_err(|e| MesosError::Protocol {
        peer: format!("http://{addr}{path}"),
        message: format!("body is not JSON: {e}"),
    })
}
