//! Opening a URI's source (HTTP(S), local file, S3, HDFS) and streaming its bytes to disk.
//!
//! Network I/O runs on the caller's (current-thread) runtime; disk writes run on a blocking
//! thread fed through a bounded channel, so a file is never held in memory whole.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;

use super::config::FetchConfig;
use super::error::{io_kind, FetchErrorKind};
use super::stream::ByteStream;
use super::uri::Source;

/// Clients shared by the URIs of one `fetch_all` call.
pub(crate) struct Clients {
    http: reqwest::Client,
}

impl Clients {
    pub(crate) fn new(cfg: &FetchConfig) -> Result<Clients, FetchErrorKind> {
        let mut b = reqwest::Client::builder()
            .connect_timeout(cfg.stall_timeout)
            .redirect(reqwest::redirect::Policy::limited(10))
            .user_agent(concat!("croupier-fetcher/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = &cfg.ca_file {
            let pem = std::fs::read(ca).map_err(|e| io_kind(ca, e))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| FetchErrorKind::Internal(format!("CA file {}: {e}", ca.display())))?;
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        let http = b
            .build()
            .map_err(|e| FetchErrorKind::Internal(format!("HTTP client: {e}")))?;
        Ok(Clients { http })
    }
}

enum Body {
    /// A local file, already open (as the task user: see [`super::local`]).
    Local(std::fs::File),
    Stream(ByteStream),
}

/// A source that answered, with its size when it told us.
pub(crate) struct Opened {
    pub size: Option<u64>,
    body: Body,
}

fn classify_reqwest(e: &reqwest::Error) -> FetchErrorKind {
    let mut chain = String::new();
    let mut src: Option<&dyn std::error::Error> = Some(e);
    while let Some(s) = src {
        if !chain.is_empty() {
            chain.push_str(": ");
        }
        chain.push_str(&s.to_string());
        src = s.source();
    }
    let lower = chain.to_ascii_lowercase();
    if lower.contains("dns error") || lower.contains("failed to lookup address") {
        FetchErrorKind::Dns(chain)
    } else if e.is_timeout() {
        FetchErrorKind::Connect(format!("timed out: {chain}"))
    } else if e.is_connect() {
        FetchErrorKind::Connect(chain)
    } else {
        FetchErrorKind::Transfer(chain)
    }
}

/// Opens `source`: sends the request (HTTP), stats the file (local), or looks up the object.
pub(crate) async fn open(
    source: &Source,
    clients: &std::sync::OnceLock<Clients>,
    user: Option<&str>,
    as_user: (Option<super::Owner>, &[u32]),
    cfg: &FetchConfig,
) -> Result<Opened, FetchErrorKind> {
    match source {
        Source::Local(path) => {
            // Opened with the task user's permissions (a root executor must not read for a
            // user what that user could not); what is copied is this open file.
            let (p, owner, groups) = (path.clone(), as_user.0, as_user.1.to_vec());
            let (file, meta) = tokio::task::spawn_blocking(move || {
                let f = super::local::open_as(&p, owner, &groups)?;
                let m = f.metadata()?;
                Ok::<_, std::io::Error>((f, m))
            })
            .await
            .map_err(|e| FetchErrorKind::Internal(e.to_string()))?
            .map_err(|e| match (e.kind(), user) {
                (std::io::ErrorKind::PermissionDenied, Some(u)) => {
                    FetchErrorKind::PermissionDenied(format!(
                        "user {u} may not read {}",
                        path.display()
                    ))
                }
                _ => io_kind(path, e),
            })?;
            if meta.is_dir() {
                return Err(FetchErrorKind::InvalidUri(format!(
                    "{} is a directory",
                    path.display()
                )));
            }
            Ok(Opened {
                size: Some(meta.len()),
                body: Body::Local(file),
            })
        }
        Source::Http(url) => {
            // Built on first use: a cache hit never pays for loading the CA roots.
            let clients = match clients.get() {
                Some(c) => c,
                None => {
                    let _ = clients.set(Clients::new(cfg)?);
                    clients
                        .get()
                        .ok_or_else(|| FetchErrorKind::Internal("HTTP client not set".into()))?
                }
            };
            let send = clients.http.get(url).send();
            let resp = tokio::time::timeout(cfg.stall_timeout, send)
                .await
                .map_err(|_| FetchErrorKind::Stalled(cfg.stall_timeout))?
                .map_err(|e| classify_reqwest(&e))?;
            if resp.status() != reqwest::StatusCode::OK {
                return Err(FetchErrorKind::HttpStatus {
                    status: resp.status().as_u16(),
                    url: resp.url().to_string(),
                });
            }
            let size = resp.content_length();
            let stream = resp
                .bytes_stream()
                .map(|r| r.map_err(|e| classify_reqwest(&e)))
                .boxed();
            Ok(Opened {
                size,
                body: Body::Stream(stream),
            })
        }
        Source::S3 { bucket, key } => {
            let (size, s) = tokio::time::timeout(cfg.stall_timeout, super::s3::open(bucket, key))
                .await
                .map_err(|_| {
                    FetchErrorKind::Connect(format!(
                        "S3 endpoint gave no answer for {bucket}/{key} within {:?}",
                        cfg.stall_timeout
                    ))
                })??;
            Ok(Opened {
                size: Some(size),
                body: Body::Stream(s),
            })
        }
        Source::Hdfs { namenode, path } => {
            // The HDFS client retries connections for minutes on its own: bound it.
            let (size, s) = super::hdfs::open(namenode, path, user, cfg.stall_timeout).await?;
            Ok(Opened {
                size: Some(size),
                body: Body::Stream(s),
            })
        }
    }
}

/// Where the bytes went.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Landed {
    /// All bytes are in the requested file.
    Complete,
    /// The size limit was passed: the bytes were moved to (and finished in) the overflow path.
    Overflowed,
}

