//! Our auth engine against Spark 3.5.7's own classes: `AuthEngine` (client and server roles),
//! `AuthMessage` and `CtrTransportCipher` from pyspark's `spark-network-common` jar, driven by
//! `tests/auth_java/AuthEngineCrossCheck.java` (compiled here with `javac`).
//!
//! For each engine version (1, 2) and each pairing (Spark server ↔ our client, our server ↔
//! Spark client) the handshake runs across the two implementations, then one AES-CTR stream is
//! exchanged each way through Spark's real Netty cipher handlers: Spark decrypts what we
//! encrypted (fed as several TCP reads) and we decrypt what Spark encrypted (several messages).
//! A wrong secret fails on both sides. Spark's `CtrTransportCipher`, keyed directly with IVs
//! next to the 64-bit carry and to the 2^128 wrap, agrees with our keystream both ways. The secret is non-ASCII and longer than one Base64 line
//! so the UTF-8 handling of the pre-shared key is exercised.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::OnceLock;
use std::time::Duration;

use croupier_shuffle_service::auth::ctr::{CtrChannel, Decryptor, Encryptor};
use croupier_shuffle_service::auth::engine::{
    self, AuthMessage, ClientAuth, EngineError, EngineVersion,
};
use croupier_testkit::env;
use rand::rngs::OsRng;

const SECRET: &str = "shuffle-sécret-Ω-0123456789abcdef0123456789abcdef0123456789abcdef0123456789";
const APP_ID: &str = "9a2b4c6d-0000-4e1f-8a3b-5c6d7e8f9a0b-0042";
/// Generous: a JVM start on a loaded 2-core machine, well below anything a hang would reach.
const LINE_TIMEOUT: Duration = Duration::from_secs(180);

/// `classes` dir with the compiled checker, and the jars directory.
fn compiled() -> &'static (PathBuf, PathBuf) {
    static CLASSES: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    CLASSES.get_or_init(|| {
        let jars = env::spark_home().join("jars");
        assert!(
            jars.join("spark-network-common_2.12-3.5.7.jar").is_file(),
            "no spark-network-common_2.12-3.5.7.jar in {}: run scripts/setup-venv.sh",
            jars.display()
        );
        let classes = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("auth_engine_java");
        let src =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/auth_java/AuthEngineCrossCheck.java");
        let out = Command::new("javac")
            .arg("-cp")
            .arg(format!("{}/*", jars.display()))
            .arg("-d")
            .arg(&classes)
            .arg(&src)
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run javac ({e}): a JDK 17 is required; run scripts/test.sh")
            });
        assert!(
            out.status.success(),
            "javac {} failed:\n{}",
            src.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        (classes, jars)
    })
}

/// One run of the Java checker; killed (by its own pid) when dropped.
struct Spark {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
}

