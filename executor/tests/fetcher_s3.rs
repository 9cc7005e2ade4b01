//! `s3://`, `s3a://`, `s3n://` against a real S3 implementation: `moto_server` from the
//! project venv (`CROUPIER_VENV` or the default of scripts/setup-venv.sh), on 127.0.0.1.

mod fetcher_support;

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use croupier_executor::fetcher::{fetch_all, CacheOutcome, FetchErrorKind};
use fetcher_support::*;

/// The project venv (`croupier_testkit::env::venv()`), which must hold moto: a missing venv
/// fails the test, never skips it (tests skip only through `require_venv!` when there is none
/// and `CROUPIER_VENV` is unset).
fn venv() -> PathBuf {
    let p = croupier_testkit::env::venv();
    assert!(
        p.join("bin/moto_server").exists(),
        "the venv {} has no bin/moto_server: run scripts/setup-venv.sh (or scripts/test.sh)",
        p.display()
    );
    p
}

struct Moto {
    child: Child,
    endpoint: String,
    // The endpoint is passed through the (process-wide) environment: one test at a time.
    _serial: std::sync::MutexGuard<'static, ()>,
}

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `moto_server` on an ephemeral port of 127.0.0.1 with `env` added, and waits for it.
fn spawn_moto(env: &[(&str, &str)]) -> Moto {
    let serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let bin = venv().join("bin/moto_server");
    let port = croupier_testkit::ports::loopback_port();
    let child = Command::new(bin)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start moto_server");
    let moto = Moto {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
        _serial: serial,
    };
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "moto_server did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    moto
}

/// moto as most tests use it: no authentication, any credentials accepted.
fn start_moto() -> Moto {
    let moto = spawn_moto(&[]);
    // SAFETY (edition 2021: safe fn): every test in this binary sets the same values.
    std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
    std::env::set_var("AWS_REGION", "us-east-1");
    moto
}

/// Creates `bucket` and puts `key` (moto accepts unsigned requests).
fn put(moto: &Moto, bucket: &str, key: &str, data: Vec<u8>) {
    rt().block_on(async {
        let c = reqwest::Client::new();
        let r = c
            .put(format!("{}/{bucket}", moto.endpoint))
            .send()
            .await
            .unwrap();
        assert!(
            r.status().is_success() || r.status().as_u16() == 409,
            "{}",
            r.status()
        );
        let r = c
            .put(format!("{}/{bucket}/{key}", moto.endpoint))
            .body(data)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "put object: {}", r.status());
    });
}

#[test]
fn s3_schemes_fetch_and_cache_through_moto() {
    croupier_testkit::require_venv!();
    let moto = start_moto();
    let body = bytes(3 << 20, 31);
    put(&moto, "artifacts", "spark/dist/app.jar", body.clone());
    let t = tempdir();
    let cfg = config(&t.path().join("cache"));
    // Endpoint override per process, as an operator would set it.
    std::env::set_var("AWS_ENDPOINT_URL", &moto.endpoint);
    for (i, scheme) in ["s3", "s3a", "s3n"].iter().enumerate() {
        let sb = t.path().join(format!("s{i}"));
        std::fs::create_dir_all(&sb).unwrap();
        let s = rt()
            .block_on(fetch_all(
                &[cached(&format!("{scheme}://artifacts/spark/dist/app.jar"))],
                &sb,
                None,
                &cfg,
            ))
            .unwrap();
        assert_eq!(std::fs::read(sb.join("app.jar")).unwrap(), body, "{scheme}");
        assert_eq!(
            s.items[0].cache,
            CacheOutcome::Miss,
            "{scheme}: the URI is the cache key"
        );
        let s = rt()
            .block_on(fetch_all(
                &[cached(&format!("{scheme}://artifacts/spark/dist/app.jar"))],
                &sb,
                None,
                &cfg,
            ))
            .unwrap();
        assert_eq!(s.items[0].cache, CacheOutcome::Hit);
    }
}

#[test]
fn s3_archive_is_extracted() {
    croupier_testkit::require_venv!();
    let moto = start_moto();
    let tgz = gzip(
        &RawTar::new()
            .file("conf/spark-defaults.conf", b"a b\n")
            .finish(),
    );
    put(&moto, "pkgs", "conf.tgz", tgz);
    std::env::set_var("AWS_ENDPOINT_URL", &moto.endpoint);
    let t = tempdir();
    let sb = sandbox(t.path());
    rt().block_on(fetch_all(
        &[uri("s3://pkgs/conf.tgz")],
        &sb,
        None,
        &config(&t.path().join("c")),
    ))
    .unwrap();
    assert_eq!(
        std::fs::read(sb.join("conf/spark-defaults.conf")).unwrap(),
        b"a b\n"
    );
}

#[test]
fn s3_missing_key_is_not_found() {
    croupier_testkit::require_venv!();
    let moto = start_moto();
    put(&moto, "bucket2", "present", b"x".to_vec());
    std::env::set_var("AWS_ENDPOINT_URL", &moto.endpoint);
    let t = tempdir();
    let sb = sandbox(t.path());
    let e = rt()
        .block_on(fetch_all(
            &[uri("s3://bucket2/absent.jar")],
            &sb,
            None,
            &config(&t.path().join("c")),
        ))
        .unwrap_err();
    assert!(matches!(e.kind, FetchErrorKind::NotFound(_)), "{e}");
    assert!(e.to_string().contains("s3://bucket2/absent.jar"), "{e}");
}

