//! `hdfs://` through the native `hdfs-native` client (no JVM, no `hadoop` binary).
//!
//! `hdfs://nn:port/path` talks to that NameNode (or logical nameservice, resolved through the
//! Hadoop configuration in `HADOOP_CONF_DIR`); `hdfs:///path` uses `fs.defaultFS`. The effective
//! user is the task's user when one is given, else `HADOOP_USER_NAME` or the process user.

use futures_util::StreamExt;

use super::error::FetchErrorKind;
use super::source::ByteStream;

fn map_err(namenode: &str, path: &str, e: hdfs_native::HdfsError) -> FetchErrorKind {
    use hdfs_native::HdfsError as H;
    match e {
        H::FileNotFound(_) => FetchErrorKind::NotFound(format!("hdfs file {path}")),
        H::IsADirectoryError(_) => {
            FetchErrorKind::InvalidUri(format!("hdfs path {path} is a directory"))
        }
        H::IOError(io) => FetchErrorKind::Connect(format!("HDFS NameNode {namenode}: {io}")),
        H::RPCError(class, msg) if class.contains("FileNotFoundException") => {
            FetchErrorKind::NotFound(format!("hdfs file {path}: {msg}"))
        }
        H::RPCError(class, msg) if class.contains("AccessControlException") => {
            FetchErrorKind::PermissionDenied(format!("hdfs file {path}: {msg}"))
        }
        other => FetchErrorKind::Remote(format!("HDFS {namenode}{path}: {other}")),
    }
}

pub(crate) async fn open(
    namenode: &str,
    path: &str,
    user: Option<&str>,
) -> Result<(u64, ByteStream), FetchErrorKind> {
    let mut b = hdfs_native::ClientBuilder::new();
    if !namenode.is_empty() {
        b = b.with_url(namenode);
    }
    if let Some(u) = user {
        b = b.with_user(u);
    }
    let client = b.build().map_err(|e| map_err(namenode, path, e))?;
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
