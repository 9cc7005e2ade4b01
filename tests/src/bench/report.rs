//! The side-by-side table. Input: the `result …`, `startup …`, `rss …` and `job …` lines written
//! by the other subcommands and scripts (one `key=value` record per line); output: one row per
//! matrix cell with every server's numbers and the ratios, the real-job row, then the `summary:`
//! line. A `result` with `tag=T` is its own cell, shown with mode `<mode>+T` (`+pinned`: client
//! and server on different cores; `+cold`: page cache dropped before each round).

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Server labels in column order: ours, Spark's JVM service, the raw sendfile limit.
pub const SERVERS: [&str; 3] = ["ours", "java", "raw"];

/// The cells the summary ratios are read from.
pub const SMALL_CELL: (u64, u64, &str) = (32 << 10, 64, "fetch");
pub const LARGE_CELL: (u64, u64, &str) = (8 << 20, 16, "fetch");
pub const P99_CELL: (u64, u64, &str) = (32 << 10, 64, "fetch");
pub const COLD_CELL: (u64, u64, &str) = (32 << 10, 16, "fetch+cold");

/// One parsed record.
#[derive(Debug, Clone)]
pub struct Record {
    pub kind: String,
    pub fields: BTreeMap<String, String>,
}

impl Record {
    pub fn parse(line: &str) -> Option<Record> {
        let mut it = line.split_whitespace();
        let kind = it.next()?.to_owned();
        let fields = it
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Some(Record { kind, fields })
    }
    pub fn get(&self, k: &str) -> Option<&str> {
        self.fields.get(k).map(String::as_str)
    }
    pub fn num(&self, k: &str) -> Option<f64> {
        self.get(k)?.parse().ok()
    }
}

type Cell = (u64, u64, String);

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

fn fmt(v: Option<f64>, prec: usize) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.prec$}"))
}

fn size_name(b: u64) -> String {
    if b >= 1 << 20 && b.is_multiple_of(1 << 20) {
        format!("{}MiB", b >> 20)
    } else if b >= 1 << 10 && b.is_multiple_of(1 << 10) {
        format!("{}KiB", b >> 10)
    } else {
        format!("{b}B")
    }
}

/// Merges the `result` records of one (server, cell) measured in several interleaved rounds:
/// medians of rates and latency quantiles, sums of counts and CPU seconds, max of memory.
fn merge(rs: &[&Record]) -> Record {
    let mut fields = rs[0].fields.clone();
    let keys: Vec<String> = fields.keys().cloned().collect();
    for k in keys {
        let vals: Vec<f64> = rs.iter().filter_map(|r| r.num(&k)).collect();
        if vals.len() != rs.len()
            || matches!(
                k.as_str(),
                "block" | "conns" | "shuffle" | "blocks_per_fetch"
            )
        {
            continue;
        }
        let v = match k.as_str() {
            "fetches" | "blocks" | "bytes" | "verified_bytes" | "server_cpu_s" | "repeats" => {
                vals.iter().sum()
            }
            "server_rss_peak_mb" | "server_hwm_mb" => vals.iter().copied().fold(f64::MIN, f64::max),
            _ => median(vals),
        };
        fields.insert(k, format!("{v}"));
    }
    Record {
        kind: rs[0].kind.clone(),
        fields,
    }
}

