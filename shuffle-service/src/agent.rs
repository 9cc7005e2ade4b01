//! Asks the Mesos cluster, through the local agent, whether a framework has ended.
//!
//! A Mesos 1.11 agent lists a framework among its `completed_frameworks` as soon as the
//! framework is idle on that agent (`Slave::removeFramework` when its last executor there has
//! gone: `git show 1.11.0:src/slave/slave.cpp` in an apache/mesos clone), not when it has ended:
//! a Spark application whose executors all left this agent (dynamic allocation) is "completed"
//! here while it runs. Only the master knows that a framework was torn down. So the cleaner asks
//! the agent for its master (the operator API's `GET_FLAGS`, flag `master`), then that master
//! for `GET_FRAMEWORKS` (`POST /api/v1`, JSON): `frameworks` are registered (connected or
//! within their failover timeout), `completed_frameworks` were removed for good. An agent whose
//! `master` is a ZooKeeper URL cannot tell us which master leads: nothing is deleted then.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;

use crate::cleanup::Agent;

/// Largest agent answer read (a busy agent's history of completed frameworks fits well below).
const MAX_ANSWER: usize = 32 << 20;
const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("cannot reach the Mesos agent at {addr} (croupier.mesos.agent.address) or its master: {reason}")]
    Unreachable { addr: String, reason: String },
    #[error("the Mesos agent or master at {addr} answered with HTTP {status}: {body}")]
    Status {
        addr: String,
        status: u16,
        body: String,
    },
    #[error(
        "the Mesos agent or master at {addr} sent an answer that is not what Mesos sends: {reason}"
    )]
    BadAnswer { addr: String, reason: String },
    #[error(
        "cannot read the agent secret file {path} (croupier.mesos.agent.secret.file): {source}"
    )]
    SecretFile {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl AgentError {
    /// Every failure to ask is retried next round; only a bad secret file needs an operator.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, AgentError::SecretFile { .. })
    }
}

/// The frameworks an agent knows, by id.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Frameworks {
    pub active: HashSet<String>,
    pub completed: HashSet<String>,
}

impl Frameworks {
    /// What the agent says about `app_id` (Spark's appId on Mesos is the framework id). A
    /// framework that completed and then came back (listed in both) is active.
    pub fn about(&self, app_id: &str) -> Agent {
        if self.active.contains(app_id) {
            Agent::Active
        } else if self.completed.contains(app_id) {
            Agent::Completed
        } else {
            Agent::Unknown
        }
    }

    /// Reads the JSON answer of `GET_FRAMEWORKS`.
    pub fn parse(json: &[u8]) -> Result<Frameworks, String> {
        let v: serde_json::Value =
            serde_json::from_slice(json).map_err(|e| format!("not JSON: {e}"))?;
        let gf = v.get("get_frameworks").ok_or("no `get_frameworks` field")?;
        let ids = |field: &str| -> Result<HashSet<String>, String> {
            let mut out = HashSet::new();
            // A repeated field with no items is left out of the JSON.
            let Some(list) = gf.get(field) else {
                return Ok(out);
            };
            let list = list
                .as_array()
                .ok_or_else(|| format!("`{field}` is not an array"))?;
            for f in list {
                let id = f
                    .pointer("/framework_info/id/value")
                    .and_then(|x| x.as_str())
                    .ok_or_else(|| {
                        format!("an item of `{field}` has no framework_info.id.value")
                    })?;
                out.insert(id.to_owned());
            }
            Ok(out)
        };
        Ok(Frameworks {
            active: ids("frameworks")?,
            completed: ids("completed_frameworks")?,
        })
    }
}

/// A client for one agent.
#[derive(Clone)]
pub struct AgentClient {
    /// `host:port`.
    addr: String,
    /// `Basic …` for an agent with HTTP authentication; never logged.
    authorization: Option<String>,
}

