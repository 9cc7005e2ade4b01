//! Extraction of every supported archive format, and refusal of archives that would write
//! outside the sandbox or are corrupt (each a test).

mod fetcher_support;

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use croupier_executor::fetcher::{fetch_all, FetchError, FetchErrorKind};
use fetcher_support::*;

/// Serves `data` as `name` and fetches it into a fresh sandbox under `t`.
fn fetch_named(name: &str, data: Vec<u8>, t: &Path, cache: bool) -> Result<(), FetchError> {
    let srv = Server::start();
    let path = format!("/a/{name}");
    srv.route(&path, Route::Ok(Arc::new(data)));
    let sb = sandbox(t);
    let cfg = config(&t.join("cache"));
    let u = if cache {
        cached(&srv.url(&path))
    } else {
        uri(&srv.url(&path))
    };
    rt().block_on(fetch_all(&[u], &sb, None, &cfg)).map(|_| ())
}

fn sample_tar() -> Vec<u8> {
    RawTar::new()
        .dir("app/")
        .file("app/bin/run.sh", b"#!/bin/sh\necho hi\n")
        .file("app/lib/data.bin", &bytes(70_000, 9))
        .symlink("app/current", "lib/data.bin")
        .hardlink("app/data-again.bin", "app/lib/data.bin")
        .finish()
}

fn assert_sample(sb: &Path) {
    assert_eq!(
        std::fs::read(sb.join("app/bin/run.sh")).unwrap(),
        b"#!/bin/sh\necho hi\n"
    );
    assert_eq!(
        std::fs::read(sb.join("app/lib/data.bin")).unwrap(),
        bytes(70_000, 9)
    );
    assert_eq!(
        std::fs::read(sb.join("app/current")).unwrap(),
        bytes(70_000, 9)
    );
    assert_eq!(
        std::fs::read(sb.join("app/data-again.bin")).unwrap(),
        bytes(70_000, 9)
    );
}

#[test]
fn tar_gz_is_extracted_and_kept_when_not_cached() {
    let t = tempdir();
    fetch_named("pkg.tar.gz", gzip(&sample_tar()), t.path(), false).unwrap();
    assert_sample(&t.path().join("sandbox"));
    assert!(
        t.path().join("sandbox/pkg.tar.gz").exists(),
        "upstream keeps the archive"
    );
}

#[test]
fn tgz_from_cache_extracts_without_the_archive() {
    let t = tempdir();
    fetch_named("pkg.tgz", gzip(&sample_tar()), t.path(), true).unwrap();
    assert_sample(&t.path().join("sandbox"));
    assert!(!t.path().join("sandbox/pkg.tgz").exists());
}

#[test]
fn plain_tar_is_extracted() {
    let t = tempdir();
    fetch_named("pkg.tar", sample_tar(), t.path(), false).unwrap();
    assert_sample(&t.path().join("sandbox"));
}

#[test]
fn tar_bz2_is_extracted() {
    let t = tempdir();
    let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
    e.write_all(&sample_tar()).unwrap();
    fetch_named("pkg.tbz2", e.finish().unwrap(), t.path(), false).unwrap();
    assert_sample(&t.path().join("sandbox"));
}

#[test]
fn tar_xz_is_extracted() {
    let t = tempdir();
    let mut e = liblzma::write::XzEncoder::new(Vec::new(), 1);
    e.write_all(&sample_tar()).unwrap();
    fetch_named("pkg.txz", e.finish().unwrap(), t.path(), false).unwrap();
    assert_sample(&t.path().join("sandbox"));
}

#[test]
fn zip_is_extracted_with_symlinks() {
    let t = tempdir();
    let z = zip(
        &[("z/a.txt", b"alpha"), ("z/sub/b.bin", &bytes(5000, 1))],
        &[("z/link", "sub/b.bin")],
    );
    fetch_named("pkg.zip", z, t.path(), false).unwrap();
    let sb = t.path().join("sandbox");
    assert_eq!(std::fs::read(sb.join("z/a.txt")).unwrap(), b"alpha");
    assert_eq!(std::fs::read(sb.join("z/link")).unwrap(), bytes(5000, 1));
}

#[test]
fn bare_gz_is_gunzipped() {
    let t = tempdir();
    fetch_named("data.csv.gz", gzip(b"a,b\n1,2\n"), t.path(), false).unwrap();
    assert_eq!(
        std::fs::read(t.path().join("sandbox/data.csv")).unwrap(),
        b"a,b\n1,2\n"
    );
}

#[test]
fn extract_false_keeps_the_archive_closed() {
    let t = tempdir();
    let srv = Server::start();
    srv.route("/p.tgz", Route::Ok(Arc::new(gzip(&sample_tar()))));
    let sb = sandbox(t.path());
    let mut u = uri(&srv.url("/p.tgz"));
    u.extract = Some(false);
    rt().block_on(fetch_all(&[u], &sb, None, &config(&t.path().join("c"))))
        .unwrap();
    assert!(sb.join("p.tgz").exists());
    assert!(!sb.join("app").exists());
}

fn assert_unsafe(r: Result<(), FetchError>) {
    let e = r.unwrap_err();
    assert!(
        matches!(e.kind, FetchErrorKind::UnsafeArchive { .. }),
        "{e}"
    );
    assert!(e.to_string().contains("unsafe archive"), "{e}");
    assert!(!e.retryable());
}

#[test]
fn tar_entry_with_dotdot_is_refused() {
    let t = tempdir();
    let tar = RawTar::new()
        .file("ok.txt", b"1")
        .file("../escaped.txt", b"evil")
        .finish();
    assert_unsafe(fetch_named("evil.tar", tar, t.path(), false));
    assert!(!t.path().join("escaped.txt").exists());
}