/// Median (mean of the two middle values for an even count).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Renders the markdown table and the summary line from all records.
pub fn render(records: &[Record]) -> String {
    let mut raw_cells: BTreeMap<Cell, BTreeMap<String, Vec<&Record>>> = BTreeMap::new();
    let mut startup: BTreeMap<String, f64> = BTreeMap::new();
    let mut rss: BTreeMap<String, (Option<f64>, Option<f64>)> = BTreeMap::new();
    // Real-job reduce-stage wall times (ms) and fetch-wait sums, per server.
    let mut jobs: BTreeMap<String, (Vec<f64>, Vec<f64>)> = BTreeMap::new();
    for r in records {
        let Some(server) = r.get("server") else {
            continue;
        };
        match r.kind.as_str() {
            "result" => {
                let (Some(block), Some(conns), Some(mode)) =
                    (r.num("block"), r.num("conns"), r.get("mode"))
                else {
                    continue;
                };
                let mode = match r.get("tag") {
                    Some(t) => format!("{mode}+{t}"),
                    None => mode.to_owned(),
                };
                raw_cells
                    .entry((block as u64, conns as u64, mode))
                    .or_default()
                    .entry(server.to_owned())
                    .or_default()
                    .push(r);
            }
            "startup" => {
                if let Some(ms) = r.num("ms") {
                    startup.insert(server.to_owned(), ms);
                }
            }
            "rss" => {
                rss.insert(server.to_owned(), (r.num("idle_mb"), r.num("load_mb")));
            }
            "job" => {
                if let Some(ms) = r.num("reduce_ms") {
                    let e = jobs.entry(server.to_owned()).or_default();
                    e.0.push(ms);
                    e.1.extend(r.num("fetch_wait_ms"));
                }
            }
            _ => {}
        }
    }
    let cells: BTreeMap<Cell, BTreeMap<String, Record>> = raw_cells
        .into_iter()
        .map(|(c, by)| (c, by.into_iter().map(|(s, rs)| (s, merge(&rs))).collect()))
        .collect();
    let get = |cell: (u64, u64, &str), server: &str, key: &str| -> Option<f64> {
        cells
            .get(&(cell.0, cell.1, cell.2.to_owned()))?
            .get(server)?
            .num(key)
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| block | conns | mode | ours blocks/s | java blocks/s | raw blocks/s | ours GB/s | java GB/s | raw GB/s | ours p50/p99/p999 ms | java p50/p99/p999 ms | ours CPU µs/block | java CPU µs/block | blocks/s ours/java | GB/s ours/raw | p99 ours/java |"
    );
    let _ = writeln!(
        out,
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---|---|---:|---:|---:|---:|---:|"
    );
    for ((block, conns, mode), by) in &cells {
        let n = |s: &str, k: &str| by.get(s).and_then(|r| r.num(k));
        let cpu_per_block = |s: &str| ratio(n(s, "server_cpu_s").map(|c| c * 1e6), n(s, "blocks"));
        let lat = |s: &str| {
            by.get(s).map_or_else(
                || "-".to_owned(),
                |r| {
                    format!(
                        "{}/{}/{}",
                        fmt(r.num("p50_ms"), 2),
                        fmt(r.num("p99_ms"), 2),
                        fmt(r.num("p999_ms"), 2)
                    )
                },
            )
        };
        let _ = writeln!(
            out,
            "| {} | {conns} | {mode} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            size_name(*block),
            fmt(n("ours", "blocks_per_s"), 0),
            fmt(n("java", "blocks_per_s"), 0),
            fmt(n("raw", "blocks_per_s"), 0),
            fmt(n("ours", "gb_per_s"), 3),
            fmt(n("java", "gb_per_s"), 3),
            fmt(n("raw", "gb_per_s"), 3),
            lat("ours"),
            lat("java"),
            fmt(cpu_per_block("ours"), 1),
            fmt(cpu_per_block("java"), 1),
            fmt(ratio(n("ours", "blocks_per_s"), n("java", "blocks_per_s")), 2),
            fmt(ratio(n("ours", "gb_per_s"), n("raw", "gb_per_s")), 2),
            fmt(ratio(n("ours", "p99_ms"), n("java", "p99_ms")), 2),
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "| server | start-up ms (median) | idle RSS MB | peak RSS under load MB |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|");
    for s in SERVERS {
        let (idle, load) = rss.get(s).copied().unwrap_or((None, None));
        let _ = writeln!(
            out,
            "| {s} | {} | {} | {} |",
            fmt(startup.get(s).copied(), 1),
            fmt(idle, 1),
            fmt(load, 1)
        );
    }
    let _ = writeln!(out);
    let job_med = |s: &str| jobs.get(s).map(|j| median(j.0.clone()));
    if !jobs.is_empty() {
        let _ = writeln!(
            out,
            "| real Spark job | jobs | reduce stage ms (median) | fetch wait ms, sum over tasks (median) |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|");
        for s in SERVERS {
            let Some((ms, wait)) = jobs.get(s) else {
                continue;
            };
            let _ = writeln!(
                out,
                "| {s} | {} | {:.0} | {} |",
                ms.len(),
                median(ms.clone()),
                fmt((!wait.is_empty()).then(|| median(wait.clone())), 0)
            );
        }
        let _ = writeln!(out);
    }
    let rss_of = |s: &str| rss.get(s).and_then(|x| x.1);
    let _ = writeln!(
        out,
        "summary: small_blocks_ratio={} large_blocks_ratio={} sendfile_fraction={} p99_ratio={} rss_ratio={} startup_ms={} cold_ratio={} job_ratio={} raw_small_fraction={}",
        fmt(ratio(get(SMALL_CELL, "ours", "blocks_per_s"), get(SMALL_CELL, "java", "blocks_per_s")), 2),
        fmt(ratio(get(LARGE_CELL, "ours", "gb_per_s"), get(LARGE_CELL, "java", "gb_per_s")), 2),
        fmt(ratio(get(LARGE_CELL, "ours", "gb_per_s"), get(LARGE_CELL, "raw", "gb_per_s")), 2),
        fmt(ratio(get(P99_CELL, "ours", "p99_ms"), get(P99_CELL, "java", "p99_ms")), 2),
        fmt(ratio(rss_of("ours"), rss_of("java")), 3),
        fmt(startup.get("ours").copied(), 1),
        fmt(ratio(get(COLD_CELL, "ours", "blocks_per_s"), get(COLD_CELL, "java", "blocks_per_s")), 2),
        fmt(ratio(job_med("ours"), job_med("java")), 2),
        fmt(ratio(get(SMALL_CELL, "ours", "blocks_per_s"), get(SMALL_CELL, "raw", "blocks_per_s")), 2),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_and_summary() {
        let lines = [
            "result server=ours block=32768 conns=64 mode=fetch blocks_per_s=3000 gb_per_s=0.1 p50_ms=1 p99_ms=2 p999_ms=3 server_cpu_s=1 blocks=100000",
            "result server=ours block=32768 conns=64 mode=fetch blocks_per_s=9000 gb_per_s=0.1 p50_ms=1 p99_ms=2 p999_ms=3 server_cpu_s=1 blocks=100000",
            "result server=ours block=32768 conns=64 mode=fetch blocks_per_s=1000 gb_per_s=0.1 p50_ms=1 p99_ms=2 p999_ms=3 server_cpu_s=1 blocks=100000",
            "result server=java block=32768 conns=64 mode=fetch blocks_per_s=1000 gb_per_s=0.03 p50_ms=2 p99_ms=8 p999_ms=9",
            "result server=ours block=8388608 conns=16 mode=fetch blocks_per_s=200 gb_per_s=1.8",
            "result server=raw block=8388608 conns=16 mode=fetch blocks_per_s=220 gb_per_s=2.0",
            "startup server=ours ms=4.5",
            "rss server=ours idle_mb=3 load_mb=10",
            "rss server=java idle_mb=150 load_mb=200",
            "result server=ours block=32768 conns=16 mode=fetch tag=cold blocks_per_s=500 gb_per_s=0.01",
            "result server=java block=32768 conns=16 mode=fetch tag=cold blocks_per_s=250 gb_per_s=0.01",
            "result server=raw block=32768 conns=64 mode=fetch blocks_per_s=4000 gb_per_s=0.1",
            "job server=ours n=0 reduce_ms=300 fetch_wait_ms=10",
            "job server=ours n=1 reduce_ms=500 fetch_wait_ms=20",
            "job server=java n=0 reduce_ms=1000 fetch_wait_ms=90",
        ];
        let recs: Vec<Record> = lines.iter().filter_map(|l| Record::parse(l)).collect();
        let out = render(&recs);
        let last = out.lines().last().unwrap();
        assert_eq!(
            last,
            "summary: small_blocks_ratio=3.00 large_blocks_ratio=- sendfile_fraction=0.90 p99_ratio=0.25 rss_ratio=0.050 startup_ms=4.5 cold_ratio=2.00 job_ratio=0.40 raw_small_fraction=0.75"
        );
        assert!(
            out.contains("| 32KiB | 64 | fetch | 3000 | 1000 | 4000 |"),
            "{out}"
        );
        assert!(
            out.contains("| 32KiB | 16 | fetch+cold | 500 | 250 | - |"),
            "{out}"
        );
        assert!(out.contains("| ours | 2 | 400 | 15 |"), "{out}");
        assert!(out.contains("| 10.0 | - | 3.00 |"), "{out}");
    }
}
