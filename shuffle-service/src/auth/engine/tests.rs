//! Spark's known-answer vectors (`AuthEngineSuite`, `CtrAuthEngineSuite`: appId "appId",
//! secret "secret") and round trips of our two sides.

use super::*;
use rand::rngs::OsRng;

const CLIENT_PRIVATE: &str = "efe6b68b3fce92158e3637f6ef9d937e75558928dd4b401de04b43d300a73186";
const CLIENT_PUBLIC: &str = "fa987505e4a338d08229328dd22750491bc11de6da05d00a654c513f1c191355";
const CLIENT_CHALLENGE: &str = "fb00000005617070496400000010890b6e960f48e998777267a7e4e623220000003c48ad7dc7ec9466da93bda9f11488dc9404050e02c661d87d67c782444944c6e369b27e0a416c30845a2d9e64271511ca98b41d65f8c426e18ff380f6";
const SERVER_RESPONSE: &str = "fb00000005617070496400000010708451c9dd2792c97c1ca66e6df449ef0000003c64fe899ecdaf458d4e25e9d5c5a380b8e6d1a184692fac065ed84f8592c18e9629f9c636809dca2ffc041f20346eb53db7873808ecad08b46b5ee3ff";
const SERVER_PUBLIC: &str = "d73fd2231098a697f6c35ff823e3e49d4a7277549cb08533f7b43973b0841b78";
const V1_KEY: &str = "31963f15a320d5c90333f7ecf5cf3a31c7eaf151de07fef8494663a9f47cfd31";
const V2_KEY: &str = "2d6e7a9048c8265c33a8f3747bfcc84c";
const V2_KEY_ID: &str = "de04fd52d71040ed9d260579dacfdf4f5695f991ce8ddb1dde05a7335880906e";
const INPUT_IV: &str = "fc6a5dc8b90a9dad8f54f08b51a59ed2";
const OUTPUT_IV: &str = "a72709baf00785cad6329ce09f631f71";

const PSK: &[u8] = b"secret";

fn msg(hex_str: &str) -> AuthMessage {
    AuthMessage::decode(&hex::decode(hex_str).unwrap()).unwrap()
}

fn vector_client(version: EngineVersion) -> ClientAuth {
    let private: [u8; 32] = hex::decode(CLIENT_PRIVATE).unwrap().try_into().unwrap();
    ClientAuth {
        secret: Zeroizing::new(PSK.to_vec()),
        version,
        private: StaticSecret::from(private),
        challenge: msg(CLIENT_CHALLENGE),
    }
}

fn respond(
    secret: &[u8],
    challenge: &AuthMessage,
    version: EngineVersion,
) -> Result<(AuthMessage, SessionKeys), EngineError> {
    server_response(secret, challenge, version)
}

#[test]
fn vector_public_key() {
    let private: [u8; 32] = hex::decode(CLIENT_PRIVATE).unwrap().try_into().unwrap();
    let public = PublicKey::from(&StaticSecret::from(private));
    assert_eq!(hex::encode(public.as_bytes()), CLIENT_PUBLIC);
}

#[test]
fn server_opens_spark_challenge() {
    let challenge = msg(CLIENT_CHALLENGE);
    let public = open_key(PSK, &challenge, &[]).unwrap();
    assert_eq!(hex::encode(public.as_bytes()), CLIENT_PUBLIC);
    // The server's answer is random (salt, IV, key), but always well formed and for the app.
    let (response, keys) = respond(PSK, &challenge, EngineVersion::V1).unwrap();
    assert_eq!(response.app_id, "appId");
    assert_eq!(response.salt.len(), 16);
    assert_eq!(response.ciphertext.len(), SEALED_KEY_LEN);
    assert_eq!(keys.key.len(), 32);
    // The vector client accepts our answer and agrees on every key.
    let client = vector_client(EngineVersion::V1).finish(&response).unwrap();
    assert_eq!(client.key, keys.key);
    assert_eq!(client.tx_iv, keys.rx_iv);
    assert_eq!(client.rx_iv, keys.tx_iv);
}

#[test]
fn client_opens_spark_response() {
    let client = vector_client(EngineVersion::V1);
    let public = open_key(PSK, &msg(SERVER_RESPONSE), &client.challenge.encode()).unwrap();
    assert_eq!(hex::encode(public.as_bytes()), SERVER_PUBLIC);
}

#[test]
fn v1_session_keys_match_spark() {
    let keys = vector_client(EngineVersion::V1)
        .finish(&msg(SERVER_RESPONSE))
        .unwrap();
    assert_eq!(hex::encode(&keys.key[..]), V1_KEY);
    // Client view: it receives with "inputIv" and sends with "outputIv".
    assert_eq!(hex::encode(keys.rx_iv), INPUT_IV);
    assert_eq!(hex::encode(keys.tx_iv), OUTPUT_IV);
    assert_eq!(keys.transformation(), "AES/CTR/NoPadding");
}

#[test]
fn v2_session_keys_match_spark() {
    let keys = vector_client(EngineVersion::V2)
        .finish(&msg(SERVER_RESPONSE))
        .unwrap();
    assert_eq!(hex::encode(&keys.key[..]), V2_KEY);
    assert_eq!(hex::encode(keys.key_id()), V2_KEY_ID);
    assert_eq!(hex::encode(keys.rx_iv), INPUT_IV);
    assert_eq!(hex::encode(keys.tx_iv), OUTPUT_IV);
}

#[test]
fn version_from_config_as_spark_reads_it() {
    assert_eq!(EngineVersion::from_config(1), EngineVersion::V1);
    for v in [0, 2, 3, -1] {
        assert_eq!(EngineVersion::from_config(v), EngineVersion::V2);
    }
}

