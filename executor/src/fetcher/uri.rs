//! Turning one `CommandInfo.URI` into a plan: where the bytes come from, where they land, and
//! what happens to them afterwards (`src/launcher/fetcher.cpp` semantics, spec §6.2).

use std::path::{Component, Path, PathBuf};

use super::config::FetchConfig;
use super::error::{FetchError, FetchErrorKind};

/// Where a URI's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `file://` or a path; always absolute here.
    Local(PathBuf),
    /// `http://` or `https://`; the URI as given.
    Http(String),
    /// `s3://`, `s3a://`, `s3n://`: bucket and (percent-decoded) key.
    S3 { bucket: String, key: String },
    /// `hdfs://authority/path`: the NameNode URL and the file path.
    Hdfs { namenode: String, path: String },
}

/// Archive formats recognised by suffix of the destination name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveKind {
    Tar,
    TarGz,
    TarBz2,
    TarXz,
    Zip,
    /// A bare `.gz` (not `.tar.gz`): gunzipped next to the sandbox root.
    Gz,
}

impl ArchiveKind {
    pub fn of(name: &str) -> Option<ArchiveKind> {
        let table: [(&str, ArchiveKind); 9] = [
            (".tar.gz", ArchiveKind::TarGz),
            (".tgz", ArchiveKind::TarGz),
            (".tar.bz2", ArchiveKind::TarBz2),
            (".tbz2", ArchiveKind::TarBz2),
            (".tar.xz", ArchiveKind::TarXz),
            (".txz", ArchiveKind::TarXz),
            (".tar", ArchiveKind::Tar),
            (".zip", ArchiveKind::Zip),
            (".gz", ArchiveKind::Gz),
        ];
        table
            .iter()
            .find(|(suffix, _)| name.ends_with(suffix) && name.len() > suffix.len())
            .map(|(_, k)| *k)
    }
}

/// One URI, validated and resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The URI with leading whitespace trimmed (used in messages and as the cache key).
    pub uri: String,
    pub source: Source,
    /// Destination relative to the sandbox: `output_file` or the URI's basename.
    pub dest_rel: PathBuf,
    pub executable: bool,
    /// Set when `extract` is on, `executable` is off and the destination name is an archive.
    pub archive: Option<ArchiveKind>,
    pub cache: bool,
}

fn invalid(uri: &str, why: impl Into<String>) -> FetchError {
    FetchError::new(uri, FetchErrorKind::InvalidUri(why.into()))
}

/// The basename as Mesos computes it: everything after the last `/` of the part after `://`
/// (query strings and fragments kept), or the last component of a plain path.
pub fn basename(uri: &str) -> Result<String, String> {
    if uri.contains(['\\', '\'', '\0']) {
        return Err("illegal characters in URI (backslash, quote or NUL)".into());
    }
    let name = match uri.find("://") {
        Some(i) => {
            let rest = &uri[i + 3..];
            match rest.rfind('/') {
                Some(j) => rest[j + 1..].to_string(),
                None => return Err(format!("malformed URI (missing path): {uri}")),
            }
        }
        None => uri.rsplit('/').next().unwrap_or("").to_string(),
    };
    match name.as_str() {
        "" => Err(format!("malformed URI (missing path): {uri}")),
        "." | ".." => Err(format!("URI basename {name:?} is not a file name")),
        _ => Ok(name),
    }
}

/// Validates `output_file`: relative, no `..`, not empty.
fn output_path(uri: &str, out: &str) -> Result<PathBuf, FetchError> {
    let p = Path::new(out);
    if p.is_absolute() {
        return Err(invalid(
            uri,
            format!("output_file {out:?} must be within the sandbox directory"),
        ));
    }
    let mut clean = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => clean.push(n),
            Component::CurDir => {}
            _ => {
                return Err(invalid(
                    uri,
                    format!("output_file {out:?} must stay within the sandbox directory"),
                ))
            }
        }
    }
    if clean.as_os_str().is_empty() {
        return Err(invalid(uri, format!("output_file {out:?} names no file")));
    }
    Ok(clean)
}

