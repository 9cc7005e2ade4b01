//! SASL DIGEST-MD5 (RFC 2831) server side, as the JDK's `DigestMD5Server` behaves when Spark's
//! `SparkSaslServer` creates it (spec `spark-auth.md` §2): realm `default`, digest-uri
//! `null/default`, `algorithm=md5-sess`, qop `auth-conf,auth` (or `auth-conf` only with
//! `spark.network.sasl.serverAlwaysEncrypt`), the password being Netty's line-broken Base64 of
//! the shared secret. For `auth-conf` we offer the `rc4` cipher only: a Spark 3.5 (JDK) client
//! then picks it, and records need no block padding. Also: the `SaslMessage` codec and the
//! `auth-conf` record layer ([`SaslPrivacy`]).
//!
//! No maintained Rust crate serves DIGEST-MD5, so the exchange is ours; hashing, HMAC and RC4
//! come from RustCrypto crates, comparisons are constant-time.

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use md5::{Digest, Md5};
use rc4::{Rc4, StreamCipher};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// Longest appId accepted in a SaslMessage (the auth engine's own bound).
const MAX_APP_ID_LEN: usize = 1024;

use super::settings::Secret;

/// First byte of a `SaslMessage` RPC body.
pub const SASL_MESSAGE_TAG: u8 = 0xEA;
/// The realm and the digest-uri a Spark server accepts (a null protocol and the server name
/// `default`, concatenated the Java way).
pub const REALM: &str = "default";
pub const DIGEST_URI: &str = "null/default";
/// Longest digest-response accepted (RFC 2831 §2.1.2: at most 4096 bytes).
const MAX_RESPONSE: usize = 4096;
/// The auth-conf MAC marker appended to A2.
const A2_CONF: &str = ":00000000000000000000000000000000";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaslError {
    /// The RPC body is not a SaslMessage (Spark's text, so clients see what they would).
    #[error("Expected SaslMessage, received something else (maybe your client does not have SASL enabled?)")]
    NotSasl,
    #[error("malformed SaslMessage: {0}")]
    BadMessage(String),
    /// A digest-response rejected; the text follows the JDK's `SaslException` messages.
    #[error("javax.security.sasl.SaslException: DIGEST-MD5: {0}")]
    Digest(String),
    #[error("SASL exchange already complete")]
    Complete,
    #[error("SASL record: {0}")]
    Record(String),
}

impl SaslError {
    pub fn is_retryable(&self) -> bool {
        false
    }
}

/// A decoded `SaslMessage`: `0xEA | i32 len | appId | i32 len | payload`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaslMessage {
    pub app_id: String,
    pub payload: Vec<u8>,
}

fn read_i32_len(b: &[u8], at: usize, what: &str) -> Result<usize, SaslError> {
    let s = b
        .get(at..at + 4)
        .ok_or_else(|| SaslError::BadMessage(format!("truncated before the {what} length")))?;
    let n = i32::from_be_bytes([s[0], s[1], s[2], s[3]]);
    usize::try_from(n).map_err(|_| SaslError::BadMessage(format!("negative {what} length {n}")))
}

