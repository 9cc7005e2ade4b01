//! The GET of HTTP(S) health checks and checks, done natively with the result `curl -s -S -L
//! -k -w %{http_code} -o /dev/null` gives upstream: a fresh connection per request, redirects
//! followed (301, 302, 303, 307, 308; at most 50), any server certificate accepted, the body
//! read to its end and dropped, and the final status code as the result.
//!
//! Built on the hyper HTTP/1 client the agent link already uses (no connection pool, no
//! client object): an HTTP probe adds nothing resident to the executor but its request. The
//! TLS configuration is made once, when the first `https` URL is probed.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http::{header, Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use url::Url;

/// Redirects followed before giving up (curl's default `--max-redirs` with `-L`).
pub const MAX_REDIRECTS: usize = 50;

const USER_AGENT: &str = concat!("croupier-executor/", env!("CARGO_PKG_VERSION"));

static TLS: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();

fn tls() -> Result<Arc<rustls::ClientConfig>, String> {
    TLS.get_or_init(|| {
        crate::tls::accept_any_client()
            .map(Arc::new)
            .map_err(|e| e.to_string())
    })
    .clone()
}

/// GET `url`, following redirects; the final status code, or why no answer came.
pub async fn get(url: &str) -> Result<StatusCode, String> {
    let mut current = Url::parse(url).map_err(|e| format!("invalid URL {url}: {e}"))?;
    for _ in 0..=MAX_REDIRECTS {
        let (status, location) = get_once(&current)
            .await
            .map_err(|e| format!("HTTP request to {current} failed: {e}"))?;
        let redirect = matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308);
        match location {
            Some(loc) if redirect => {
                current = current.join(&loc).map_err(|e| {
                    format!("{current} redirected to an invalid location {loc:?}: {e}")
                })?;
            }
            _ => return Ok(status),
        }
    }
    Err(format!(
        "HTTP request to {url} failed: more than {MAX_REDIRECTS} redirects"
    ))
}

/// One request on a fresh connection: its status and `Location` header.
async fn get_once(url: &Url) -> Result<(StatusCode, Option<String>), String> {
    let https = match url.scheme() {
        "http" => false,
        "https" => true,
        other => return Err(format!("unsupported scheme {other}")),
    };
    let host = url.host_str().ok_or("no host")?;
    let port = url.port_or_known_default().ok_or("no port")?;
    // `[::1]` in a URL is `::1` to connect to.
    let connect_host = host.trim_start_matches('[').trim_end_matches(']');
    let tcp = TcpStream::connect((connect_host, port))
        .await
        .map_err(|e| e.to_string())?;
    let _ = tcp.set_nodelay(true);
    let authority = match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    };
    let path = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    };
    let req = Request::builder()
        .method(Method::GET)
        .uri(path)
        .header(header::HOST, authority)
        .header(header::USER_AGENT, USER_AGENT)
        .header(header::ACCEPT, "*/*")
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    if https {
        let name = rustls::pki_types::ServerName::try_from(connect_host.to_string())
            .map_err(|e| format!("invalid TLS server name {connect_host}: {e}"))?;
        let tls = tokio_rustls::TlsConnector::from(tls()?)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS handshake: {e}"))?;
        exchange(tls, req).await
    } else {
        exchange(tcp, req).await
    }
}

async fn exchange<S>(
    io: S,
    req: Request<Empty<Bytes>>,
) -> Result<(StatusCode, Option<String>), String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (mut sender, conn) = http1::handshake::<_, Empty<Bytes>>(TokioIo::new(io))
        .await
        .map_err(|e| error_chain(&e))?;
    // The connection is driven here and dropped with the answer: one request per connection.
    let request = async {
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| error_chain(&e))?;
        let status = resp.status();
        let location = resp
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut body = resp.into_body();
        while let Some(frame) = body.frame().await {
            frame.map_err(|e| format!("reading the answer: {}", error_chain(&e)))?;
        }
        Ok::<_, String>((status, location))
    };
    tokio::pin!(conn);
    tokio::pin!(request);
    tokio::select! {
        biased;
        r = &mut request => r,
        r = &mut conn => match r {
            // The connection is done: what it delivered is there to read (or the request
            // fails at once for want of an answer).
            Ok(()) => request.await,
            Err(e) => Err(error_chain(&e)),
        },
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(x) = src {
        s.push_str(": ");
        s.push_str(&x.to_string());
        src = x.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Answers `/start` with a 302 to `/next`, `/next` with a 301 to an absolute URL of
    /// `/final`, and `/final` with 399 and a body.
    async fn server() -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 512];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&buf).to_string();
                    let resp = if head.starts_with("GET /start ") {
                        "HTTP/1.1 302 Found\r\nLocation: /next\r\nContent-Length: 0\r\n\r\n"
                            .to_string()
                    } else if head.starts_with("GET /next ") {
                        format!("HTTP/1.1 301 Moved\r\nLocation: http://127.0.0.1:{port}/final\r\nContent-Length: 0\r\n\r\n")
                    } else {
                        "HTTP/1.1 399 Odd\r\nContent-Length: 5\r\n\r\nhello".to_string()
                    };
                    let _ = sock.write_all(resp.as_bytes()).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        port
    }

    #[tokio::test]
    async fn redirects_are_followed_to_the_final_status() {
        let port = server().await;
        let code = get(&format!("http://127.0.0.1:{port}/start"))
            .await
            .unwrap();
        assert_eq!(code.as_u16(), 399);
    }

    #[tokio::test]
    async fn a_refused_connection_is_an_error_naming_the_url() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let url = format!("http://127.0.0.1:{port}/health");
        let e = get(&url).await.unwrap_err();
        assert!(e.contains(&url), "{e}");
    }
}
