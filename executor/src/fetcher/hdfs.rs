//! `hdfs://` through the native `hdfs-native` client (no JVM, no `hadoop` binary).
//!
//! `hdfs://nn:port/path` talks to that NameNode; `hdfs:///path` uses `fs.defaultFS`. The effective
//! user is the task's user when one is given, else `HADOOP_USER_NAME` or the process user.
//!
//! What `hdfs-native` (0.14) does with an operator's configuration, checked against a scripted
//! NameNode/DataNode in `tests/fetcher_hdfs.rs`:
//! - It reads `core-site.xml` and `hdfs-site.xml` from `HADOOP_CONF_DIR` (else
//!   `$HADOOP_HOME/etc/hadoop`) each time a client is built, i.e. at every fetch.
//! - An authority WITHOUT a port is always a nameservice: `hdfs://nameservice1/path` uses
//!   `dfs.ha.namenodes.nameservice1` and `dfs.namenode.rpc-address.nameservice1.<nn>`
//!   (`dfs.nameservices` itself is not needed). With no such keys hdfs-native finds no
//!   NameNode; Hadoop then takes the host as a NameNode on the default RPC port, and so do we:
//!   `hdfs://host/path` is retried as `hdfs://host:8020/path` (see [`DEFAULT_NAMENODE_PORT`]).
//! - NameNodes are tried in the order listed (`dfs.client.failover.random.order.<ns>` shuffles
//!   them); a `StandbyException` moves to the next at once, and the one that answered serves the
//!   rest of that fetch. Connection failures also fail over, up to
//!   `dfs.client.failover.max.attempts` (15) with sleeps between rounds
//!   (`dfs.client.failover.sleep.base.millis` 500 doubling, `...sleep.max.millis` 15000): about
//!   a minute with two NameNodes down, which the stall timeout (default 60 s) also bounds.
//!   `dfs.client.failover.proxy.provider.<ns>` may be `ConfiguredFailoverProxyProvider` or the
//!   observer-read ones; any other is treated as `ConfiguredFailoverProxyProvider` (with a
//!   warning).
//! - A block's replicas are tried in the order the NameNode lists them: a DataNode that refuses
//!   the connection or answers READ_BLOCK with an error is skipped for the rest of the file.

use futures_util::StreamExt;

use super::error::FetchErrorKind;
use super::stream::ByteStream;

/// Hadoop's default NameNode RPC port, for `hdfs://host/path` when `host` is no nameservice.
pub const DEFAULT_NAMENODE_PORT: u16 = 8020;

/// hdfs-native's answer when an authority has no port and no nameservice keys.
const NO_NAMENODE: &str = "No NameNode hosts found";

/// `hdfs://host` (an authority without a port), as opposed to `hdfs://host:port`, `hdfs://[v6]:port`
/// or the empty authority of `hdfs:///path`.
fn authority_without_port(namenode: &str) -> bool {
    let Some(auth) = namenode.strip_prefix("hdfs://") else {
        return false;
    };
    let host_end = auth.rfind(']').map(|i| i + 1).unwrap_or(0);
    !auth.is_empty() && !auth[host_end..].contains(':')
}

fn map_err(namenode: &str, path: &str, e: hdfs_native::HdfsError) -> FetchErrorKind {
    use hdfs_native::HdfsError as H;
    match e {
        H::InvalidArgument(m) if m.contains(NO_NAMENODE) => {
            FetchErrorKind::InvalidUri(format!(
            "HDFS {namenode}{path}: no NameNode for {}: give host:port, or define the nameservice \
             (dfs.ha.namenodes.<ns>, dfs.namenode.rpc-address.<ns>.<nn>) in the hdfs-site.xml of \
             HADOOP_CONF_DIR",
            if namenode.is_empty() { "fs.defaultFS" } else { namenode }
        ))
        }
        H::FileNotFound(_) => FetchErrorKind::NotFound(format!("hdfs file {path}")),
        H::IsADirectoryError(_) => {
            FetchErrorKind::InvalidUri(format!("hdfs path {path} is a directory"))
        }
        H::IOError(io) => FetchErrorKind::Connect(format!("HDFS NameNode {namenode}: {io}")),
        H::RPCError(class, msg) if class.contains("FileNotFoundException") => {
            FetchErrorKind::NotFound(format!("hdfs file {path}: {}", first_line(&msg)))
        }
        H::RPCError(class, msg) if class.contains("AccessControlException") => {
            FetchErrorKind::PermissionDenied(format!("hdfs file {path}: {}", first_line(&msg)))
        }
        // A NameNode's error message carries its Java stack trace: a task's status message
        // gets the exception and its first line only.
        H::RPCError(class, msg) => FetchErrorKind::Remote(format!(
            "HDFS {namenode}{path}: {class}: {}",
            first_line(&msg)
        )),
        other => FetchErrorKind::Remote(format!("HDFS {namenode}{path}: {other}")),
    }
}

fn first_line(msg: &str) -> &str {
    msg.lines().next().unwrap_or("").trim_end()
}

