//! Real Spark 3.5.7 jobs (pyspark, `local-cluster[2,1,1024]`) whose executors register with and
//! fetch from our shuffle service. A frame-decoding tap between Spark and the service proves which
//! messages really went through the service and checks its answers; the jobs' results are
//! checked exactly by `tests/interop/spark/jobs.py`.

mod spark_support;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use spark_support::{run_python, serial, Btm, Event, Msg, PyRun, Service, Tap};

const JOB_CHECKS: &[&str] = &[
    "rdd_reduce_by_key ok",
    "rdd_group_by_key_strings ok",
    "dataframe_group_by ok",
    "dataframe_join ok",
    "done ok",
];
const SORT_MANAGER: &str = "org.apache.spark.shuffle.sort.SortShuffleManager";

struct Run {
    service: Service,
    tap: Tap,
    py: PyRun,
    app: String,
}

fn run_variant(variant: &str) -> Run {
    let _one_cluster_at_a_time = serial();
    let mut service = Service::start(&[]);
    let tap = Tap::start(service.port);
    let py = run_python(
        "jobs.py",
        &[variant.to_string(), tap.port.to_string()],
        Duration::from_secs(240),
    );
    let context = format!(
        "variant {variant} ({:?} under test) took {:.1?}\nstdout:\n{}\nstderr tail:\n{}\ntap: {}\nservice log tail:\n{}",
        service.flavour,
        py.elapsed,
        py.stdout,
        py.stderr_tail(),
        tap.summary(),
        tail(&service.log(), 40)
    );
    assert!(
        py.status.success(),
        "pyspark jobs failed: {}\n{context}",
        py.status
    );
    assert!(
        service.is_running(),
        "the shuffle service died during the jobs\n{context}"
    );
    let app = py
        .info("app_id")
        .unwrap_or_else(|| panic!("no app_id line\n{context}"));
    eprintln!(
        "variant {variant}: {:.1?}; tap: {}",
        py.elapsed,
        tap.summary()
    );
    service.stop_cleanly();
    Run {
        service,
        tap,
        py,
        app,
    }
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

impl Run {
    fn fail(&self, what: &str) -> ! {
        panic!(
            "{what}\ntap: {}\nstdout:\n{}\nservice log tail:\n{}",
            self.tap.summary(),
            self.py.stdout,
            tail(&self.service.log(), 40)
        )
    }

    fn checks(&self, want: &[&str]) {
        let got = self.py.lines("CHECK");
        if got != want {
            self.fail(&format!("CHECK lines differ: got {got:?}, want {want:?}"));
        }
    }

    /// Every message the service sent was a success: no failure frames, nothing undecodable, every
    /// RPC answered, every requested chunk delivered.
    fn assert_clean(&self) {
        let events = self.tap.events();
        for e in &events {
            let bad = match &e.msg {
                Msg::RpcFailure { error, .. } => Some(format!("RpcFailure: {}", first(error))),
                Msg::ChunkFetchFailure {
                    stream,
                    chunk,
                    error,
                } => Some(format!(
                    "ChunkFetchFailure stream={stream} chunk={chunk}: {}",
                    first(error)
                )),
                Msg::StreamFailure { id, error } => {
                    Some(format!("StreamFailure {id}: {}", first(error)))
                }
                Msg::Garbage { detail } => Some(format!("undecodable bytes: {detail}")),
                Msg::OtherFrame { type_id, len } => {
                    Some(format!("unexpected frame type {type_id} ({len} bytes)"))
                }
                _ => None,
            };
            if let Some(bad) = bad {
                self.fail(&format!(
                    "conn {} {}: {bad}",
                    e.conn,
                    if e.from_server {
                        "service->client"
                    } else {
                        "client->service"
                    }
                ));
            }
        }
        for e in &events {
            if let Msg::RpcRequest { id, btm } = &e.msg {
                if self.tap.answer(e.conn, *id).is_none() {
                    self.fail(&format!(
                        "conn {}: RpcRequest {id} ({btm:?}) never answered",
                        e.conn
                    ));
                }
            }
        }
        let requested: HashSet<(i64, i32)> = events
            .iter()
            .filter_map(|e| match e.msg {
                Msg::ChunkFetchRequest { stream, chunk } => Some((stream, chunk)),
                _ => None,
            })
            .collect();
        let served: HashSet<(i64, i32)> = events
            .iter()
            .filter_map(|e| match e.msg {
                Msg::ChunkFetchSuccess { stream, chunk, .. } => Some((stream, chunk)),
                _ => None,
            })
            .collect();
        if requested != served {
            let missing: Vec<_> = requested.difference(&served).take(5).collect();
            self.fail(&format!("chunks requested but never served: {missing:?}"));
        }
    }

    /// RegisterExecutor messages of this app, each answered with an empty RpcResponse.
    fn registrations(&self) -> HashMap<String, Vec<String>> {
        let mut out = HashMap::new();
        for (e, btm) in self.tap.requests() {
            if let Btm::RegisterExecutor {
                app,
                exec,
                dirs,
                sub_dirs,
                manager,
            } = btm
            {
                if app != self.app || sub_dirs != 64 || manager != SORT_MANAGER || dirs.is_empty() {
                    self.fail(&format!(
                        "unexpected RegisterExecutor {app} {exec} {dirs:?} {sub_dirs} {manager}"
                    ));
                }
                match self.response_body(&e) {
                    Some(body) if body.is_empty() => {}
                    other => self.fail(&format!(
                        "RegisterExecutor {exec} answered {other:?}, want an empty RpcResponse"
                    )),
                }
                out.insert(exec, dirs);
            }
        }
        out
    }

    fn response_body(&self, req: &Event) -> Option<Vec<u8>> {
        let Msg::RpcRequest { id, .. } = req.msg else {
            return None;
        };
        match self.tap.answer(req.conn, id)? {
            Msg::RpcResponse { body, .. } => Some(body),
            _ => None,
        }
    }

    /// Checks each fetch request's StreamHandle (type 3, numChunks = number of blocks) and
    /// returns (requests, chunks delivered for them).
    fn fetches(&self, want_kind: &str) -> (usize, usize) {
        let events = self.tap.events();
        let mut n = 0;
        let mut chunks = 0;
        for (e, btm) in self.tap.requests() {
            let blocks = match &btm {
                Btm::FetchShuffleBlocks {
                    app,
                    maps,
                    reduces,
                    batch,
                    ..
                } if want_kind == "FetchShuffleBlocks" => {
                    if *app != self.app || maps.len() != reduces.len() {
                        self.fail(&format!("malformed FetchShuffleBlocks {btm:?}"));
                    }
                    if *batch {
                        maps.len()
                    } else {
                        reduces.iter().map(Vec::len).sum()
                    }
                }
                Btm::OpenBlocks { app, blocks, .. } if want_kind == "OpenBlocks" => {
                    if *app != self.app {
                        self.fail(&format!("OpenBlocks for another app {btm:?}"));
                    }
                    blocks.len()
                }
                Btm::OpenBlocks { .. } | Btm::FetchShuffleBlocks { .. } => {
                    self.fail(&format!("expected only {want_kind} requests, saw {btm:?}"))
                }
                _ => continue,
            };
            let body = self
                .response_body(&e)
                .unwrap_or_else(|| self.fail(&format!("{btm:?} not answered")));
            if body.len() != 13 || body[0] != 3 {
                self.fail(&format!(
                    "{btm:?} answered with {body:?}, want a 13-byte StreamHandle (type 3)"
                ));
            }
            let stream = i64::from_be_bytes(body[1..9].try_into().unwrap_or([0; 8]));
            let num_chunks = i32::from_be_bytes(body[9..13].try_into().unwrap_or([0; 4]));
            if usize::try_from(num_chunks).ok() != Some(blocks) {
                self.fail(&format!(
                    "StreamHandle numChunks={num_chunks} for {blocks} blocks in {btm:?}"
                ));
            }
            chunks += events
                .iter()
                .filter(|c| {
                    c.conn == e.conn
                        && matches!(c.msg, Msg::ChunkFetchSuccess { stream: s, .. } if s == stream)
                })
                .count();
            n += 1;
        }
        (n, chunks)
    }

    fn count_requests(&self, pred: impl Fn(&Btm) -> bool) -> usize {
        self.tap.requests().iter().filter(|(_, b)| pred(b)).count()
    }
}

fn first(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

fn two_executors(run: &Run) -> HashMap<String, Vec<String>> {
    let regs = run.registrations();
    let mut ids: Vec<_> = regs.keys().cloned().collect();
    ids.sort();
    if ids != ["0", "1"] {
        run.fail(&format!(
            "want executors 0 and 1 registered with the service, got {ids:?}"
        ));
    }
    regs
}

/// readHostLocalDisk=false: every shuffle block is fetched through the service, including AQE's
/// batch fetch of contiguous reduce ranges.
#[test]
fn spark_jobs_fetch_every_block_through_the_service() {
    croupier_testkit::require_venv!();
    let run = run_variant("fetch");
    run.checks(JOB_CHECKS);
    run.assert_clean();
    two_executors(&run);
    let (requests, chunks) = run.fetches("FetchShuffleBlocks");
    let batch = run.count_requests(|b| matches!(b, Btm::FetchShuffleBlocks { batch: true, .. }));
    let single = run.count_requests(|b| matches!(b, Btm::FetchShuffleBlocks { batch: false, .. }));
    if requests < 4 || chunks < requests || batch == 0 || single == 0 {
        run.fail(&format!(
            "too little traffic through the service: {requests} fetch requests ({batch} batch, {single} single), {chunks} chunks"
        ));
    }
    if run.count_requests(|b| matches!(b, Btm::GetLocalDirs { .. })) != 0 {
        run.fail("host-local reads were off, yet executors asked for local dirs");
    }
}

/// Spark's production default (readHostLocalDisk=true; local-cluster mode turns it off unless set,
/// so jobs.py sets it): executors on one host ask the service for each other's local dirs and read
/// the files directly; the answer must be exactly what was registered.
#[test]
fn spark_jobs_host_local_dirs_from_the_service() {
    croupier_testkit::require_venv!();
    let run = run_variant("hostlocal");
    run.checks(JOB_CHECKS);
    run.assert_clean();
    let regs = two_executors(&run);
    let mut asked = 0;
    for (e, btm) in run.tap.requests() {
        let Btm::GetLocalDirs { app, execs } = &btm else {
            continue;
        };
        asked += 1;
        if *app != run.app {
            run.fail(&format!(
                "GetLocalDirsForExecutors for another app: {btm:?}"
            ));
        }
        let body = run
            .response_body(&e)
            .unwrap_or_else(|| run.fail(&format!("{btm:?} got no RpcResponse")));
        let want = local_dirs_message(execs, &regs);
        if body != want {
            run.fail(&format!(
                "GetLocalDirsForExecutors {execs:?} answered {body:?}, want LocalDirsForExecutors {want:?} (registered {regs:?})"
            ));
        }
    }
    if asked == 0 {
        run.fail("no GetLocalDirsForExecutors reached the service");
    }
}

/// The LocalDirsForExecutors (type 11) body the service must send for `execs`.
fn local_dirs_message(execs: &[String], regs: &HashMap<String, Vec<String>>) -> Vec<u8> {
    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&(s.len() as i32).to_be_bytes());
        out.extend_from_slice(s.as_bytes());
    }
    let mut out = vec![11u8];
    out.extend_from_slice(&(execs.len() as i32).to_be_bytes());
    for e in execs {
        string(&mut out, e);
    }
    out.extend_from_slice(&(execs.len() as i32).to_be_bytes());
    for e in execs {
        out.extend_from_slice(&(regs.get(e).map_or(0, Vec::len) as i32).to_be_bytes());
    }
    let all: Vec<&String> = execs
        .iter()
        .flat_map(|e| regs.get(e).into_iter().flatten())
        .collect();
    out.extend_from_slice(&(all.len() as i32).to_be_bytes());
    for d in all {
        string(&mut out, d);
    }
    out
}