impl SaslMessage {
    /// Parses an RPC body. Lengths are checked against the body before anything is copied.
    pub fn decode(body: &[u8]) -> Result<SaslMessage, SaslError> {
        if body.first() != Some(&SASL_MESSAGE_TAG) {
            return Err(SaslError::NotSasl);
        }
        let n = read_i32_len(body, 1, "appId")?;
        // An appId is a framework or application id: a few dozen bytes. It is logged with every
        // refusal on the connection, so a huge one is refused before anything is kept.
        if n > MAX_APP_ID_LEN {
            return Err(SaslError::BadMessage(format!(
                "appId of {n} bytes is longer than {MAX_APP_ID_LEN}"
            )));
        }
        let app = body
            .get(5..5 + n)
            .ok_or_else(|| SaslError::BadMessage(format!("appId of {n} bytes is truncated")))?;
        let app_id = std::str::from_utf8(app)
            .map_err(|_| SaslError::BadMessage("appId is not UTF-8".into()))?
            .to_owned();
        // Spark writes the payload length and its decoder ignores it: the payload is the rest.
        let _declared = read_i32_len(body, 5 + n, "payload")?;
        Ok(SaslMessage {
            app_id,
            payload: body[9 + n..].to_vec(),
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(9 + self.app_id.len() + self.payload.len());
        v.push(SASL_MESSAGE_TAG);
        v.extend_from_slice(&(self.app_id.len() as i32).to_be_bytes());
        v.extend_from_slice(self.app_id.as_bytes());
        v.extend_from_slice(&(self.payload.len() as i32).to_be_bytes());
        v.extend_from_slice(&self.payload);
        v
    }
}

/// Base64 with a `'\n'` after every 76 output characters (none at the very end), as Netty's
/// `Base64.encode(ByteBuf)` writes it; Spark's SASL password is this encoding of the secret.
pub fn netty_base64(data: &[u8]) -> String {
    let flat = base64::engine::general_purpose::STANDARD.encode(data);
    let mut out = String::with_capacity(flat.len() + flat.len() / 76);
    for (i, c) in flat.chars().enumerate() {
        if i > 0 && i % 76 == 0 {
            out.push('\n');
        }
        out.push(c);
    }
    out
}

fn md5(parts: &[&[u8]]) -> [u8; 16] {
    let mut h = Md5::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

fn hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        s.push_str(&format!("{x:02x}"));
    }
    s
}

/// The values of a digest-response that enter the hashes.
#[derive(Debug, Clone, Default)]
pub struct DigestInput<'a> {
    pub username: &'a str,
    pub realm: &'a str,
    pub password: &'a str,
    pub nonce: &'a str,
    pub cnonce: &'a str,
    pub nc: &'a str,
    pub qop: &'a str,
    pub digest_uri: &'a str,
    pub authzid: Option<&'a str>,
}

impl DigestInput<'_> {
    /// H(A1) (16 raw bytes): the session key material.
    pub fn ha1(&self) -> [u8; 16] {
        let inner = md5(&[
            self.username.as_bytes(),
            b":",
            self.realm.as_bytes(),
            b":",
            self.password.as_bytes(),
        ]);
        let mut parts: Vec<&[u8]> = vec![
            &inner,
            b":",
            self.nonce.as_bytes(),
            b":",
            self.cnonce.as_bytes(),
        ];
        if let Some(z) = self.authzid {
            parts.push(b":");
            parts.push(z.as_bytes());
        }
        md5(&parts)
    }

    fn kd(&self, ha1: &[u8; 16], a2_prefix: &str) -> String {
        let mut a2 = format!("{a2_prefix}{}", self.digest_uri);
        if self.qop == "auth-conf" || self.qop == "auth-int" {
            a2.push_str(A2_CONF);
        }
        let ha2 = hex(&md5(&[a2.as_bytes()]));
        hex(&md5(&[
            hex(ha1).as_bytes(),
            b":",
            self.nonce.as_bytes(),
            b":",
            self.nc.as_bytes(),
            b":",
            self.cnonce.as_bytes(),
            b":",
            self.qop.as_bytes(),
            b":",
            ha2.as_bytes(),
        ]))
    }

    /// The client's `response=` value.
    pub fn response(&self) -> String {
        self.kd(&self.ha1(), "AUTHENTICATE:")
    }

    /// The server's `rspauth=` value.
    pub fn rspauth(&self) -> String {
        self.kd(&self.ha1(), ":")
    }
}

