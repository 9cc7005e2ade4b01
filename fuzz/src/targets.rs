//! The fuzz targets. Each one decodes or parses `data` and asserts its properties; a failed
//! assertion or a panic is a crash that libFuzzer keeps.

use std::path::{Component, Path};
use std::time::Duration;

use bytes::BytesMut;
use prost::Message as _;

use crate::alloc::bounded;
use croupier_executor::command;
use croupier_executor::fetcher::extract::{extract as extract_archive, Owner};
use croupier_executor::fetcher::uri::{self, ArchiveKind};
use croupier_executor::fetcher::FetchConfig;
use croupier_proto::v1::executor::Event;
use croupier_proto::v1::{CommandInfo, TaskId, TaskInfo};
use croupier_proto::{duration, json, recordio};
use croupier_shuffle_service::auth::engine::AuthMessage;
use croupier_shuffle_service::auth::sasl::SaslMessage;
use croupier_shuffle_service::config::Settings;
use croupier_shuffle_service::protocol::{frame, BlockTransferMessage};
use croupier_shuffle_service::resolver::{self, BlockId};
use croupier_shuffle_service::units;

/// Slack for the small fixed allocations every target makes (error strings, vectors).
const SLACK: usize = 64 * 1024;

/// The RecordIO decoder's record limit in these targets.
const MAX_RECORD: usize = 64 * 1024;

/// RecordIO: the stream decodes the same whatever the read boundaries; each record is at most
/// the limit; no allocation beyond input and limit; decode(encode(records)) = records.
pub fn recordio(data: &[u8]) {
    let (split, data) = match data.split_first() {
        Some((s, rest)) => (usize::from(*s).max(1), rest),
        None => return,
    };
    let decode_all = |chunk: usize| {
        let mut dec = recordio::Decoder::new(MAX_RECORD);
        let mut buf = BytesMut::new();
        let mut records = Vec::new();
        let mut error = None;
        'outer: for piece in data.chunks(chunk) {
            buf.extend_from_slice(piece);
            loop {
                match dec.decode(&mut buf) {
                    Ok(Some(r)) => {
                        assert!(r.len() <= MAX_RECORD, "record of {} bytes", r.len());
                        records.push(r);
                    }
                    Ok(None) => break,
                    Err(e) => {
                        error = Some(e);
                        break 'outer;
                    }
                }
            }
        }
        (records, error.is_some())
    };
    let bound = 4 * data.len() + MAX_RECORD + SLACK;
    let (whole, whole_failed) = bounded("recordio whole", bound, || decode_all(data.len().max(1)));
    let (pieces, pieces_failed) = bounded("recordio pieces", bound, || decode_all(split));
    assert_eq!(whole, pieces, "records depend on read boundaries");
    assert_eq!(
        whole_failed, pieces_failed,
        "failure depends on read boundaries"
    );

    let mut encoded = BytesMut::new();
    for r in &whole {
        recordio::encode(r, &mut encoded);
    }
    let mut dec = recordio::Decoder::new(MAX_RECORD);
    let mut again = Vec::new();
    while let Some(r) = dec.decode(&mut encoded).expect("re-encoded records decode") {
        again.push(r);
    }
    assert_eq!(whole, again, "decode(encode(records)) differs");
    assert!(encoded.is_empty(), "bytes left after re-encoded records");
}

/// Mesos `Event` protobuf: decoding never allocates much beyond the input; what decodes
/// re-encodes to bytes that decode to the same value.
pub fn event_protobuf(data: &[u8]) {
    warm_up_json();
    let Ok(event) = bounded("Event::decode", 8 * data.len() + SLACK, || {
        Event::decode(data)
    }) else {
        return;
    };
    let once = event.encode_to_vec();
    let again = Event::decode(once.as_slice()).expect("re-encoded Event decodes");
    assert_eq!(
        once,
        again.encode_to_vec(),
        "encode(decode(encode(e))) differs"
    );
    // The JSON mapping of any decoded event must read back as the same event.
    let value = json::event_to_json(&event);
    let back = json::event_from_json(&value).expect("event_to_json output reads back");
    assert_eq!(
        once,
        back.encode_to_vec(),
        "JSON round trip of a protobuf Event differs"
    );
}

/// The JSON mapping builds its descriptor pool once, on first use (about 240 KiB): done before
/// any allocation is measured, so the bound applies to decoding alone. Found by the
/// `task_command` target, whose first input was JSON (a one-time cost, not a finding).
fn warm_up_json() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = json::command_info_from_json(b"{}");
    });
}

/// Mesos `Event` JSON: what parses re-renders to JSON that parses to the same event; the
/// required-field check never panics.
pub fn event_json(data: &[u8]) {
    warm_up_json();
    let _ = json::missing_required_fields::<Event>(data);
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let Ok(event) = bounded("event_from_json", 16 * data.len() + SLACK, || {
        json::event_from_json(&value)
    }) else {
        return;
    };
    let rendered = json::event_to_json(&event);
    let back = json::event_from_json(&rendered).expect("event_to_json output reads back");
    assert_eq!(
        event.encode_to_vec(),
        back.encode_to_vec(),
        "decode(encode(event)) differs through JSON"
    );
}