#[test]
fn our_client_and_server_agree_and_talk() {
    for version in [EngineVersion::V1, EngineVersion::V2] {
        let (client, challenge) = ClientAuth::start(PSK, "app-20261203-0001", version, &mut OsRng);
        // Over the wire and back, as the gate sees it.
        let challenge = AuthMessage::decode(&challenge.encode()).unwrap();
        let (response, server) = respond(PSK, &challenge, version).unwrap();
        assert_eq!(challenge.app_id, "app-20261203-0001");
        let client = client
            .finish(&AuthMessage::decode(&response.encode()).unwrap())
            .unwrap();
        assert_eq!(client.key, server.key);
        let want = if version == EngineVersion::V1 { 32 } else { 16 };
        assert_eq!(client.key.len(), want);
        assert_eq!(client.tx_iv, server.rx_iv);
        assert_eq!(client.rx_iv, server.tx_iv);
        assert_ne!(client.rx_iv, client.tx_iv);
        let (mut c_enc, mut c_dec) = client.channel().unwrap().split();
        let (mut s_enc, mut s_dec) = server.channel().unwrap().split();
        let mut m = b"OpenBlocks".to_vec();
        c_enc.encrypt(&mut m);
        assert_ne!(m, b"OpenBlocks");
        s_dec.decrypt(&mut m);
        assert_eq!(m, b"OpenBlocks");
        let mut r = vec![42u8; 70_000];
        s_enc.encrypt(&mut r);
        assert_ne!(r, vec![42u8; 70_000]);
        c_dec.decrypt(&mut r);
        assert_eq!(r, vec![42u8; 70_000]);
    }
}

#[test]
fn wrong_secret_is_rejected_naming_the_app() {
    let (client, challenge) = ClientAuth::start(PSK, "app-1", EngineVersion::V1, &mut OsRng);
    let err = respond(b"other", &challenge, EngineVersion::V1).unwrap_err();
    assert_eq!(
        err,
        EngineError::Rejected {
            app_id: "app-1".into()
        }
    );
    assert!(err.to_string().contains("app-1"));
    assert!(!err.is_retryable());
    // A response sealed with another secret is refused by the client too.
    let forged = seal_key(
        b"other",
        "app-1",
        &[9u8; 32],
        &challenge.encode(),
        &mut OsRng,
    );
    assert_eq!(
        client.finish(&forged).unwrap_err(),
        EngineError::Rejected {
            app_id: "app-1".into()
        }
    );
}

#[test]
fn any_altered_byte_of_the_sealed_key_or_its_context_is_rejected() {
    let (_, challenge) = ClientAuth::start(PSK, "app-1", EngineVersion::V2, &mut OsRng);
    for i in 0..challenge.ciphertext.len() {
        let mut m = challenge.clone();
        m.ciphertext[i] ^= 1;
        assert!(matches!(
            respond(PSK, &m, EngineVersion::V2),
            Err(EngineError::Rejected { .. })
        ));
    }
    let mut m = challenge.clone();
    m.salt[0] ^= 1;
    assert!(respond(PSK, &m, EngineVersion::V2).is_err());
    let mut m = challenge.clone();
    m.app_id = "app-2".into();
    assert_eq!(
        respond(PSK, &m, EngineVersion::V2).unwrap_err(),
        EngineError::Rejected {
            app_id: "app-2".into()
        }
    );
    let mut m = challenge;
    m.ciphertext.pop();
    assert_eq!(
        respond(PSK, &m, EngineVersion::V2).unwrap_err(),
        EngineError::SealedKeyLength {
            app_id: "app-1".into(),
            len: SEALED_KEY_LEN - 1
        }
    );
}

#[test]
fn sasl_messages_are_told_apart() {
    let err = EngineError::from(AuthMessage::decode(&[0xEA, 0, 0, 0, 1]).unwrap_err());
    assert!(err.is_sasl());
    let err = EngineError::from(AuthMessage::decode(&[0xFA]).unwrap_err());
    assert!(!err.is_sasl());
}

#[test]
fn low_order_public_key_is_refused() {
    // The all-zero point (like any small-order point) gives an all-zero shared secret.
    let sealed = seal_key(PSK, "app-1", &[0u8; 32], &[], &mut OsRng);
    assert_eq!(
        respond(PSK, &sealed, EngineVersion::V1).unwrap_err(),
        EngineError::WeakPublicKey {
            app_id: "app-1".into()
        }
    );
}

#[test]
fn client_refuses_a_response_for_another_app() {
    let (client, challenge) = ClientAuth::start(PSK, "app-1", EngineVersion::V1, &mut OsRng);
    let mut challenge_for_2 = challenge;
    challenge_for_2.app_id = "app-2".into();
    let response = seal_key(
        PSK,
        "app-2",
        &[9u8; 32],
        &challenge_for_2.encode(),
        &mut OsRng,
    );
    assert_eq!(
        client.finish(&response).unwrap_err(),
        EngineError::AppIdMismatch {
            expected: "app-1".into(),
            got: "app-2".into()
        }
    );
}

#[test]
fn debug_output_redacts_secrets() {
    let psk = b"hunter2";
    let (client, challenge) = ClientAuth::start(psk, "app-1", EngineVersion::V1, &mut OsRng);
    let (response, server) = respond(psk, &challenge, EngineVersion::V1).unwrap();
    let keys = client.finish(&response).unwrap();
    let shown = format!("{keys:?} {server:?} {:?}", server.channel().unwrap());
    assert!(!shown.contains(&hex::encode(&keys.key[..])));
    assert!(!shown.contains(&format!("{:?}", &keys.key[..])));
    assert!(!shown.contains(&format!("{:?}", keys.rx_iv)));
}