/// A runtime of its own for the HDFS client: it is isolated from the executor's
/// current-thread runtime, so however the client waits or retries, the executor's timers
/// (stall timeout) keep running.
fn runtime() -> Result<&'static tokio::runtime::Runtime, FetchErrorKind> {
    static RT: std::sync::OnceLock<Result<tokio::runtime::Runtime, String>> =
        std::sync::OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("croupier-hdfs")
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
    })
    .as_ref()
    .map_err(|e| FetchErrorKind::Internal(format!("HDFS runtime: {e}")))
}

/// Opens `path` for reading. `answer_within` bounds how long the NameNode(s) may take to give a
/// usable answer (hdfs-native retries connections and fails over on its own for minutes); the
/// error then names the NameNode address really tried.
pub(crate) async fn open(
    namenode: &str,
    path: &str,
    user: Option<&str>,
    answer_within: std::time::Duration,
) -> Result<(u64, ByteStream), FetchErrorKind> {
    let rt = runtime()?;
    let (url_tx, url_rx) = tokio::sync::oneshot::channel::<String>();
    let (meta_tx, meta_rx) = tokio::sync::oneshot::channel();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, FetchErrorKind>>(16);
    let (nn, p, u) = (
        namenode.to_string(),
        path.to_string(),
        user.map(str::to_string),
    );
    let task = rt.spawn(async move {
        match open_here(&nn, &p, u.as_deref(), url_tx).await {
            Err(e) => {
                let _ = meta_tx.send(Err(e));
            }
            Ok((len, mut stream)) => {
                if meta_tx.send(Ok(len)).is_err() {
                    return;
                }
                while let Some(item) = stream.next().await {
                    if tx.send(item).await.is_err() {
                        break;
                    }
                }
            }
        }
    });
    let answered = tokio::time::timeout(answer_within, meta_rx).await;
    let len = match answered {
        Ok(r) => {
            r.map_err(|_| FetchErrorKind::Internal("HDFS task ended without an answer".into()))??
        }
        Err(_) => {
            // Stop hdfs-native's own retries; name what it was trying.
            task.abort();
            let tried = match url_rx.await {
                Ok(u) if u.is_empty() => "(fs.defaultFS)".to_string(),
                Ok(u) => u,
                Err(_) => namenode.to_string(),
            };
            return Err(FetchErrorKind::Connect(format!(
                "HDFS NameNode {tried} gave no usable answer within {answer_within:?}"
            )));
        }
    };
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
    .boxed();
    Ok((len, stream))
}

async fn open_here(
    namenode: &str,
    path: &str,
    user: Option<&str>,
    tried: tokio::sync::oneshot::Sender<String>,
) -> Result<(u64, ByteStream), FetchErrorKind> {
    let build = |url: &str| {
        let mut b = hdfs_native::ClientBuilder::new();
        if !url.is_empty() {
            b = b.with_url(url);
        }
        if let Some(u) = user {
            b = b.with_user(u);
        }
        b.build()
    };
    let (client, url) = match build(namenode) {
        Err(hdfs_native::HdfsError::InvalidArgument(m))
            if m.contains(NO_NAMENODE) && authority_without_port(namenode) =>
        {
            // Not a nameservice: a NameNode host on Hadoop's default port.
            let with_port = format!("{namenode}:{DEFAULT_NAMENODE_PORT}");
            tracing::debug!(namenode, %with_port, "no nameservice of that name; using the default NameNode port");
            let c = build(&with_port).map_err(|e| map_err(&with_port, path, e))?;
            (c, with_port)
        }
        other => (
            other.map_err(|e| map_err(namenode, path, e))?,
            namenode.to_string(),
        ),
    };
    let _ = tried.send(url.clone());
    let namenode = url.as_str();
    let reader = client
        .read(path)
        .await
        .map_err(|e| map_err(namenode, path, e))?;
    let len = reader.file_length();
    let nn = namenode.to_string();
    let p = path.to_string();
    let stream = reader
        .read_range_stream(0, len)
        .map(move |r| {
            // Keep the client (and its connections) alive as long as the stream.
            let _keep = &client;
            r.map_err(|e| match map_err(&nn, &p, e) {
                FetchErrorKind::Connect(m) | FetchErrorKind::Remote(m) => {
                    FetchErrorKind::Transfer(m)
                }
                other => other,
            })
        })
        .boxed();
    Ok((len as u64, stream))
}

#[cfg(test)]
mod tests {
    use super::authority_without_port;

    #[test]
    fn which_authorities_lack_a_port() {
        assert!(authority_without_port("hdfs://namenode"));
        assert!(authority_without_port("hdfs://nameservice1"));
        assert!(authority_without_port("hdfs://[::1]"));
        assert!(!authority_without_port("hdfs://namenode:8020"));
        assert!(!authority_without_port("hdfs://[::1]:8020"));
        assert!(!authority_without_port(""));
        assert!(!authority_without_port("hdfs://"));
    }
}
