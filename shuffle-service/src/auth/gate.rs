//! One connection before authentication: every RpcRequest is an authentication message,
//! dispatched the way Spark's `AuthServerBootstrap` / `AuthRpcHandler` / `SaslRpcHandler` do
//! (spec `spark-auth.md` §1.4, §4.1):
//! - auth engine on (`spark.network.crypto.enabled`): a `0xFB` AuthMessage runs the X25519
//!   handshake; anything else goes to SASL when `spark.network.crypto.saslFallback` (and from
//!   then on every pre-auth RPC of the connection does), else "Unknown challenge message." and
//!   the connection is closed;
//! - auth engine off: SASL DIGEST-MD5 only.
//!
//! The answers carry Spark's exception texts, since clients surface them as they are.

use super::channel::{Inbound, Outbound};
use super::engine::{self, AuthMessage};
use super::sasl::{DigestServer, SaslError, SaslMessage, Step};
use super::settings::{AuthSettings, EngineVersion};

/// Spark's answer when the auth engine handshake fails (any cause, so nothing leaks).
pub const ENGINE_FAILED: &str = "java.lang.IllegalArgumentException: Authentication failed.";
/// Spark's answer to a non-AuthMessage when SASL fallback is off.
pub const UNKNOWN_CHALLENGE: &str =
    "java.lang.IllegalArgumentException: Unknown challenge message.";

/// Which protocol authenticated a connection (for logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Engine,
    Sasl,
    SaslConf,
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Protocol::Engine => "auth engine, AES-CTR",
            Protocol::Sasl => "SASL DIGEST-MD5, qop auth",
            Protocol::SaslConf => "SASL DIGEST-MD5, qop auth-conf",
        })
    }
}

/// The result of one pre-auth RpcRequest.
pub enum Verdict {
    /// Answer with this RpcResponse body; still unauthenticated.
    Continue(Vec<u8>),
    /// Answer with an RpcFailure carrying `error`; close the connection afterwards if `close`.
    /// `why` is the detail for our log (never sent, never containing key material).
    Refuse {
        error: String,
        close: bool,
        app_id: Option<String>,
        why: String,
    },
    /// Answer with this RpcResponse body in plaintext; every byte after it, both ways, goes
    /// through `cipher` (when set). The connection acts for `app_id` from now on.
    Authenticated {
        reply: Vec<u8>,
        app_id: String,
        protocol: Protocol,
        cipher: Option<Box<(Inbound, Outbound)>>,
    },
}

/// The pre-auth state of one connection.
#[derive(Default)]
pub struct Gate {
    /// Set once a SASL exchange started (first SaslMessage): its appId and server.
    sasl: Option<(String, DigestServer)>,
    /// The auth engine was skipped for SASL (fallback); later RPCs go to SASL directly.
    sasl_mode: bool,
}

impl Gate {
    pub fn new() -> Gate {
        Gate::default()
    }

    /// The appId a SASL exchange under way gave (for logs).
    pub fn app_id(&self) -> Option<&str> {
        self.sasl.as_ref().map(|(a, _)| a.as_str())
    }

    /// Handles one pre-auth RpcRequest body.
    pub fn on_rpc(&mut self, auth: &AuthSettings, body: &[u8]) -> Verdict {
        let Some((secret, _)) = &auth.secret else {
            // Settings refuse spark.authenticate=true without a secret; stay closed anyway.
            return Verdict::Refuse {
                error: ENGINE_FAILED.into(),
                close: true,
                app_id: None,
                why: "no secret configured".into(),
            };
        };
        if auth.crypto_enabled && !self.sasl_mode {
            match AuthMessage::decode(body) {
                Ok(challenge) => {
                    let version = match auth.engine_version {
                        EngineVersion::V1 => engine::EngineVersion::V1,
                        EngineVersion::V2 => engine::EngineVersion::V2,
                    };
                    let app_id = challenge.app_id.clone();
                    let done =
                        engine::server_response(secret.expose().as_bytes(), &challenge, version)
                            .and_then(|(response, keys)| Ok((response, keys.channel()?)));
                    return match done {
                        Ok((response, channel)) => {
                            let (enc, dec) = channel.split();
                            Verdict::Authenticated {
                                reply: response.encode(),
                                app_id,
                                protocol: Protocol::Engine,
                                cipher: Some(Box::new((
                                    Inbound::Ctr(Box::new(dec)),
                                    Outbound::Ctr(Box::new(enc)),
                                ))),
                            }
                        }
                        Err(e) => Verdict::Refuse {
                            error: ENGINE_FAILED.into(),
                            close: true,
                            app_id: Some(app_id),
                            why: e.to_string(),
                        },
                    };
                }
                Err(e) if !auth.sasl_fallback => {
                    return Verdict::Refuse {
                        error: UNKNOWN_CHALLENGE.into(),
                        close: true,
                        app_id: None,
                        why: format!("{e} (spark.network.crypto.saslFallback=false)"),
                    }
                }
                Err(_) => self.sasl_mode = true,
            }
        }
        self.sasl_rpc(auth, secret, body)
    }

    fn sasl_rpc(
        &mut self,
        auth: &AuthSettings,
        secret: &super::settings::Secret,
        body: &[u8],
    ) -> Verdict {
        let msg = match SaslMessage::decode(body) {
            Ok(m) => m,
            Err(e) => {
                let error = match &e {
                    SaslError::NotSasl => format!("java.lang.IllegalStateException: {e}"),
                    _ => format!("java.lang.IllegalArgumentException: {e}"),
                };
                return Verdict::Refuse {
                    error,
                    close: false,
                    app_id: self.sasl.as_ref().map(|(a, _)| a.clone()),
                    why: e.to_string(),
                };
            }
        };
        // Spark takes the connection's appId from the first SaslMessage.
        let (app_id, server) = self.sasl.get_or_insert_with(|| {
            (
                msg.app_id.clone(),
                DigestServer::new(secret, auth.sasl_always_encrypt),
            )
        });
        match server.step(&msg.payload) {
            Ok(Step::Challenge(token)) => Verdict::Continue(token),
            Ok(Step::Complete { token, privacy }) => {
                let app_id = app_id.clone();
                let (protocol, cipher) = match privacy {
                    None => (Protocol::Sasl, None),
                    Some(p) => {
                        let (wrap, unwrap) = p.split();
                        (
                            Protocol::SaslConf,
                            Some(Box::new((
                                Inbound::Sasl {
                                    unwrap: Box::new(unwrap),
                                    raw: Default::default(),
                                },
                                Outbound::Sasl {
                                    wrap: Box::new(wrap),
                                    max_block: auth.sasl_max_block,
                                },
                            ))),
                        )
                    }
                };
                Verdict::Authenticated {
                    reply: token,
                    app_id,
                    protocol,
                    cipher,
                }
            }
            Err(e) => Verdict::Refuse {
                error: format!("java.lang.RuntimeException: {e}"),
                close: false,
                app_id: Some(app_id.clone()),
                why: e.to_string(),
            },
        }
    }
}