/// Destination of a transfer: a file, and optionally a size limit past which the bytes are
/// moved to `overflow` (used when a cache download of unknown size turns out too large).
pub(crate) struct Sink {
    pub path: PathBuf,
    pub overflow: Option<(u64, PathBuf)>,
}

/// Progress reporting for one URI.
pub(crate) struct Progress {
    pub uri: String,
    pub interval: Duration,
}

/// Streams `opened` into `sink`. Returns the byte count and where the bytes landed.
pub(crate) async fn transfer(
    opened: Opened,
    sink: Sink,
    cfg: &FetchConfig,
    progress: &Progress,
) -> Result<(u64, Landed), FetchErrorKind> {
    let expected = opened.size;
    match opened.body {
        Body::Local(src) => {
            let dst = sink.path.clone();
            let n = tokio::task::spawn_blocking(move || copy_open_file(src, &dst))
                .await
                .map_err(|e| FetchErrorKind::Internal(e.to_string()))??;
            Ok((n, Landed::Complete))
        }
        Body::Stream(mut stream) => {
            let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(32);
            let writer = tokio::task::spawn_blocking(move || write_loop(rx, sink));
            let started = Instant::now();
            let mut last_report = Instant::now();
            let mut got: u64 = 0;
            let mut failure: Option<FetchErrorKind> = None;
            loop {
                let next = match tokio::time::timeout(cfg.stall_timeout, stream.next()).await {
                    Ok(n) => n,
                    Err(_) => {
                        failure = Some(FetchErrorKind::Stalled(cfg.stall_timeout));
                        break;
                    }
                };
                match next {
                    None => break,
                    Some(Ok(chunk)) => {
                        got += chunk.len() as u64;
                        if let Some(exp) = expected {
                            if got > exp {
                                failure = Some(FetchErrorKind::Transfer(format!(
                                    "body longer than the announced {exp} bytes"
                                )));
                                break;
                            }
                        }
                        if tx.send(chunk).await.is_err() {
                            // The writer stopped: its error is reported below.
                            break;
                        }
                        if last_report.elapsed() >= progress.interval {
                            last_report = Instant::now();
                            let secs = started.elapsed().as_secs_f64().max(1e-6);
                            tracing::info!(
                                uri = %progress.uri,
                                bytes = got,
                                total = ?expected,
                                rate_mib_s = format!("{:.1}", got as f64 / secs / 1048576.0),
                                "fetch progress"
                            );
                        }
                    }
                    Some(Err(e)) => {
                        failure = Some(match (expected, e) {
                            (Some(exp), FetchErrorKind::Transfer(cause)) if got < exp => {
                                FetchErrorKind::Truncated {
                                    got,
                                    expected: exp,
                                    cause: Some(cause),
                                }
                            }
                            (_, e) => e,
                        });
                        break;
                    }
                }
            }
            drop(tx);
            let written = writer
                .await
                .map_err(|e| FetchErrorKind::Internal(e.to_string()))?;
            if let Some(f) = failure {
                return Err(f);
            }
            let (n, landed) = written?;
            if let Some(exp) = expected {
                if n != exp {
                    return Err(FetchErrorKind::Truncated {
                        got: n,
                        expected: exp,
                        cause: None,
                    });
                }
            }
            Ok((n, landed))
        }
    }
}

