//! Shared pieces of the fetcher tests: a scriptable HTTP(S) server on 127.0.0.1 and archive
//! builders (including hostile archives that the tar/zip builders would refuse to write).
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

/// What the server does for one path.
#[derive(Clone)]
pub enum Route {
    /// 200 with Content-Length.
    Ok(Arc<Vec<u8>>),
    /// 200 without Content-Length (body delimited by closing the connection).
    OkNoLength(Arc<Vec<u8>>),
    /// 200, body sent in chunks of `chunk` bytes with `delay` between them.
    Slow {
        body: Arc<Vec<u8>>,
        chunk: usize,
        delay: Duration,
    },
    /// 302 to another path.
    Redirect(String),
    /// Any status with a short body.
    Status(u16),
    /// 200, sends `sent` bytes of a `len`-byte Content-Length, then goes silent (keeps the socket).
    Stall { len: usize, sent: usize },
    /// 200 claiming `claimed` bytes, sends `body` and closes.
    LieLength { body: Arc<Vec<u8>>, claimed: usize },
    /// 200 chunked, sends part of the body and closes without the final chunk.
    TruncatedChunked(Arc<Vec<u8>>),
}

#[derive(Clone, Default)]
pub struct Server {
    routes: Arc<Mutex<HashMap<String, Route>>>,
    hits: Arc<Mutex<HashMap<String, usize>>>,
    pub addr: Option<SocketAddr>,
    pub scheme: &'static str,
}

impl Server {
    /// Starts a plain HTTP server on 127.0.0.1 (ephemeral port) on a background runtime thread,
    /// so it serves even while a test blocks or other processes fetch from it.
    pub fn start() -> Server {
        Self::start_inner(None)
    }

    /// Same, over TLS with the given acceptor.
    pub fn start_tls(acceptor: tokio_rustls::TlsAcceptor) -> Server {
        Self::start_inner(Some(acceptor))
    }

    fn start_inner(tls: Option<tokio_rustls::TlsAcceptor>) -> Server {
        let mut s = Server {
            scheme: if tls.is_some() { "https" } else { "http" },
            ..Default::default()
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let routes = s.routes.clone();
        let hits = s.hits.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("test server runtime");
            rt.block_on(async move {
                let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
                tx.send(l.local_addr().expect("addr")).expect("send addr");
                loop {
                    let Ok((sock, _)) = l.accept().await else {
                        continue;
                    };
                    let (routes, hits, tls) = (routes.clone(), hits.clone(), tls.clone());
                    tokio::spawn(async move {
                        match tls {
                            Some(acc) => {
                                if let Ok(s) = acc.accept(sock).await {
                                    let _ = serve(s, routes, hits).await;
                                }
                            }
                            None => {
                                let _ = serve(sock, routes, hits).await;
                            }
                        }
                    });
                }
            });
        });
        s.addr = Some(rx.recv().expect("server address"));
        s
    }

    pub fn route(&self, path: &str, r: Route) {
        self.routes.lock().unwrap().insert(path.to_string(), r);
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{}", self.scheme, self.addr.unwrap(), path)
    }

    pub fn hits(&self, path: &str) -> usize {
        *self.hits.lock().unwrap().get(path).unwrap_or(&0)
    }
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    routes: Arc<Mutex<HashMap<String, Route>>>,
    hits: Arc<Mutex<HashMap<String, usize>>>,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut tmp).await?;
        if n == 0 || buf.len() > 65536 {
            return Ok(());
        }
        buf.extend_from_slice(&tmp[..n]);
    }
    let head = String::from_utf8_lossy(&buf).to_string();
    let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
    *hits.lock().unwrap().entry(path.clone()).or_insert(0) += 1;
    let route = routes.lock().unwrap().get(&path).cloned();
    let hdr = |code: u16, extra: &str| {
        format!("HTTP/1.1 {code} X\r\nConnection: close\r\n{extra}\r\n").into_bytes()
    };
    match route {
        None => {
            s.write_all(&hdr(404, "Content-Length: 9\r\n")).await?;
            s.write_all(b"not found").await?;
        }
        Some(Route::Ok(body)) => {
            s.write_all(&hdr(200, &format!("Content-Length: {}\r\n", body.len())))
                .await?;
            s.write_all(&body).await?;
        }
        Some(Route::OkNoLength(body)) => {
            s.write_all(&hdr(200, "")).await?;
            s.write_all(&body).await?;
        }
        Some(Route::Slow { body, chunk, delay }) => {
            s.write_all(&hdr(200, &format!("Content-Length: {}\r\n", body.len())))
                .await?;
            for c in body.chunks(chunk) {
                s.write_all(c).await?;
                s.flush().await?;
                tokio::time::sleep(delay).await;
            }
        }
        Some(Route::Redirect(to)) => {
            s.write_all(&hdr(
                302,
                &format!("Location: {to}\r\nContent-Length: 0\r\n"),
            ))
            .await?;
        }
        Some(Route::Status(code)) => {
            s.write_all(&hdr(code, "Content-Length: 4\r\n")).await?;
            s.write_all(b"nope").await?;
        }
        Some(Route::Stall { len, sent }) => {
            s.write_all(&hdr(200, &format!("Content-Length: {len}\r\n")))
                .await?;
            s.write_all(&vec![7u8; sent]).await?;
            s.flush().await?;
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
        Some(Route::LieLength { body, claimed }) => {
            s.write_all(&hdr(200, &format!("Content-Length: {claimed}\r\n")))
                .await?;
            s.write_all(&body).await?;
        }
        Some(Route::TruncatedChunked(body)) => {
            s.write_all(&hdr(200, "Transfer-Encoding: chunked\r\n"))
                .await?;
            let half = &body[..body.len() / 2];
            s.write_all(format!("{:x}\r\n", body.len()).as_bytes())
                .await?;
            s.write_all(half).await?;
        }
    }
    s.flush().await?;
    let _ = s.shutdown().await;
    Ok(())
}

