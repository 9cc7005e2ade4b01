//! `s3://`, `s3a://`, `s3n://` through `object_store` (native, no JVM).
//!
//! Credentials: `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/`AWS_SESSION_TOKEN`, else the
//! profile `AWS_PROFILE` (default `default`) of `~/.aws/credentials`
//! (`AWS_SHARED_CREDENTIALS_FILE`), else instance/container credentials as `object_store`
//! finds them. Region: `AWS_REGION`/`AWS_DEFAULT_REGION`, else the profile's `region` in
//! `~/.aws/config`, else `us-east-1`. Endpoint override: `AWS_ENDPOINT_URL` (or
//! `AWS_ENDPOINT`); path-style addressing is used.

use std::path::PathBuf;
use std::time::Duration;

use futures_util::StreamExt;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::{ClientOptions, ObjectStore, RetryConfig};

use super::error::FetchErrorKind;
use super::stream::ByteStream;

fn env(k: &str) -> Option<String> {
    std::env::var(k).ok().filter(|v| !v.is_empty())
}

/// Reads `key` of `[section]` from an INI-style AWS file.
fn ini_value(path: &std::path::Path, sections: &[String], key: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = s.trim().to_string();
        } else if let Some((k, v)) = line.split_once('=') {
            if sections.contains(&current) && k.trim() == key {
                return Some(v.trim().to_string());
            }
        }
    }
    None
}

fn home() -> Option<PathBuf> {
    env("HOME").map(PathBuf::from)
}

/// The client's settings from the environment and the AWS files (blocking: reads files), and
/// where the credentials came from.
fn configure(bucket: &str) -> (AmazonS3Builder, String) {
    let mut b = AmazonS3Builder::from_env().with_bucket_name(bucket);
    let profile = env("AWS_PROFILE").unwrap_or_else(|| "default".to_string());
    // Where the credentials came from, for an operator reading a refusal.
    let mut creds_from = "the environment (AWS_ACCESS_KEY_ID)".to_string();
    if env("AWS_ACCESS_KEY_ID").is_none() {
        let creds = env("AWS_SHARED_CREDENTIALS_FILE")
            .map(PathBuf::from)
            .or_else(|| home().map(|h| h.join(".aws/credentials")));
        creds_from =
            "instance or container metadata (no AWS_ACCESS_KEY_ID, no shared credentials file)"
                .to_string();
        if let Some(file) = creds {
            let sec = [profile.clone()];
            if let (Some(id), Some(secret)) = (
                ini_value(&file, &sec, "aws_access_key_id"),
                ini_value(&file, &sec, "aws_secret_access_key"),
            ) {
                b = b.with_access_key_id(id).with_secret_access_key(secret);
                if let Some(tok) = ini_value(&file, &sec, "aws_session_token") {
                    b = b.with_token(tok);
                }
                creds_from = format!("profile '{profile}' of {}", file.display());
            } else {
                creds_from = format!(
                    "instance or container metadata (no AWS_ACCESS_KEY_ID, no profile '{profile}' with keys in {})",
                    file.display()
                );
            }
        }
    }
    let region = env("AWS_REGION")
        .or_else(|| env("AWS_DEFAULT_REGION"))
        .or_else(|| {
            let file = env("AWS_CONFIG_FILE")
                .map(PathBuf::from)
                .or_else(|| home().map(|h| h.join(".aws/config")))?;
            ini_value(
                &file,
                &[format!("profile {profile}"), profile.clone()],
                "region",
            )
        })
        .unwrap_or_else(|| "us-east-1".to_string());
    b = b.with_region(region);
    (b, creds_from)
}

pub(crate) async fn open(bucket: &str, key: &str) -> Result<(u64, ByteStream), FetchErrorKind> {
    let bkt = bucket.to_string();
    let (mut b, creds_from) = tokio::task::spawn_blocking(move || configure(&bkt))
        .await
        .map_err(|e| FetchErrorKind::Internal(format!("S3 configuration: {e}")))?;
    let endpoint = env("AWS_ENDPOINT_URL").or_else(|| env("AWS_ENDPOINT"));
    let mut opts = ClientOptions::new()
        .with_timeout_disabled()
        .with_connect_timeout(Duration::from_secs(30));
    if let Some(ep) = &endpoint {
        b = b.with_config(AmazonS3ConfigKey::Endpoint, ep.clone());
        if ep.starts_with("http://") {
            opts = opts.with_allow_http(true);
        }
    }
    let retry = RetryConfig {
        max_retries: 2,
        retry_timeout: Duration::from_secs(30),
        ..RetryConfig::default()
    };
    let store = b
        .with_client_options(opts)
        .with_retry(retry)
        .build()
        .map_err(|e| FetchErrorKind::Remote(format!("S3 client for bucket {bucket}: {e}")))?;
    let path = object_store::path::Path::from_url_path(key)
        .map_err(|e| FetchErrorKind::InvalidUri(format!("S3 key {key:?}: {e}")))?;
    let got = store.get(&path).await.map_err(|e| match e {
        object_store::Error::NotFound { .. } => {
            FetchErrorKind::NotFound(format!("s3 object {bucket}/{key}"))
        }
        object_store::Error::PermissionDenied { source, .. }
        | object_store::Error::Unauthenticated { source, .. } => FetchErrorKind::PermissionDenied(
            format!("S3 GET {bucket}/{key} refused with credentials from {creds_from}: {source}"),
        ),
        other => FetchErrorKind::Remote(format!("S3 GET {bucket}/{key}: {other}")),
    })?;
    let size = got.meta.size;
    let stream = got
        .into_stream()
        .map(|r| r.map_err(|e| FetchErrorKind::Transfer(format!("S3 body: {e}"))))
        .boxed();
    Ok((size, stream))
}