/// Parses `key=value` / `key="quoted"` directives. Duplicates and junk are errors.
fn parse_directives(text: &str) -> Result<Vec<(String, String)>, String> {
    let b = text.as_bytes();
    let mut i = 0;
    let mut out: Vec<(String, String)> = Vec::new();
    loop {
        while i < b.len() && (b[i] == b',' || b[i].is_ascii_whitespace()) {
            i += 1;
        }
        if i >= b.len() {
            return Ok(out);
        }
        let start = i;
        while i < b.len() && b[i] != b'=' && b[i] != b',' {
            i += 1;
        }
        if i >= b.len() || b[i] != b'=' {
            return Err(format!("directive without a value at byte {start}"));
        }
        let key = text[start..i].trim().to_ascii_lowercase();
        i += 1;
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        let mut value = Vec::new();
        if i < b.len() && b[i] == b'"' {
            i += 1;
            loop {
                match b.get(i) {
                    None => return Err(format!("unterminated quoted value of {key}")),
                    Some(b'"') => {
                        i += 1;
                        break;
                    }
                    Some(b'\\') if i + 1 < b.len() => {
                        value.push(b[i + 1]);
                        i += 2;
                    }
                    Some(&c) => {
                        value.push(c);
                        i += 1;
                    }
                }
            }
        } else {
            while i < b.len() && b[i] != b',' {
                value.push(b[i]);
                i += 1;
            }
            while value.last().is_some_and(|c| c.is_ascii_whitespace()) {
                value.pop();
            }
        }
        let value = String::from_utf8(value).map_err(|_| format!("{key} is not UTF-8"))?;
        if out.iter().any(|(k, _)| *k == key) {
            return Err(format!("duplicate {key}"));
        }
        out.push((key, value));
    }
}

/// What a server step produced.
pub enum Step {
    /// A token to send back; the exchange continues.
    Challenge(Vec<u8>),
    /// The last token (`rspauth=…`, sent in plaintext); the client is authenticated.
    /// `privacy` is set when `qop=auth-conf` was negotiated: every byte after the token goes
    /// through it.
    Complete {
        token: Vec<u8>,
        privacy: Option<Box<SaslPrivacy>>,
    },
}

enum State {
    Start,
    ChallengeSent,
    Done,
}

/// One connection's DIGEST-MD5 server.
pub struct DigestServer {
    password: Zeroizing<String>,
    nonce: String,
    encrypt_only: bool,
    state: State,
}

impl DigestServer {
    pub fn new(secret: &Secret, encrypt_only: bool) -> DigestServer {
        use rand::RngCore;
        let mut raw = [0u8; 30];
        rand::rngs::OsRng.fill_bytes(&mut raw);
        DigestServer {
            password: Zeroizing::new(netty_base64(secret.expose().as_bytes())),
            nonce: base64::engine::general_purpose::STANDARD.encode(raw),
            encrypt_only,
            state: State::Start,
        }
    }