/// moto with authentication ON: after `no_auth` unauthenticated requests (used to make an IAM
/// user, its access key and its policy), every request must carry a valid SigV4 signature made
/// with that key's secret, else 403. `setup` is a Python/boto3 script run against it; its
/// stdout is returned (the created key as `id secret`).
fn start_moto_with_auth(no_auth: u32, setup: &str) -> (Moto, String) {
    let moto = spawn_moto(&[("INITIAL_NO_AUTH_ACTION_COUNT", &no_auth.to_string())]);
    let v = venv();
    let out = Command::new(v.join("bin/python"))
        .arg("-c")
        .arg(setup)
        .env("ENDPOINT", &moto.endpoint)
        .env_remove("AWS_PROFILE")
        .env("AWS_ACCESS_KEY_ID", "bootstrap")
        .env("AWS_SECRET_ACCESS_KEY", "bootstrap")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .output()
        .expect("run the boto3 set-up script");
    assert!(
        out.status.success(),
        "boto3 set-up failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        moto,
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
    )
}

/// Makes IAM user `spark` with S3 rights (3 unauthenticated calls), then, signing with the new
/// key, a bucket and an object; prints the key.
const IAM_SETUP: &str = r#"
import os, boto3, json
ep = os.environ["ENDPOINT"]
iam = boto3.client("iam", endpoint_url=ep)
iam.create_user(UserName="spark")
iam.put_user_policy(UserName="spark", PolicyName="s3", PolicyDocument=json.dumps(
    {"Version": "2012-10-17",
     "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
k = iam.create_access_key(UserName="spark")["AccessKey"]
s3 = boto3.client("s3", endpoint_url=ep, region_name="us-east-1",
                  aws_access_key_id=k["AccessKeyId"], aws_secret_access_key=k["SecretAccessKey"])
s3.create_bucket(Bucket="secured")
s3.put_object(Bucket="secured", Key="jars/app.jar", Body=b"signed bytes " * 1000)
# Authentication is really on: the bootstrap key is refused now.
anon = boto3.client("s3", endpoint_url=ep, region_name="us-east-1",
                    aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
try:
    anon.get_object(Bucket="secured", Key="jars/app.jar")
    raise SystemExit("moto did not enforce authentication")
except anon.exceptions.ClientError as e:
    assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 403, e
print(k["AccessKeyId"], k["SecretAccessKey"])
"#;

/// Credentials from the shared credentials file, in the profile `AWS_PROFILE` names (else
/// `default`), with no `AWS_ACCESS_KEY_ID` in the environment; a profile holding a wrong
/// secret is refused by the server and the error names the URI.
#[test]
fn s3_credentials_come_from_the_aws_profile() {
    croupier_testkit::require_venv!();
    let (moto, key) = start_moto_with_auth(3, IAM_SETUP);
    let (id, secret) = key.split_once(' ').expect("set-up prints `id secret`");
    let t = tempdir();
    let creds = t.path().join("credentials");
    std::fs::write(
        &creds,
        format!(
            "# written by the test\n[default]\naws_access_key_id = {id}\naws_secret_access_key = not-the-secret\n\n\
             [spark-prod]\naws_access_key_id={id}\naws_secret_access_key={secret}\n"
        ),
    )
    .unwrap();
    std::env::remove_var("AWS_ACCESS_KEY_ID");
    std::env::remove_var("AWS_SECRET_ACCESS_KEY");
    std::env::set_var("AWS_SHARED_CREDENTIALS_FILE", &creds);
    std::env::set_var("AWS_ENDPOINT_URL", &moto.endpoint);
    let u = "s3://secured/jars/app.jar";
    let run = |profile: Option<&str>, dir: &str| {
        match profile {
            Some(p) => std::env::set_var("AWS_PROFILE", p),
            None => std::env::remove_var("AWS_PROFILE"),
        }
        let sb = t.path().join(dir);
        std::fs::create_dir_all(&sb).unwrap();
        let r = rt().block_on(fetch_all(
            &[uri(u)],
            &sb,
            None,
            &config(&t.path().join("c")),
        ));
        (r, sb)
    };
    // The named profile has the right secret.
    let (r, sb) = run(Some("spark-prod"), "good");
    r.unwrap();
    assert_eq!(
        std::fs::read(sb.join("app.jar")).unwrap(),
        b"signed bytes ".repeat(1000)
    );
    // No AWS_PROFILE: `default`, whose secret is wrong; the server refuses the signature.
    let (r, sb) = run(None, "bad");
    let e = r.unwrap_err();
    let msg = e.to_string();
    eprintln!("{msg}");
    assert!(msg.contains(u), "{msg}");
    assert!(
        matches!(e.kind, FetchErrorKind::PermissionDenied(_)),
        "{msg}"
    );
    assert!(!e.retryable(), "{msg}");
    assert!(msg.contains("SignatureDoesNotMatch"), "{msg}");
    // The operator is told which credentials were used.
    assert!(
        msg.contains(&format!("profile 'default' of {}", creds.display())),
        "{msg}"
    );
    assert!(!sb.join("app.jar").exists());
    std::env::remove_var("AWS_PROFILE");
    std::env::remove_var("AWS_SHARED_CREDENTIALS_FILE");
}