/// Builds the plan for one URI.
pub fn plan(
    value: &str,
    executable: bool,
    extract: bool,
    cache: bool,
    output_file: Option<&str>,
    cfg: &FetchConfig,
) -> Result<Plan, FetchError> {
    let uri = value.trim_start().to_string();
    let u = uri.as_str();
    if u.is_empty() {
        return Err(invalid(u, "empty URI"));
    }
    let base = basename(u).map_err(|e| invalid(u, e))?;
    let dest_rel = match output_file {
        Some(out) => output_path(u, out)?,
        None => PathBuf::from(&base),
    };
    let source = match u.find("://") {
        Some(i) => {
            let scheme = u[..i].to_ascii_lowercase();
            let rest = &u[i + 3..];
            match scheme.as_str() {
                "http" | "https" => Source::Http(u.to_string()),
                "file" => {
                    let path = rest.strip_prefix("localhost").unwrap_or(rest);
                    if !path.starts_with('/') {
                        return Err(invalid(u, "file:// URI must hold an absolute path"));
                    }
                    Source::Local(PathBuf::from(path))
                }
                "hdfs" => {
                    let slash = rest.find('/').unwrap_or(rest.len());
                    let (authority, path) = rest.split_at(slash);
                    if path.is_empty() {
                        return Err(invalid(u, "hdfs URI has no path"));
                    }
                    let namenode = if authority.is_empty() {
                        // hdfs:///path: the default file system from the Hadoop configuration.
                        String::new()
                    } else {
                        format!("hdfs://{authority}")
                    };
                    Source::Hdfs {
                        namenode,
                        path: path.to_string(),
                    }
                }
                "s3" | "s3a" | "s3n" => {
                    let (bucket, key) = rest
                        .split_once('/')
                        .ok_or_else(|| invalid(u, "S3 URI has no key"))?;
                    if bucket.is_empty() || key.is_empty() {
                        return Err(invalid(u, "S3 URI needs s3://bucket/key"));
                    }
                    Source::S3 {
                        bucket: bucket.to_string(),
                        key: key.to_string(),
                    }
                }
                other => {
                    return Err(FetchError::new(
                        u,
                        FetchErrorKind::UnsupportedScheme(other.to_string()),
                    ))
                }
            }
        }
        None => {
            let p = Path::new(u);
            if p.is_absolute() {
                Source::Local(p.to_path_buf())
            } else {
                match &cfg.frameworks_home {
                    Some(home) => Source::Local(home.join(p)),
                    None => {
                        return Err(invalid(
                            u,
                            "a relative path was given but no frameworks home is set (--frameworks_home)",
                        ))
                    }
                }
            }
        }
    };
    let archive = if extract && !executable {
        dest_rel.to_str().and_then(ArchiveKind::of)
    } else {
        None
    };
    Ok(Plan {
        uri,
        source,
        dest_rel,
        executable,
        archive,
        cache,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basenames_follow_mesos() {
        assert_eq!(basename("http://h/x/app.tgz?v=1").unwrap(), "app.tgz?v=1");
        assert_eq!(basename("/a/b/c.jar").unwrap(), "c.jar");
        assert!(basename("http://host").is_err());
        assert!(basename("http://host/").is_err());
        assert!(basename("http://host/a/.").is_err());
        assert!(basename("http://host/a/..").is_err());
        assert!(basename("/a/b'c").is_err());
    }

    #[test]
    fn archive_suffixes() {
        assert_eq!(ArchiveKind::of("a.tar.gz"), Some(ArchiveKind::TarGz));
        assert_eq!(ArchiveKind::of("a.gz"), Some(ArchiveKind::Gz));
        assert_eq!(ArchiveKind::of("a.tgz?v=1"), None);
        assert_eq!(ArchiveKind::of("a.jar"), None);
    }

    #[test]
    fn schemes() {
        let cfg = FetchConfig::default();
        let p = plan("  s3a://b/k/x.jar", false, true, false, None, &cfg).unwrap();
        assert_eq!(
            p.source,
            Source::S3 {
                bucket: "b".into(),
                key: "k/x.jar".into()
            }
        );
        let p = plan("hdfs://nn:8020/d/x.tgz", false, true, false, None, &cfg).unwrap();
        assert_eq!(p.archive, Some(ArchiveKind::TarGz));
        assert!(plan("ftp://h/x", false, true, false, None, &cfg).is_err());
        assert!(plan("http://h/x", false, true, false, Some("../x"), &cfg).is_err());
        assert!(plan("http://h/x", false, true, false, Some("/x"), &cfg).is_err());
    }
}