    fn qops(&self) -> &'static [&'static str] {
        if self.encrypt_only {
            &["auth-conf"]
        } else {
            &["auth-conf", "auth"]
        }
    }

    /// The digest-challenge.
    fn challenge(&self) -> String {
        format!(
            "realm=\"{REALM}\",nonce=\"{}\",qop=\"{}\",charset=utf-8,cipher=\"rc4\",algorithm=md5-sess",
            self.nonce,
            self.qops().join(",")
        )
    }

    /// Evaluates one client token.
    pub fn step(&mut self, token: &[u8]) -> Result<Step, SaslError> {
        match self.state {
            State::Start => {
                if !token.is_empty() {
                    return Err(SaslError::Digest(
                        "Unexpected initial response (DIGEST-MD5 starts with an empty token)"
                            .into(),
                    ));
                }
                self.state = State::ChallengeSent;
                Ok(Step::Challenge(self.challenge().into_bytes()))
            }
            State::ChallengeSent => {
                // One attempt per challenge, as in the JDK: a failed response ends the exchange.
                self.state = State::Done;
                self.verify(token)
            }
            State::Done => Err(SaslError::Complete),
        }
    }

    fn verify(&self, token: &[u8]) -> Result<Step, SaslError> {
        let v = |s: &str| SaslError::Digest(format!("digest response format violation. {s}"));
        if token.len() > MAX_RESPONSE {
            return Err(v(&format!(
                "Response of {} bytes exceeds {MAX_RESPONSE}.",
                token.len()
            )));
        }
        let text = std::str::from_utf8(token).map_err(|_| v("Response is not UTF-8."))?;
        let d = parse_directives(text).map_err(|e| v(&format!("{e}.")))?;
        let get = |k: &str| d.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
        let username = get("username").ok_or_else(|| v("Missing username."))?;
        let realm = get("realm").unwrap_or("");
        if realm != REALM {
            return Err(v("Nonexistent realm."));
        }
        let nonce = get("nonce").ok_or_else(|| v("Missing nonce."))?;
        if !bool::from(nonce.as_bytes().ct_eq(self.nonce.as_bytes())) {
            return Err(v("Mismatched nonce."));
        }
        let cnonce = get("cnonce").ok_or_else(|| v("Missing cnonce."))?;
        let nc = get("nc").unwrap_or("00000001");
        if u32::from_str_radix(nc, 16).ok() != Some(1) {
            return Err(v("Nonce count does not match."));
        }
        let qop = get("qop").unwrap_or("auth");
        if !self.qops().contains(&qop) {
            return Err(v(&format!("Invalid QOP: {qop}.")));
        }
        if qop == "auth-conf" {
            match get("cipher") {
                Some("rc4") => {}
                Some(c) => return Err(v(&format!("Cipher {c} was not offered."))),
                None => return Err(v("Missing cipher.")),
            }
        }
        let uri = get("digest-uri").ok_or_else(|| v("Missing digest-uri."))?;
        if !uri.eq_ignore_ascii_case(DIGEST_URI) {
            return Err(v("Mismatched URI."));
        }
        let authzid = get("authzid");
        if authzid.is_some_and(|z| z != username) {
            return Err(SaslError::Digest(
                "authzid differs from the authenticated user".into(),
            ));
        }
        let response = get("response").ok_or_else(|| v("Missing response."))?;
        let input = DigestInput {
            username,
            realm,
            password: &self.password,
            nonce,
            cnonce,
            nc,
            qop,
            digest_uri: uri,
            authzid,
        };
        let ha1 = Zeroizing::new(input.ha1());
        let expected = input.kd(&ha1, "AUTHENTICATE:");
        if !bool::from(
            expected
                .as_bytes()
                .ct_eq(response.to_ascii_lowercase().as_bytes()),
        ) {
            return Err(v("Mismatched response."));
        }
        let token = format!("rspauth={}", input.kd(&ha1, ":")).into_bytes();
        let privacy = (qop == "auth-conf").then(|| Box::new(SaslPrivacy::server(&ha1)));
        Ok(Step::Complete { token, privacy })
    }
}

/// One direction of the `auth-conf` layer: an RC4 keystream continuing across records, an
/// HMAC-MD5 integrity key and a sequence number.
struct Half {
    rc4: Rc4,
    mac_key: Zeroizing<[u8; 16]>,
    seq: u32,
}

impl Half {
    fn new(ha1: &[u8; 16], sign_magic: &str, seal_magic: &str) -> Half {
        let mac_key = Zeroizing::new(md5(&[ha1, sign_magic.as_bytes()]));
        let seal = Zeroizing::new(md5(&[ha1, seal_magic.as_bytes()]));
        Half {
            // A 16-byte key is always within RC4's 1..=256 byte range.
            rc4: match Rc4::new_from_slice(&seal[..]) {
                Ok(c) => c,
                Err(_) => unreachable!("16-byte RC4 key"),
            },
            mac_key,
            seq: 0,
        }
    }

    fn mac(&self, seq: u32, msg: &[u8]) -> [u8; 10] {
        let mut m = match <Hmac<Md5> as KeyInit>::new_from_slice(&self.mac_key[..]) {
            Ok(m) => m,
            Err(_) => unreachable!("HMAC takes keys of any length"),
        };
        m.update(&seq.to_be_bytes());
        m.update(msg);
        let full = m.finalize().into_bytes();
        let mut out = [0u8; 10];
        out.copy_from_slice(&full[..10]);
        out
    }
}