/// Creates `path` as a NEW file. Whatever non-directory had that name is unlinked first and
/// the file is opened `O_EXCL`, so the fetcher never writes through an existing name: in links
/// mode a sandbox file may be a hardlink to a read-only cache entry (writing through it would
/// change the entry for every later task), and `O_EXCL` never follows a symlink either.
fn create(path: &Path) -> Result<std::fs::File, FetchErrorKind> {
    use std::os::unix::fs::OpenOptionsExt;
    super::place::remove_existing(path)?;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(path)
        .map_err(|e| io_kind(path, e))
}

/// Copies an open local source file into a new file `dst`.
fn copy_open_file(from: std::fs::File, dst: &Path) -> Result<u64, FetchErrorKind> {
    copy_from_file(from, dst).map(|(n, _)| n)
}

/// Copies `src` into a new file `dst` (see [`create`]); returns the byte count and the new
/// file, positioned at its end.
fn copy_to_new(src: &Path, dst: &Path) -> Result<(u64, std::fs::File), FetchErrorKind> {
    let from = std::fs::File::open(src).map_err(|e| io_kind(src, e))?;
    copy_from_file(from, dst)
}

fn copy_from_file(
    mut from: std::fs::File,
    dst: &Path,
) -> Result<(u64, std::fs::File), FetchErrorKind> {
    let mut to = create(dst)?;
    // std::io::copy between two files uses copy_file_range on Linux.
    let n = std::io::copy(&mut from, &mut to).map_err(|e| match e.raw_os_error() {
        Some(libc::ENOSPC) | Some(libc::EDQUOT) => FetchErrorKind::DiskFull(dst.to_path_buf()),
        _ => FetchErrorKind::Io {
            path: dst.to_path_buf(),
            source: e,
        },
    })?;
    Ok((n, to))
}

fn write_loop(
    mut rx: tokio::sync::mpsc::Receiver<Bytes>,
    sink: Sink,
) -> Result<(u64, Landed), FetchErrorKind> {
    let mut path = sink.path.clone();
    let mut file = std::io::BufWriter::with_capacity(1 << 20, create(&path)?);
    let mut n: u64 = 0;
    let mut landed = Landed::Complete;
    while let Some(chunk) = rx.blocking_recv() {
        if let (Landed::Complete, Some((limit, over))) = (&landed, &sink.overflow) {
            if n + chunk.len() as u64 > *limit {
                file.flush().map_err(|e| io_kind(&path, e))?;
                drop(file);
                // The overflow file is new too (never the sandbox name's old inode), and the
                // rest of the bytes go to the descriptor just created, not to a re-opened name.
                let (_, f) = copy_to_new(&path, over)?;
                let _ = std::fs::remove_file(&path);
                path = over.clone();
                file = std::io::BufWriter::with_capacity(1 << 20, f);
                landed = Landed::Overflowed;
            }
        }
        file.write_all(&chunk).map_err(|e| io_kind(&path, e))?;
        n += chunk.len() as u64;
    }
    file.flush().map_err(|e| io_kind(&path, e))?;
    Ok((n, landed))
}