impl std::fmt::Debug for AgentClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentClient")
            .field("addr", &self.addr)
            .field("authenticated", &self.authorization.is_some())
            .finish()
    }
}

impl AgentClient {
    /// `secret_file` holds the principal's secret (trailing newline ignored).
    pub fn new(
        addr: &str,
        principal: Option<&str>,
        secret_file: Option<&std::path::Path>,
    ) -> Result<AgentClient, AgentError> {
        let authorization = match (principal, secret_file) {
            (Some(p), Some(f)) => {
                let secret =
                    std::fs::read_to_string(f).map_err(|source| AgentError::SecretFile {
                        path: f.to_owned(),
                        source,
                    })?;
                let pair = format!("{p}:{}", secret.trim_end_matches(['\n', '\r']));
                Some(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(pair)
                ))
            }
            _ => None,
        };
        Ok(AgentClient {
            addr: addr.to_owned(),
            authorization,
        })
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Asks the agent for its master, then the master for its frameworks (each bounded in
    /// time and size).
    pub async fn frameworks(&self) -> Result<Frameworks, AgentError> {
        let master = match tokio::time::timeout(TIMEOUT, self.master()).await {
            Ok(r) => r?,
            Err(_) => return Err(self.unreachable(format!("no answer within {TIMEOUT:?}"))),
        };
        match tokio::time::timeout(TIMEOUT, self.ask(&master, br#"{"type":"GET_FRAMEWORKS"}"#))
            .await
        {
            Ok(r) => {
                let body = r?;
                Frameworks::parse(&body).map_err(|reason| AgentError::BadAnswer {
                    addr: master.clone(),
                    reason,
                })
            }
            Err(_) => Err(AgentError::Unreachable {
                addr: master,
                reason: format!("the Mesos master gave no answer within {TIMEOUT:?}"),
            }),
        }
    }

    /// The `host:port` of the agent's master (its `master` flag).
    async fn master(&self) -> Result<String, AgentError> {
        let body = self.ask(&self.addr, br#"{"type":"GET_FLAGS"}"#).await?;
        master_of_flags(&body).map_err(|reason| AgentError::BadAnswer {
            addr: self.addr.clone(),
            reason,
        })
    }

    fn unreachable(&self, reason: String) -> AgentError {
        AgentError::Unreachable {
            addr: self.addr.clone(),
            reason,
        }
    }

    /// One operator-API call to `addr` (the agent, or its master); the answer's body.
    async fn ask(&self, addr: &str, call: &'static [u8]) -> Result<Bytes, AgentError> {
        let unreachable = |reason: String| AgentError::Unreachable {
            addr: addr.to_owned(),
            reason,
        };
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let conn = tokio::spawn(conn);
        let mut req = hyper::Request::post("/api/v1")
            .header(hyper::header::HOST, addr)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(hyper::header::ACCEPT, "application/json");
        if let Some(a) = &self.authorization {
            req = req.header(hyper::header::AUTHORIZATION, a);
        }
        let req = req
            .body(Full::new(Bytes::from_static(call)))
            .map_err(|e| unreachable(e.to_string()))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let status = resp.status();
        let body = Limited::new(resp.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| unreachable(format!("reading the answer: {e}")))?
            .to_bytes();
        conn.abort();
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
            return Err(AgentError::Status {
                addr: addr.to_owned(),
                status: status.as_u16(),
                body: text,
            });
        }
        Ok(body)
    }
}

/// The `host:port` in the `master` flag of an agent's `GET_FLAGS` answer.
pub fn master_of_flags(json: &[u8]) -> Result<String, String> {
    let v: serde_json::Value =
        serde_json::from_slice(json).map_err(|e| format!("not JSON: {e}"))?;
    let flags = v
        .pointer("/get_flags/flags")
        .and_then(|f| f.as_array())
        .ok_or("no `get_flags.flags` list")?;
    let master = flags
        .iter()
        .find(|f| f.get("name").and_then(|n| n.as_str()) == Some("master"))
        .and_then(|f| f.get("value"))
        .and_then(|v| v.as_str())
        .ok_or("the agent has no `master` flag")?;
    let m = master.trim();
    let m = m.strip_prefix("http://").unwrap_or(m).trim_end_matches('/');
    let ok = m
        .rsplit_once(':')
        .is_some_and(|(h, p)| !h.is_empty() && !h.contains('/') && p.parse::<u16>().is_ok());
    if ok {
        Ok(m.to_owned())
    } else {
        Err(format!(
            "its master is {master:?}, not host:port (a ZooKeeper or file URL names no leading \
             master): cannot tell whether a framework ended, so nothing is deleted"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_come_from_the_secret_file_and_never_show() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("secret");
        std::fs::write(&f, "s3cr3t\n").unwrap();
        let c = AgentClient::new("127.0.0.1:5051", Some("croupier"), Some(&f)).unwrap();
        let want = base64::engine::general_purpose::STANDARD.encode("croupier:s3cr3t");
        assert_eq!(
            c.authorization.as_deref(),
            Some(format!("Basic {want}").as_str())
        );
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("s3cr3t") && !shown.contains(&want),
            "{shown}"
        );
        let missing = d.path().join("nope");
        let e = AgentClient::new("127.0.0.1:5051", Some("croupier"), Some(&missing)).unwrap_err();
        assert!(
            e.to_string().contains("croupier.mesos.agent.secret.file"),
            "{e}"
        );
        assert!(
            e.to_string().contains(&missing.display().to_string()),
            "{e}"
        );
        assert!(!e.is_retryable());
        let anon = AgentClient::new("127.0.0.1:5051", None, None).unwrap();
        assert!(anon.authorization.is_none());
    }

    #[test]
    fn the_master_comes_from_the_agents_flags() {
        let flags = |m: &str| {
            format!(
                r#"{{"type":"GET_FLAGS","get_flags":{{"flags":[{{"name":"port","value":"5051"}},{{"name":"master","value":"{m}"}}]}}}}"#
            )
        };
        assert_eq!(
            master_of_flags(flags("127.0.0.1:5050").as_bytes()).unwrap(),
            "127.0.0.1:5050"
        );
        assert_eq!(
            master_of_flags(flags("http://m1:5050/").as_bytes()).unwrap(),
            "m1:5050"
        );
        let zk = master_of_flags(flags("zk://z1:2181,z2:2181/mesos").as_bytes()).unwrap_err();
        assert!(zk.contains("nothing is deleted"), "{zk}");
        assert!(master_of_flags(br#"{"type":"GET_FLAGS","get_flags":{"flags":[]}}"#).is_err());
    }

    #[test]
    fn parses_an_agent_answer() {
        // The shape of a Mesos 1.11 agent's answer (ids shortened).
        let json = br#"{"type":"GET_FRAMEWORKS","get_frameworks":{
            "frameworks":[{"framework_info":{"user":"u","name":"a","id":{"value":"F-0001"}}}],
            "completed_frameworks":[{"framework_info":{"user":"u","name":"b","id":{"value":"F-0002"}}},
                                    {"framework_info":{"user":"u","name":"a","id":{"value":"F-0001"}}}]}}"#;
        let f = Frameworks::parse(json).unwrap();
        assert_eq!(f.about("F-0001"), Agent::Active);
        assert_eq!(f.about("F-0002"), Agent::Completed);
        assert_eq!(f.about("F-0003"), Agent::Unknown);
        let empty = Frameworks::parse(br#"{"type":"GET_FRAMEWORKS","get_frameworks":{}}"#).unwrap();
        assert_eq!(empty.about("F-0001"), Agent::Unknown);
        assert!(Frameworks::parse(br#"{"type":"GET_STATE"}"#).is_err());
        assert!(Frameworks::parse(b"<html>").is_err());
    }
}