/// The custom-mode `TaskInfo.data` and drop-in `--task_command` parsers: a result always has
/// a non-empty `value` (custom mode) and `program` never panics.
pub fn task_command(data: &[u8]) {
    warm_up_json();
    let task = TaskInfo {
        task_id: TaskId {
            value: "fuzz".into(),
        },
        data: Some(data.to_vec()),
        ..Default::default()
    };
    let custom = bounded("custom_task_command", 16 * data.len() + SLACK, || {
        command::custom_task_command(&task)
    });
    if let Ok(cmd) = &custom {
        assert!(cmd.value.as_deref().is_some_and(|v| !v.is_empty()));
        let _ = command::program(cmd);
        if data.first() != Some(&b'{') {
            // Protobuf data: the value survives a round trip.
            let back = CommandInfo::decode(cmd.encode_to_vec().as_slice()).expect("re-decodes");
            assert_eq!(back.encode_to_vec(), cmd.encode_to_vec());
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let plain = TaskInfo {
            data: None,
            ..task.clone()
        };
        if let Ok(cmd) = command::drop_in_task_command(&plain, Some(text)) {
            let _ = command::program(&cmd);
        }
    }
}

/// The Spark frame decoder: never accepts a frame above the limit, never allocates beyond the
/// limit plus the input; every decoded message re-encodes to a frame that decodes to itself.
pub fn spark_frame(data: &[u8]) {
    const MAX_FRAME: u64 = 64 * 1024;
    let mut src = BytesMut::from(data);
    let mut decoded = Vec::new();
    bounded(
        "frame::decode",
        4 * data.len() + MAX_FRAME as usize + SLACK,
        || loop {
            let before = src.len();
            match frame::decode(&mut src, MAX_FRAME) {
                Ok(Some(m)) => decoded.push(m),
                Ok(None) => break,
                Err(e) => {
                    let skipped = src.len() < before;
                    let _ = e.to_string();
                    if !skipped {
                        break;
                    }
                }
            }
        },
    );
    for m in decoded {
        assert!(m.frame_len() as u64 <= MAX_FRAME + 8 || has_trailing_body(&m));
        let mut out = BytesMut::new();
        m.encode(&mut out);
        if has_trailing_body(&m) {
            continue;
        }
        let back = frame::decode(&mut out, MAX_FRAME)
            .expect("re-encoded frame decodes")
            .expect("re-encoded frame is complete");
        assert_eq!(m, back, "decode(encode(frame)) differs");
        assert!(out.is_empty(), "bytes left after a re-encoded frame");
    }
}

/// Messages whose body travels after the frame: only the frame header is encoded.
fn has_trailing_body(m: &frame::Message) -> bool {
    matches!(
        m,
        frame::Message::StreamResponse { .. } | frame::Message::UploadStream { .. }
    )
}

/// BlockTransferMessage: bounded allocation; decode(encode(m)) = m.
pub fn block_transfer_message(data: &[u8]) {
    let Ok(m) = bounded(
        "BlockTransferMessage::decode",
        16 * data.len() + SLACK,
        || BlockTransferMessage::decode(data),
    ) else {
        return;
    };
    let again = BlockTransferMessage::decode(&m.to_bytes()).expect("re-encoded message decodes");
    assert_eq!(m, again, "decode(encode(message)) differs");
}

/// SASL message of the spark.authenticate handshake: bounded; decode(encode(m)) = m.
pub fn sasl_message(data: &[u8]) {
    let Ok(m) = bounded("SaslMessage::decode", 2 * data.len() + SLACK, || {
        SaslMessage::decode(data)
    }) else {
        return;
    };
    assert!(m.app_id.len() <= 1024);
    let again = SaslMessage::decode(&m.encode()).expect("re-encoded SASL message decodes");
    assert_eq!(m, again, "decode(encode(sasl)) differs");
}

/// Auth engine message: bounded by its field limits; decode(encode(m)) = m.
pub fn auth_message(data: &[u8]) {
    let Ok(m) = bounded("AuthMessage::decode", 2 * data.len() + SLACK, || {
        AuthMessage::decode(data)
    }) else {
        return;
    };
    let again = AuthMessage::decode(&m.encode()).expect("re-encoded auth message decodes");
    assert_eq!(m, again, "decode(encode(auth)) differs");
}

/// appId/execId validation and block ids: an accepted id can never name another directory;
/// a parsed block id renders back to a string that parses to the same id; a removable file
/// name is a plain file name and stable.
pub fn ids(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if resolver::validate_id("appId", s).is_ok() {
        assert!(!s.is_empty() && s.len() <= 1024);
        assert!(!s.contains('/') && !s.contains("..") && !s.chars().any(char::is_control));
        assert!(Path::new(s)
            .components()
            .all(|c| matches!(c, Component::Normal(_))));
    }
    if let Ok(id) = BlockId::parse(s) {
        let rendered = match id {
            BlockId::Shuffle {
                shuffle_id,
                map_id,
                reduce_id,
            } => format!("shuffle_{shuffle_id}_{map_id}_{reduce_id}"),
            BlockId::ShuffleBatch {
                shuffle_id,
                map_id,
                start,
                end,
            } => format!("shuffle_{shuffle_id}_{map_id}_{start}_{end}"),
            BlockId::Rdd { rdd_id, split } => format!("rdd_{rdd_id}_{split}"),
        };
        assert_eq!(BlockId::parse(&rendered).ok(), Some(id), "{rendered}");
    }
    if let Ok(name) = resolver::removable_file_name(s) {
        assert!(!name.contains('/') && !name.contains(".."), "{name}");
        assert_eq!(
            resolver::removable_file_name(&name).ok(),
            Some(name.clone())
        );
    }
}

/// Archive extraction into a sandbox: whatever the archive holds (`..`, absolute paths,
/// symlinks and hard links pointing out, device files), nothing is created outside the
/// sandbox directory and no panic. The first byte picks the format.
pub fn extract(data: &[u8]) {
    let Some((&pick, archive)) = data.split_first() else {
        return;
    };
    let kinds = [
        (ArchiveKind::Tar, "a.tar"),
        (ArchiveKind::TarGz, "a.tar.gz"),
        (ArchiveKind::Zip, "a.zip"),
        (ArchiveKind::Gz, "a.gz"),
        (ArchiveKind::TarBz2, "a.tar.bz2"),
        (ArchiveKind::TarXz, "a.tar.xz"),
    ];
    let (kind, name) = kinds[usize::from(pick) % kinds.len()];
    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    let outside = dir.path().join("outside");
    let sandbox = outside.join("sandbox");
    let file = outside.join(name);
    if std::fs::create_dir_all(&sandbox).is_err() || std::fs::write(&file, archive).is_err() {
        return;
    }
    let _ = extract_archive(&file, kind, &sandbox, name, None::<Owner>);
    let mut left: Vec<String> = std::fs::read_dir(&outside)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    left.sort();
    let mut expected = vec![name.to_owned(), "sandbox".to_owned()];
    expected.sort();
    assert_eq!(
        left, expected,
        "extraction created something beside the sandbox"
    );
    let top: Vec<_> = std::fs::read_dir(dir.path())
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert_eq!(
        top.len(),
        1,
        "extraction created something two levels up: {top:?}"
    );
    // Make everything removable again (an archive may carry read-only directories).
    relax(&sandbox);
}

fn relax(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    for e in rd.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            let p = e.path();
            let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o700));
            relax(&p);
        }
    }
}