#[test]
fn tar_entry_with_absolute_path_is_refused() {
    let t = tempdir();
    let target = t.path().join("abs-escaped.txt");
    let tar = RawTar::new()
        .file(target.to_str().unwrap(), b"evil")
        .finish();
    assert_unsafe(fetch_named("evil.tar", tar, t.path(), false));
    assert!(!target.exists());
}

#[test]
fn tar_symlink_pointing_outside_is_refused() {
    let t = tempdir();
    // From `t/sandbox`, `up -> ../..` is t's PARENT: that is where the file would land. Its
    // name is unique to this run so that nothing else there can be mistaken for it.
    let name = format!(
        "croupier-escaped-{}.txt",
        t.path().file_name().unwrap().to_string_lossy()
    );
    let would_land = t.path().parent().unwrap().join(&name);
    assert!(!would_land.exists());
    let tar = RawTar::new()
        .symlink("up", "../..")
        .file(&format!("up/{name}"), b"evil")
        .finish();
    assert_unsafe(fetch_named("evil.tgz", gzip(&tar), t.path(), false));
    assert!(
        !would_land.exists(),
        "{} was written outside the sandbox",
        would_land.display()
    );
    assert!(!t.path().join(&name).exists());
}

#[test]
fn tar_symlink_to_absolute_path_is_refused() {
    let t = tempdir();
    let tar = RawTar::new().symlink("etc", "/etc").finish();
    assert_unsafe(fetch_named("evil.tar", tar, t.path(), false));
}

#[test]
fn tar_symlink_chain_escape_is_refused() {
    // "d/u" -> ".." is inside (the sandbox root), but "d/u/x" -> "../.." then leaves it.
    let t = tempdir();
    let tar = RawTar::new()
        .dir("d/")
        .symlink("d/u", "..")
        .symlink("d/u/x", "../escape")
        .finish();
    assert_unsafe(fetch_named("evil.tar", tar, t.path(), false));
}

#[test]
fn tar_hardlink_pointing_outside_is_refused() {
    let t = tempdir();
    std::fs::write(t.path().join("secret"), b"secret").unwrap();
    let tar = RawTar::new().hardlink("stolen", "../secret").finish();
    assert_unsafe(fetch_named("evil.tar", tar, t.path(), false));
    assert!(!t.path().join("sandbox/stolen").exists());
}

#[test]
fn tar_hardlink_to_absolute_path_is_refused() {
    let t = tempdir();
    let tar = RawTar::new().hardlink("passwd", "/etc/passwd").finish();
    assert_unsafe(fetch_named("evil.tar", tar, t.path(), false));
}

#[test]
fn zip_entry_with_dotdot_is_refused() {
    let t = tempdir();
    let z = zip(&[("ok.txt", b"1"), ("../zip-escaped.txt", b"evil")], &[]);
    assert_unsafe(fetch_named("evil.zip", z, t.path(), false));
    assert!(!t.path().join("zip-escaped.txt").exists());
}

#[test]
fn zip_entry_with_absolute_path_is_refused() {
    let t = tempdir();
    let target = t.path().join("zip-abs-escaped.txt");
    // The zip crate's writer stores the name as given (it does not sanitise), so the
    // fixture builder writes an absolute entry name as is; check that it did.
    let z = zip(
        &[("ok.txt", b"1"), (target.to_str().unwrap(), b"evil")],
        &[],
    );
    let names: Vec<String> = zip::ZipArchive::new(std::io::Cursor::new(z.clone()))
        .unwrap()
        .file_names()
        .map(|n| n.unwrap().into_owned())
        .collect();
    assert!(
        names.contains(&target.to_str().unwrap().to_string()),
        "the fixture holds the absolute name: {names:?}"
    );
    assert_unsafe(fetch_named("evil.zip", z, t.path(), false));
    assert!(!target.exists(), "nothing written at the absolute path");
    assert!(!t
        .path()
        .join("sandbox")
        .join(target.strip_prefix("/").unwrap())
        .exists());
}

#[test]
fn zip_symlink_pointing_outside_is_refused() {
    let t = tempdir();
    let z = zip(&[], &[("out", "../../etc")]);
    assert_unsafe(fetch_named("evil.zip", z, t.path(), false));
}

#[test]
fn corrupt_gzip_is_a_bad_archive() {
    let t = tempdir();
    let mut data = gzip(&bytes(100_000, 3));
    let mid = data.len() / 2;
    for b in &mut data[mid..mid + 64] {
        *b ^= 0x5a;
    }
    let e = fetch_named("blob.gz", data, t.path(), false).unwrap_err();
    assert!(matches!(e.kind, FetchErrorKind::BadArchive { .. }), "{e}");
    assert!(e.to_string().contains("bad archive"), "{e}");
}

#[test]
fn corrupt_tgz_is_a_bad_archive() {
    let t = tempdir();
    let e = fetch_named(
        "pkg.tgz",
        b"this is not gzip at all".to_vec(),
        t.path(),
        false,
    )
    .unwrap_err();
    assert!(matches!(e.kind, FetchErrorKind::BadArchive { .. }), "{e}");
}

#[test]
fn corrupt_zip_is_a_bad_archive() {
    let t = tempdir();
    let e = fetch_named("pkg.zip", bytes(3000, 8), t.path(), false).unwrap_err();
    assert!(matches!(e.kind, FetchErrorKind::BadArchive { .. }), "{e}");
}