/// The DIGEST-MD5 confidentiality layer of one server connection (RFC 2831 §2.4, with RC4).
pub struct SaslPrivacy {
    send: Half,
    recv: Half,
}

const CLIENT_SIGN: &str = "Digest session key to client-to-server signing key magic constant";
const SERVER_SIGN: &str = "Digest session key to server-to-client signing key magic constant";
const CLIENT_SEAL: &str = "Digest H(A1) to client-to-server sealing key magic constant";
const SERVER_SEAL: &str = "Digest H(A1) to server-to-client sealing key magic constant";

impl SaslPrivacy {
    /// The server's layer (sends with the server-to-client keys).
    pub fn server(ha1: &[u8; 16]) -> SaslPrivacy {
        SaslPrivacy {
            send: Half::new(ha1, SERVER_SIGN, SERVER_SEAL),
            recv: Half::new(ha1, CLIENT_SIGN, CLIENT_SEAL),
        }
    }

    /// The client's layer (for tests and tools speaking as a client).
    pub fn client(ha1: &[u8; 16]) -> SaslPrivacy {
        SaslPrivacy {
            send: Half::new(ha1, CLIENT_SIGN, CLIENT_SEAL),
            recv: Half::new(ha1, SERVER_SIGN, SERVER_SEAL),
        }
    }

    /// The sending and receiving halves, for a writer task and a reader task.
    pub fn split(self) -> (SaslWrap, SaslUnwrap) {
        (SaslWrap(self.send), SaslUnwrap(self.recv))
    }

    /// Appends the wrapped form of `msg` to `out`: `RC4(msg ‖ mac) ‖ 00 01 ‖ seq`.
    pub fn wrap(&mut self, msg: &[u8], out: &mut Vec<u8>) {
        wrap_with(&mut self.send, msg, out)
    }

    /// Unwraps one record (without Spark's 8-byte length prefix), checking the sequence
    /// number and the MAC.
    pub fn unwrap(&mut self, rec: &[u8]) -> Result<Vec<u8>, SaslError> {
        unwrap_with(&mut self.recv, rec)
    }
}

/// The sending half of [`SaslPrivacy`].
pub struct SaslWrap(Half);

impl SaslWrap {
    /// See [`SaslPrivacy::wrap`].
    pub fn wrap(&mut self, msg: &[u8], out: &mut Vec<u8>) {
        wrap_with(&mut self.0, msg, out)
    }
}

/// The receiving half of [`SaslPrivacy`].
pub struct SaslUnwrap(Half);

impl SaslUnwrap {
    /// See [`SaslPrivacy::unwrap`].
    pub fn unwrap(&mut self, rec: &[u8]) -> Result<Vec<u8>, SaslError> {
        unwrap_with(&mut self.0, rec)
    }
}

fn wrap_with(h: &mut Half, msg: &[u8], out: &mut Vec<u8>) {
    {
        let seq = h.seq;
        h.seq = h.seq.wrapping_add(1);
        let mac = h.mac(seq, msg);
        let start = out.len();
        out.extend_from_slice(msg);
        out.extend_from_slice(&mac);
        h.rc4.apply_keystream(&mut out[start..]);
        out.extend_from_slice(&[0, 1]);
        out.extend_from_slice(&seq.to_be_bytes());
    }
}

