//! How the executor reaches the agent: over the unix socket of `MESOS_DOMAIN_SOCKET` when the
//! agent gives one (its `--http_executor_domain_sockets`), and over TLS when
//! `LIBPROCESS_SSL_ENABLED` is set (the stand-in serving https with a CA made here).

mod common;

use std::sync::Arc;

use common::*;
use croupier_proto::v1::TaskState;
use croupier_testkit::agent::{Agent, TlsHandshake};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};

#[tokio::test]
async fn the_domain_socket_is_used_when_the_agent_gives_one() {
    let mut c = cfg();
    // The stand-in serves only the socket: MESOS_AGENT_ENDPOINT's TCP port is closed.
    c.domain_socket = true;
    let mut agent = start(c).await;
    agent
        .launch(agent.command_task("over-unix", "echo via-socket"))
        .expect("launch sent");
    let done = agent.wait_terminal("over-unix", T).await.expect("terminal");
    assert_eq!(
        done.state,
        TaskState::TaskFinished as i32,
        "{done:?}\nexecutor log:\n{}",
        agent.executor_stderr()
    );
    let log = agent.executor_stderr();
    assert!(log.contains("agent.sock"), "{log}");
    shutdown_ok(&mut agent).await;
}

/// A test PKI made here: a CA, the agent's certificate (127.0.0.1 and localhost), the
/// executor's client certificate, and a second CA that signed nothing of the agent's.
struct Pki {
    dir: tempfile::TempDir,
    agent_chain: Vec<CertificateDer<'static>>,
    agent_key: PrivateKeyDer<'static>,
    /// The agent's certificate (same names) signed by the other CA.
    rogue_chain: Vec<CertificateDer<'static>>,
    rogue_key: PrivateKeyDer<'static>,
    ca_der: CertificateDer<'static>,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca_key = rcgen::KeyPair::generate().expect("CA key");
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Croupier test CA");
        let ca = ca_params.self_signed(&ca_key).expect("CA cert");
        let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
        let leaf = |names: Vec<String>| {
            let key = rcgen::KeyPair::generate().expect("key");
            let cert = rcgen::CertificateParams::new(names)
                .expect("params")
                .signed_by(&key, &issuer)
                .expect("sign");
            (cert, key)
        };
        let (agent_cert, agent_key) = leaf(vec!["127.0.0.1".into(), "localhost".into()]);
        let (client_cert, client_key) = leaf(vec!["croupier-executor".into()]);
        let other_key = rcgen::KeyPair::generate().expect("key");
        let mut other = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA");
        other.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        other
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Some other CA");
        let other_ca = other.self_signed(&other_key).expect("other CA");
        let rogue_key = rcgen::KeyPair::generate().expect("key");
        let rogue_cert =
            rcgen::CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])
                .expect("params")
                .signed_by(&rogue_key, &rcgen::Issuer::from_params(&other, &other_key))
                .expect("sign");
        let w =
            |name: &str, pem: String| std::fs::write(dir.path().join(name), pem).expect("write");
        w("ca.pem", ca.pem());
        w("other-ca.pem", other_ca.pem());
        w("client.pem", client_cert.pem());
        w("client.key", client_key.serialize_pem());
        Pki {
            agent_chain: vec![agent_cert.der().clone()],
            agent_key: PrivateKeyDer::Pkcs8(agent_key.serialize_der().into()),
            rogue_chain: vec![rogue_cert.der().clone()],
            rogue_key: PrivateKeyDer::Pkcs8(rogue_key.serialize_der().into()),
            ca_der: ca.der().clone(),
            dir,
        }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// The stand-in's TLS: its certificate, and (if `require_client_cert`) a client
    /// certificate signed by the CA demanded.
    fn server(&self, require_client_cert: bool) -> Arc<ServerConfig> {
        self.server_with(
            require_client_cert,
            self.agent_chain.clone(),
            self.agent_key.clone_key(),
        )
    }

    /// The stand-in presenting the certificate signed by the other CA.
    fn rogue_server(&self) -> Arc<ServerConfig> {
        self.server_with(false, self.rogue_chain.clone(), self.rogue_key.clone_key())
    }

    fn server_with(
        &self,
        require_client_cert: bool,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Arc<ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("versions");
        let builder = if require_client_cert {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(self.ca_der.clone()).expect("CA root");
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .expect("client verifier");
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        Arc::new(builder.with_single_cert(chain, key).expect("server cert"))
    }

    /// The executor's `LIBPROCESS_SSL_*`, verifying the agent against `ca`.
    fn env(&self, ca: &str) -> Vec<(String, String)> {
        [
            ("LIBPROCESS_SSL_ENABLED", "true".to_string()),
            ("LIBPROCESS_SSL_CERT_FILE", self.path("client.pem")),
            ("LIBPROCESS_SSL_KEY_FILE", self.path("client.key")),
            ("LIBPROCESS_SSL_CA_FILE", self.path(ca)),
            ("LIBPROCESS_SSL_VERIFY_SERVER_CERT", "true".to_string()),
            ("LIBPROCESS_SSL_VERIFY_IPADD", "true".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

#[tokio::test]
async fn a_task_runs_over_tls_presenting_the_client_certificate_the_agent_requires() {
    let pki = Pki::new();
    let mut c = cfg();
    c.tls = Some(pki.server(true));
    c.extra_env.extend(pki.env("ca.pem"));
    let mut agent = start(c).await;
    agent
        .launch(agent.command_task("over-tls", "echo via-tls"))
        .expect("launch sent");
    let done = agent.wait_terminal("over-tls", T).await.expect("terminal");
    assert_eq!(
        done.state,
        TaskState::TaskFinished as i32,
        "{done:?}\nexecutor log:\n{}",
        agent.executor_stderr()
    );
    let shakes = agent.recorded().tls_handshakes;
    // The SUBSCRIBE connection and the call connection, each with the client's certificate.
    assert!(shakes.len() >= 2, "{shakes:?}");
    assert!(
        shakes
            .iter()
            .all(|h| *h == TlsHandshake::Done { client_certs: 1 }),
        "{shakes:?}"
    );
    let log = agent.executor_stderr();
    assert!(log.contains("TLS to the agent: cert="), "{log}");
    // libprocess's default cipher list names nothing rustls implements: said once at start-up.
    assert!(log.contains("LIBPROCESS_SSL_CIPHERS"), "{log}");
    shutdown_ok(&mut agent).await;
}

#[tokio::test]
async fn an_agent_certificate_from_another_ca_is_refused_naming_the_agent_and_the_ca_file() {
    let pki = Pki::new();
    let mut c = cfg();
    c.tls = Some(pki.server(false));
    c.extra_env.extend(pki.env("other-ca.pem"));
    let mut agent = Agent::start_with_executor(c).await.expect("start");
    let status = agent
        .wait_executor_exit(T)
        .await
        .expect("executor gives up");
    let log = agent.executor_stderr();
    assert_eq!(status.code(), Some(1), "{log}");
    let ca = pki.path("other-ca.pem");
    let line = log
        .lines()
        .find(|l| l.contains("TLS handshake with the agent at"))
        .unwrap_or_else(|| panic!("no handshake error in the log:\n{log}"));
    assert!(line.contains(&agent.addr().to_string()), "{line}");
    assert!(
        line.contains(&format!("LIBPROCESS_SSL_CA_FILE={ca}")),
        "{line}"
    );
    assert!(line.contains("UnknownIssuer"), "{line}");
    assert!(!agent.recorded().subscribed);
}

#[tokio::test]
async fn an_unreadable_key_file_stops_the_executor_naming_the_file() {
    let pki = Pki::new();
    let mut c = cfg();
    c.tls = Some(pki.server(false));
    let missing = pki.path("no-such.key");
    c.extra_env.extend(pki.env("ca.pem"));
    c.extra_env
        .push(("LIBPROCESS_SSL_KEY_FILE".into(), missing.clone()));
    let mut agent = Agent::start_with_executor(c).await.expect("start");
    let status = agent.wait_executor_exit(T).await.expect("executor exits");
    let log = agent.executor_stderr();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains(&format!("LIBPROCESS_SSL_KEY_FILE={missing}")),
        "{log}"
    );
    assert!(agent.recorded().tls_handshakes.is_empty());
}

/// Failed handshakes the stand-in has seen so far.
fn failed_handshakes(rec: &croupier_testkit::agent::Recorded) -> usize {
    rec.tls_handshakes
        .iter()
        .filter(|h| matches!(h, TlsHandshake::Failed(_)))
        .count()
}

#[tokio::test]
async fn an_agent_restarted_with_a_certificate_from_another_ca_is_retried_and_tasks_survive() {
    let pki = Pki::new();
    let mut c = cfg();
    c.tls = Some(pki.server(false));
    c.extra_env.extend(pki.env("ca.pem"));
    let mut agent = start(c).await;
    agent
        .launch(agent.command_task("keeps", "echo $$ > pid; exec sleep 1000"))
        .expect("launch sent");
    agent
        .wait_update("keeps", TaskState::TaskRunning, T)
        .await
        .expect("running");
    let pid = read_pid(&task_dir(&agent, "keeps").join("pid"), T).await;
    // The agent comes back presenting a certificate our CA file did not sign...
    agent.set_tls(pki.rogue_server());
    agent.restart(std::time::Duration::from_millis(200));
    agent
        .wait_until("two refused handshakes", T, |r| {
            (failed_handshakes(r) >= 2).then_some(())
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", agent.executor_stderr()));
    assert!(agent.executor_running(), "{}", agent.executor_stderr());
    assert!(
        alive(pid),
        "the task keeps running while the agent is unverifiable"
    );
    // ...then with the right one: the executor re-subscribes, the task never noticed.
    agent.set_tls(pki.server(false));
    agent
        .wait_subscriptions(2, T)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", agent.executor_stderr()));
    assert!(alive(pid));
    let log = agent.executor_stderr();
    assert!(log.contains("UnknownIssuer"), "{log}");
    agent.kill("keeps", None).expect("kill sent");
    let done = agent.wait_terminal("keeps", T).await.expect("terminal");
    assert_eq!(done.state, TaskState::TaskKilled as i32, "{done:?}");
    shutdown_ok(&mut agent).await;
}

#[tokio::test]
async fn an_agent_that_stays_on_a_foreign_certificate_ends_the_executor_after_the_recovery_timeout()
{
    let pki = Pki::new();
    let mut c = cfg();
    c.tls = Some(pki.server(false));
    c.recovery_timeout = std::time::Duration::from_secs(3);
    c.extra_env.extend(pki.env("ca.pem"));
    let mut agent = start(c).await;
    agent
        .launch(agent.command_task("doomed", "echo $$ > pid; exec sleep 1000"))
        .expect("launch sent");
    agent
        .wait_update("doomed", TaskState::TaskRunning, T)
        .await
        .expect("running");
    let pid = read_pid(&task_dir(&agent, "doomed").join("pid"), T).await;
    agent.set_tls(pki.rogue_server());
    agent.restart(std::time::Duration::from_millis(200));
    let status = agent
        .wait_executor_exit(T)
        .await
        .expect("executor gives up after the recovery timeout");
    let log = agent.executor_stderr();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(failed_handshakes(&agent.recorded()) >= 1, "{log}");
    let line = log
        .lines()
        .find(|l| l.contains("did not come back within"))
        .unwrap_or_else(|| panic!("no recovery timeout in the log:\n{log}"));
    assert!(line.contains(&agent.addr().to_string()), "{line}");
    let ca = pki.path("ca.pem");
    assert!(
        line.contains(&format!("LIBPROCESS_SSL_CA_FILE={ca}")),
        "{line}"
    );
    assert!(line.contains("UnknownIssuer"), "{line}");
    wait_gone(&[pid], T)
        .await
        .unwrap_or_else(|left| panic!("task left running: {left:?}\n{log}"));
}

#[tokio::test]
async fn a_token_sent_to_an_unverified_agent_is_warned_about_without_showing_it() {
    let pki = Pki::new();
    let mut c = cfg();
    c.tls = Some(pki.server(false));
    c.auth_token = Some("s3cret-token-value".into());
    c.extra_env.extend(pki.env("ca.pem"));
    c.extra_env
        .push(("LIBPROCESS_SSL_VERIFY_SERVER_CERT".into(), "false".into()));
    let mut agent = start(c).await;
    let log = agent.executor_stderr();
    let line = log
        .lines()
        .find(|l| l.contains("MESOS_EXECUTOR_AUTHENTICATION_TOKEN is set but"))
        .unwrap_or_else(|| panic!("no warning about the token:\n{log}"));
    assert!(line.contains(&agent.addr().to_string()), "{line}");
    assert!(!log.contains("s3cret-token-value"), "{log}");
    shutdown_ok(&mut agent).await;
}