/// Fetcher URI handling: a planned destination is always a relative path of plain
/// components, and an archive is recognised only when extraction was asked for. The first
/// byte holds the flags; the rest is `uri` or `uri\noutput_file`.
pub fn uri(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let (value, output) = match text.split_once('\n') {
        Some((v, o)) if flags & 8 != 0 => (v, Some(o)),
        _ => (text, None),
    };
    let _ = uri::basename(value);
    let (executable, extract, cache) = (flags & 1 != 0, flags & 2 != 0, flags & 4 != 0);
    let cfg = FetchConfig::default();
    if let Ok(plan) = uri::plan(value, executable, extract, cache, output, &cfg) {
        assert!(!plan.dest_rel.as_os_str().is_empty());
        assert!(
            plan.dest_rel
                .components()
                .all(|c| matches!(c, Component::Normal(_))),
            "destination {:?} leaves the sandbox",
            plan.dest_rel
        );
        if plan.archive.is_some() {
            assert!(extract && !executable);
        }
    }
}

/// Duration and size parsing (Mesos durations, the fetcher's flags, Spark's size and time
/// strings): no panic on any text; Mesos durations survive format → parse within rounding.
pub fn durations(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(d) = duration::parse(s) {
        let text = duration::format(d);
        let back = duration::parse(&text).expect("formatted duration parses");
        let (a, b) = (d.as_nanos() as f64, back.as_nanos() as f64);
        assert!(
            (a - b).abs() <= 2.0 + a * 1e-13,
            "{s:?} -> {d:?} -> {text:?} -> {back:?}"
        );
    }
    let _ = croupier_executor::fetcher::config::parse_bytes(s);
    let _ = croupier_executor::fetcher::config::parse_duration(s);
    let _ = units::parse_bytes(s);
    if let Ok(t) = units::parse_time(s, Duration::from_millis(1)) {
        let _ = t.as_nanos();
    }
}

/// The properties-file parser (`spark-defaults.conf`, `--properties-file`): every key kept is
/// trimmed; whatever came before, a later plain line is read as written; checking the result
/// never panics.
pub fn properties(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut s = Settings::default();
    s.add_properties(text, "fuzz");
    s.add_properties("\n\ncroupier.fuzz.sentinel = ok\n", "sentinel");
    assert_eq!(
        s.get("croupier.fuzz.sentinel"),
        Some(("ok", "sentinel")),
        "a plain line after {text:?} was not read as written"
    );
    let mut all = Settings::default();
    all.add_properties(&format!("{text}\n\ncroupier.fuzz.sentinel=ok"), "f");
    assert_eq!(all.get("croupier.fuzz.sentinel"), Some(("ok", "f")));
    let _ = all.into_config();
}