/// Deterministic pseudo-random bytes.
pub fn bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A tar stream built from raw entries; names are written as given (no sanitising).
pub struct RawTar {
    out: Vec<u8>,
}

impl RawTar {
    pub fn new() -> RawTar {
        RawTar { out: Vec::new() }
    }

    fn header(&mut self, name: &str, kind: tar::EntryType, size: usize, link: &str, mode: u32) {
        let mut h = tar::Header::new_ustar();
        {
            let raw = h.as_old_mut();
            raw.name = [0; 100];
            raw.name[..name.len()].copy_from_slice(name.as_bytes());
            raw.linkname = [0; 100];
            raw.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_entry_type(kind);
        h.set_size(size as u64);
        h.set_mode(mode);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        self.out.extend_from_slice(h.as_bytes());
    }

    pub fn file(mut self, name: &str, data: &[u8]) -> Self {
        self.header(name, tar::EntryType::Regular, data.len(), "", 0o644);
        self.out.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.out.extend(std::iter::repeat_n(0u8, pad));
        self
    }

    pub fn dir(mut self, name: &str) -> Self {
        self.header(name, tar::EntryType::Directory, 0, "", 0o755);
        self
    }

    pub fn symlink(mut self, name: &str, target: &str) -> Self {
        self.header(name, tar::EntryType::Symlink, 0, target, 0o777);
        self
    }

    pub fn hardlink(mut self, name: &str, target: &str) -> Self {
        self.header(name, tar::EntryType::Link, 0, target, 0o644);
        self
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.out.extend(std::iter::repeat_n(0u8, 1024));
        self.out
    }
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// A zip with the given (name, data) files and (name, target) symlinks; names unsanitised.
pub fn zip(files: &[(&str, &[u8])], symlinks: &[(&str, &str)]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .unix_permissions(0o644);
    for (n, d) in files {
        w.start_file(*n, opts).unwrap();
        w.write_all(d).unwrap();
    }
    for (n, t) in symlinks {
        w.add_symlink(*n, *t, opts).unwrap();
    }
    w.finish().unwrap().into_inner()
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// A config whose cache lives in `dir`, with a short stall timeout.
pub fn config(cache_dir: &Path) -> croupier_executor::fetcher::FetchConfig {
    croupier_executor::fetcher::FetchConfig {
        cache_dir: cache_dir.to_path_buf(),
        stall_timeout: Duration::from_secs(5),
        ..Default::default()
    }
}

pub fn uri(value: &str) -> croupier_executor::fetcher::Uri {
    croupier_executor::fetcher::Uri {
        value: value.to_string(),
        ..Default::default()
    }
}

pub fn cached(value: &str) -> croupier_executor::fetcher::Uri {
    croupier_executor::fetcher::Uri {
        value: value.to_string(),
        cache: Some(true),
        ..Default::default()
    }
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

pub fn sandbox(root: &Path) -> PathBuf {
    let p = root.join("sandbox");
    std::fs::create_dir_all(&p).unwrap();
    p
}

/// A small tmpfs mounted on a new directory `dir` (root only), unmounted when dropped.
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of `size` (mount(8) syntax, e.g. "2m") on `dir`, which it creates.
    pub fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir(dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        let st = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .expect("run mount");
        assert!(
            st.success(),
            "mounting a {size} tmpfs on {} needs root: run the tests through scripts/test.sh as root",
            dir.display()
        );
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}