impl Spark {
    fn start(args: &[&str]) -> Spark {
        let (classes, jars) = compiled();
        let mut child = Command::new("java")
            .arg("-cp")
            .arg(format!("{}:{}/*", classes.display(), jars.display()))
            .arg("org.apache.spark.network.crypto.AuthEngineCrossCheck")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run java ({e}): a JDK 17 is required"));
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                match line {
                    Ok(l) => {
                        if tx.send(l).is_err() {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
        });
        Spark {
            child,
            stdin,
            lines,
        }
    }

    fn send(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").expect("write to the Java checker");
        self.stdin.flush().expect("flush to the Java checker");
    }

    /// The next line, which must start with `word `; returns the rest.
    fn expect(&mut self, word: &str) -> String {
        let line = self.lines.recv_timeout(LINE_TIMEOUT).unwrap_or_else(|e| {
            panic!("no '{word}' line from the Java checker within {LINE_TIMEOUT:?}: {e}")
        });
        match line.strip_prefix(word).and_then(|r| r.strip_prefix(' ')) {
            Some(rest) => rest.to_owned(),
            None if line == word => String::new(),
            None => panic!("expected '{word} …' from the Java checker, got {line:?}"),
        }
    }

    fn quit(mut self) {
        self.send("quit");
        let status = self.child.wait().expect("wait for the Java checker");
        assert!(status.success(), "Java checker exited with {status}");
    }
}

impl Drop for Spark {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn secret_hex() -> String {
    hex::encode(SECRET.as_bytes())
}

fn version_arg(v: EngineVersion) -> &'static str {
    match v {
        EngineVersion::V1 => "1",
        EngineVersion::V2 => "2",
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[0] ^ seed)
        .collect()
}

/// One CTR stream each way through Spark's cipher handlers.
fn exchange(spark: &mut Spark, mut enc: Encryptor, mut dec: Decryptor) {
    // Ours → Spark: three messages, handed to Spark as four TCP reads cut elsewhere.
    let messages = [pattern(50_000, 1), pattern(7, 2), pattern(70_001, 3)];
    let plain: Vec<u8> = messages.concat();
    let mut wire = Vec::new();
    for m in &messages {
        let mut m = m.clone();
        enc.encrypt(&mut m);
        wire.extend_from_slice(&m);
    }
    assert_ne!(wire, plain);
    let reads = [
        &wire[..1],
        &wire[1..33_000],
        &wire[33_000..50_003],
        &wire[50_003..],
    ];
    let reads: Vec<String> = reads.iter().map(hex::encode).collect();
    spark.send(&format!("decrypt {}", reads.join(",")));
    let got = hex::decode(spark.expect("plain")).expect("hex from Java");
    assert!(got == plain, "Spark decrypted something else than we sent");

    // Spark → ours: Spark encrypts four messages; we decrypt the stream in odd batches.
    let messages = [
        pattern(16, 4),
        pattern(65_536, 5),
        pattern(3, 6),
        pattern(40_000, 7),
    ];
    let args: Vec<String> = messages.iter().map(hex::encode).collect();
    spark.send(&format!("encrypt {}", args.join(",")));
    let mut wire = hex::decode(spark.expect("wire")).expect("hex from Java");
    let plain = messages.concat();
    assert_eq!(
        wire.len(),
        plain.len(),
        "CTR adds no framing: same byte count"
    );
    assert_ne!(wire, plain);
    for chunk in wire.chunks_mut(12_345) {
        dec.decrypt(chunk);
    }
    assert!(wire == plain, "we decrypted something else than Spark sent");
}

fn spark_server_our_client(version: EngineVersion) {
    let mut spark = Spark::start(&["server", version_arg(version), &secret_hex()]);
    let (client, challenge) = ClientAuth::start(SECRET.as_bytes(), APP_ID, version, &mut OsRng);
    spark.send(&hex::encode(challenge.encode()));
    let response = hex::decode(spark.expect("response")).expect("hex from Java");
    let response = AuthMessage::decode(&response).expect("Spark's response decodes");
    assert_eq!(response.app_id, APP_ID);
    let keys = client
        .finish(&response)
        .expect("Spark's response authenticates");
    assert_eq!(
        keys.key.len(),
        if version == EngineVersion::V1 { 32 } else { 16 }
    );
    let (enc, dec) = keys.channel().expect("session cipher").split();
    exchange(&mut spark, enc, dec);
    spark.quit();
}

fn our_server_spark_client(version: EngineVersion) {
    let mut spark = Spark::start(&["client", version_arg(version), &secret_hex(), APP_ID]);
    let challenge = hex::decode(spark.expect("challenge")).expect("hex from Java");
    let challenge = AuthMessage::decode(&challenge).expect("Spark's challenge decodes");
    assert_eq!(challenge.app_id, APP_ID);
    let (response, keys) = engine::server_response(SECRET.as_bytes(), &challenge, version)
        .expect("Spark's challenge authenticates");
    spark.send(&hex::encode(response.encode()));
    spark.expect("ready");
    let (enc, dec) = keys.channel().expect("session cipher").split();
    exchange(&mut spark, enc, dec);
    spark.quit();
}

#[test]
fn spark_server_and_our_client_v1() {
    spark_server_our_client(EngineVersion::V1);
}

#[test]
fn spark_server_and_our_client_v2() {
    spark_server_our_client(EngineVersion::V2);
}

#[test]
fn our_server_and_spark_client_v1() {
    our_server_spark_client(EngineVersion::V1);
}

#[test]
fn our_server_and_spark_client_v2() {
    our_server_spark_client(EngineVersion::V2);
}

/// Both directions in one JVM pair each: Spark's server refuses our challenge made with
/// another secret, and our server refuses Spark's.
#[test]
fn wrong_secret_fails_on_both_sides() {
    let mut spark = Spark::start(&["server", "1", &secret_hex()]);
    let (_, challenge) =
        ClientAuth::start(b"not the secret", APP_ID, EngineVersion::V1, &mut OsRng);
    spark.send(&hex::encode(challenge.encode()));
    let failed = spark.expect("failed");
    assert!(
        failed.contains("GeneralSecurityException") || failed.contains("AEADBadTag"),
        "Spark's server failed with {failed}"
    );
    drop(spark);

    let mut spark = Spark::start(&["client", "1", &secret_hex(), APP_ID]);
    let challenge = hex::decode(spark.expect("challenge")).expect("hex from Java");
    let challenge = AuthMessage::decode(&challenge).expect("Spark's challenge decodes");
    let err = engine::server_response(b"not the secret", &challenge, EngineVersion::V1)
        .expect_err("a challenge sealed with another secret must fail");
    assert_eq!(
        err,
        EngineError::Rejected {
            app_id: APP_ID.into()
        }
    );
}

/// Spark's cipher keyed directly: our → Spark starts at `00000000000000fffffffffffffffffe`
/// (the counter carries out of the low 64 bits after two blocks, the IV of the spec's check),
/// Spark → ours at `ff…fe` (the counter wraps at 2^128). AES-128 (v2) and AES-256 (v1) keys.
#[test]
fn ctr_stream_across_the_counter_carry() {
    let to_spark: [u8; 16] = hex::decode("00000000000000fffffffffffffffffe")
        .unwrap()
        .try_into()
        .unwrap();
    let from_spark: [u8; 16] = hex::decode("fffffffffffffffffffffffffffffffe")
        .unwrap()
        .try_into()
        .unwrap();
    for key in [pattern(16, 8), pattern(32, 9)] {
        // Spark's inIv is what we send with, its outIv what we receive with.
        let mut spark = Spark::start(&[
            "ctr",
            &hex::encode(&key),
            &hex::encode(to_spark),
            &hex::encode(from_spark),
        ]);
        let (enc, dec) = CtrChannel::new(&key, &from_spark, &to_spark)
            .expect("16- or 32-byte key")
            .split();
        exchange(&mut spark, enc, dec);
        spark.quit();
    }
}