/// spark.shuffle.useOldFetchProtocol=true: OpenBlocks with map indices, no batching.
#[test]
fn spark_jobs_old_fetch_protocol_open_blocks() {
    croupier_testkit::require_venv!();
    let run = run_variant("oldproto");
    run.checks(JOB_CHECKS);
    run.assert_clean();
    two_executors(&run);
    let (requests, chunks) = run.fetches("OpenBlocks");
    if requests < 4 || chunks < requests {
        run.fail(&format!(
            "too little OpenBlocks traffic: {requests} requests, {chunks} chunks"
        ));
    }
}

/// Dynamic allocation: the executors that wrote the map output are idle-killed; the next job's
/// new executors fetch that output from the service (Spark skips the map stage).
#[test]
fn spark_jobs_dynamic_allocation_reads_dead_executors_output() {
    croupier_testkit::require_venv!();
    let run = run_variant("dynalloc");
    run.checks(&[
        "dynalloc_first_count ok",
        "dynalloc_idle_executors_removed ok",
        "dynalloc_collect_after_idle ok",
        "dynalloc_new_executors ok",
        "done ok",
    ]);
    run.assert_clean();
    let regs = run.registrations();
    let old: HashSet<String> = run
        .py
        .info("executors_before_idle")
        .unwrap_or_default()
        .split(',')
        .map(str::to_string)
        .collect();
    let requests = run.tap.requests();
    let first_new_registration = requests
        .iter()
        .find(|(_, b)| matches!(b, Btm::RegisterExecutor { exec, .. } if !old.contains(exec)))
        .map(|(e, _)| e.seq)
        .unwrap_or_else(|| {
            run.fail(&format!(
                "no new executor registered after the old ones {old:?} died ({regs:?})"
            ))
        });
    let from_dead = requests
        .iter()
        .filter(|(e, b)| {
            e.seq > first_new_registration
                && matches!(b, Btm::FetchShuffleBlocks { exec, .. } if old.contains(exec))
        })
        .count();
    if from_dead == 0 {
        run.fail(&format!(
            "no fetch of the dead executors' ({old:?}) output after new executors registered"
        ));
    }
    let (fetches, chunks) = run.fetches("FetchShuffleBlocks");
    assert!(
        fetches >= from_dead && chunks >= from_dead,
        "{fetches} fetches, {chunks} chunks"
    );
}