fn unwrap_with(h: &mut Half, rec: &[u8]) -> Result<Vec<u8>, SaslError> {
    {
        if rec.len() < 16 {
            return Err(SaslError::Record(format!(
                "record of {} bytes is shorter than its 16-byte trailer",
                rec.len()
            )));
        }
        let (body, trailer) = rec.split_at(rec.len() - 6);
        if trailer[..2] != [0, 1] {
            return Err(SaslError::Record("bad message type".into()));
        }
        let seq = u32::from_be_bytes([trailer[2], trailer[3], trailer[4], trailer[5]]);
        if seq != h.seq {
            return Err(SaslError::Record(format!(
                "out of order: sequence {seq}, expected {}",
                h.seq
            )));
        }
        h.seq = h.seq.wrapping_add(1);
        let mut plain = body.to_vec();
        h.rc4.apply_keystream(&mut plain);
        let msg_len = plain.len() - 10;
        let mac = h.mac(seq, &plain[..msg_len]);
        if !bool::from(mac.ct_eq(&plain[msg_len..])) {
            return Err(SaslError::Record("MAC mismatch".into()));
        }
        plain.truncate(msg_len);
        Ok(plain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Spark 3.5.7's own SparkSaslServer/SparkSaslClient run (spec §9.7), qop auth.
    #[test]
    fn spark_vector_auth() {
        let i = DigestInput {
            username: "c3BhcmtTYXNsVXNlcg==",
            realm: "default",
            password: &netty_base64(b"secret"),
            nonce: "rvi5gpeaLFMkjqAGv+kr6o85MXxD540jUKuwgCAN",
            cnonce: "cCfj86/qPZb18m9xI2K8E4TRbYASeckyTm4dmJDL",
            nc: "00000001",
            qop: "auth",
            digest_uri: "null/default",
            authzid: None,
        };
        assert_eq!(i.password, "c2VjcmV0");
        assert_eq!(i.response(), "be71a2e837f031ee50e91624299a36ee");
        assert_eq!(i.rspauth(), "a9d339756c4d2364cda1246aea593462");
    }

    /// The same with qop auth-conf.
    #[test]
    fn spark_vector_auth_conf() {
        let i = DigestInput {
            username: "c3BhcmtTYXNsVXNlcg==",
            realm: "default",
            password: "c2VjcmV0",
            nonce: "U+BrbFrT0EIHlp//2L0nmc76jvYFx6/dg5BTxFET",
            cnonce: "GHkeoUvVVo9o0nZEA7w6dYc4aUo8zaYztxwqk7Tl",
            nc: "00000001",
            qop: "auth-conf",
            digest_uri: "null/default",
            authzid: None,
        };
        assert_eq!(i.response(), "f1669217a8aa9091aec109556aa394de");
        assert_eq!(i.rspauth(), "4e1c7ff81516a09a5776d86ecca89cbe");
    }

    #[test]
    fn netty_line_breaks() {
        assert_eq!(netty_base64(&[b'a'; 57]).len(), 76);
        let b = netty_base64(&[b'a'; 58]);
        assert_eq!(b.len(), 81);
        assert_eq!(&b[76..], "\nYQ==");
        let hexsecret = b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let b = netty_base64(hexsecret);
        assert_eq!(b.len(), 89);
        assert!(b.ends_with("\nOWFiY2RlZg=="), "{b}");
    }

    fn client_response(challenge: &str, password: &str, qop: &str, cipher: bool) -> String {
        let d = parse_directives(challenge).unwrap();
        let nonce = d.iter().find(|(k, _)| k == "nonce").unwrap().1.clone();
        let i = DigestInput {
            username: "c3BhcmtTYXNsVXNlcg==",
            realm: "default",
            password,
            nonce: &nonce,
            cnonce: "abcdefghijklmnopqrstuvwxyz0123456789ABCD",
            nc: "00000001",
            qop,
            digest_uri: "null/default",
            authzid: None,
        };
        format!(
            "charset=utf-8,username=\"c3BhcmtTYXNsVXNlcg==\",realm=\"default\",nonce=\"{nonce}\",nc=00000001,\
             cnonce=\"abcdefghijklmnopqrstuvwxyz0123456789ABCD\",digest-uri=\"null/default\",maxbuf=65536,\
             response={},qop={qop}{}",
            i.response(),
            if cipher { ",cipher=\"rc4\"" } else { "" }
        )
    }

    #[test]
    fn exchange_good_and_bad() {
        let secret = Secret::new("secret".into());
        let mut s = DigestServer::new(&secret, false);
        let Step::Challenge(c) = s.step(b"").unwrap() else {
            panic!("expected a challenge")
        };
        let c = String::from_utf8(c).unwrap();
        assert!(
            c.contains("qop=\"auth-conf,auth\"") && c.contains("cipher=\"rc4\""),
            "{c}"
        );
        let r = client_response(&c, "c2VjcmV0", "auth", false);
        match s.step(r.as_bytes()).unwrap() {
            Step::Complete { token, privacy } => {
                assert!(token.starts_with(b"rspauth="));
                assert!(privacy.is_none());
            }
            Step::Challenge(_) => panic!("expected completion"),
        }
        assert_eq!(s.step(b"x").err(), Some(SaslError::Complete));

        // A wrong password.
        let mut s = DigestServer::new(&secret, false);
        let Ok(Step::Challenge(c)) = s.step(b"") else {
            panic!()
        };
        let r = client_response(&String::from_utf8(c).unwrap(), "d3Jvbmc=", "auth", false);
        let e = s.step(r.as_bytes()).err().unwrap().to_string();
        assert!(e.ends_with("Mismatched response."), "{e}");

        // Garbage, and the serverAlwaysEncrypt refusal of plain auth.
        let mut s = DigestServer::new(&secret, true);
        let Ok(Step::Challenge(c)) = s.step(b"") else {
            panic!()
        };
        let c = String::from_utf8(c).unwrap();
        assert!(c.contains("qop=\"auth-conf\""), "{c}");
        let r = client_response(&c, "c2VjcmV0", "auth", false);
        assert!(s.step(r.as_bytes()).is_err());
        let mut s = DigestServer::new(&secret, false);
        let _ = s.step(b"");
        assert!(s.step(b"\xff\xfe=\"").is_err());
        assert!(s.step(&[b'a'; 5000]).is_err());
    }

    #[test]
    fn auth_conf_records_round_trip() {
        let secret = Secret::new("secret".into());
        let mut s = DigestServer::new(&secret, false);
        let Ok(Step::Challenge(c)) = s.step(b"") else {
            panic!()
        };
        let c = String::from_utf8(c).unwrap();
        let r = client_response(&c, "c2VjcmV0", "auth-conf", true);
        let Ok(Step::Complete {
            privacy: Some(mut server),
            ..
        }) = s.step(r.as_bytes())
        else {
            panic!("expected auth-conf")
        };
        let d = parse_directives(&c).unwrap();
        let nonce = &d.iter().find(|(k, _)| k == "nonce").unwrap().1;
        let ha1 = DigestInput {
            username: "c3BhcmtTYXNsVXNlcg==",
            realm: "default",
            password: "c2VjcmV0",
            nonce,
            cnonce: "abcdefghijklmnopqrstuvwxyz0123456789ABCD",
            ..Default::default()
        }
        .ha1();
        let mut client = SaslPrivacy::client(&ha1);
        for msg in [&b"hello"[..], &[7u8; 70000][..], b""] {
            let mut w = Vec::new();
            server.wrap(msg, &mut w);
            if !msg.is_empty() {
                assert_ne!(&w[..msg.len()], msg);
            }
            assert_eq!(client.unwrap(&w).unwrap(), msg);
            let mut w = Vec::new();
            client.wrap(msg, &mut w);
            assert_eq!(server.unwrap(&w).unwrap(), msg);
        }
        let mut w = Vec::new();
        client.wrap(b"tampered", &mut w);
        w[0] ^= 1;
        assert!(server.unwrap(&w).is_err());
    }

    #[test]
    fn sasl_message_codec() {
        let m = SaslMessage {
            app_id: "app-1".into(),
            payload: b"xyz".to_vec(),
        };
        assert_eq!(SaslMessage::decode(&m.encode()).unwrap(), m);
        assert_eq!(SaslMessage::decode(&[0xFB, 0]), Err(SaslError::NotSasl));
        assert!(SaslMessage::decode(&[0xEA, 0x7f, 0xff, 0xff, 0xff, b'a']).is_err());
        assert!(SaslMessage::decode(&[0xEA, 0xff, 0xff, 0xff, 0xff]).is_err());
    }
}
