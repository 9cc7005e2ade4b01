//! The CI smoke run of every fuzz target, without the coverage-instrumented build (which is
//! too slow for CI; scripts/fuzz.sh runs libFuzzer): replays each target's seed corpus
//! (`fuzz/corpus/TARGET/`) and then feeds it a bounded number of random mutations of those
//! seeds. A failing input is written to `target/fuzz-smoke/TARGET-crash` and its hex printed;
//! set CROUPIER_FUZZ_SEED to replay a run (the seed is printed).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Wall time of the mutation phase per target (the corpus replay comes on top).
const PER_TARGET: Duration = Duration::from_millis(1500);
/// And at most this many mutated inputs per target.
const MAX_RUNS: usize = 20_000;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>], input: &mut Vec<u8>) {
    const INTERESTING: [&[u8]; 8] = [
        &[0xff, 0xff, 0xff, 0xff],
        &[0x7f, 0xff, 0xff, 0xff],
        &[0x80, 0, 0, 0],
        &[0, 0, 0, 0],
        &[0xff; 8],
        &[0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        b"..",
        b"/",
    ];
    for _ in 0..1 + rng.below(4) {
        let len = input.len();
        match rng.below(7) {
            0 if len > 0 => {
                let i = rng.below(len);
                input[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                input[i] = rng.next() as u8;
            }
            2 => {
                let i = rng.below(len + 1);
                let n = 1 + rng.below(16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                input.splice(i..i, bytes);
            }
            3 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(32));
                input.drain(i..i + n);
            }
            4 => {
                let v = INTERESTING[rng.below(INTERESTING.len())];
                let i = rng.below(len + 1);
                let end = (i + v.len()).min(len);
                input.splice(i..end, v.iter().copied());
            }
            5 if !seeds.is_empty() => {
                // Splice: the tail of another seed.
                let other = &seeds[rng.below(seeds.len())];
                let i = rng.below(len + 1);
                let j = rng.below(other.len() + 1);
                input.truncate(i);
                input.extend_from_slice(&other[j..]);
            }
            _ => {
                let i = rng.below(len + 1);
                input.truncate(i);
            }
        }
    }
    input.truncate(1 << 16);
}

fn read_dir_files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| std::fs::read(e.path()).ok().map(|b| (e.path(), b)))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn check(name: &str, f: fn(&[u8]), input: &[u8], origin: &str) {
    if catch_unwind(AssertUnwindSafe(|| f(input))).is_err() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/fuzz-smoke");
        let _ = std::fs::create_dir_all(&dir);
        let file = dir.join(format!("{name}-crash"));
        let _ = std::fs::write(&file, input);
        let hex: String = input.iter().map(|b| format!("{b:02x}")).collect();
        panic!(
            "fuzz target {name} failed on {origin} (saved to {}): {hex}",
            file.display()
        );
    }
}

#[test]
fn every_target_replays_its_corpus_and_survives_mutations() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let seed = std::env::var("CROUPIER_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
                | 1
        });
    println!("CROUPIER_FUZZ_SEED={seed}");
    let mut rng = Rng(seed);
    for (name, f) in croupier_fuzz::TARGETS {
        let corpus = read_dir_files(&root.join("corpus").join(name));
        assert!(
            !corpus.is_empty(),
            "fuzz/corpus/{name}/ has no seed inputs: every target keeps a seed corpus"
        );
        for (path, bytes) in &corpus {
            check(name, *f, bytes, &path.display().to_string());
        }
        let regressions = read_dir_files(&root.join("regressions").join(name));
        for (path, bytes) in &regressions {
            check(name, *f, bytes, &path.display().to_string());
        }
        let seeds: Vec<Vec<u8>> = corpus.into_iter().map(|(_, b)| b).collect();
        let start = Instant::now();
        let mut runs = 0;
        while runs < MAX_RUNS && start.elapsed() < PER_TARGET {
            let mut input = seeds[rng.below(seeds.len())].clone();
            mutate(&mut rng, &seeds, &mut input);
            check(name, *f, &input, "a mutated seed");
            runs += 1;
        }
        println!(
            "{name}: {} seeds, {} regression inputs, {runs} mutated inputs in {:.1}s",
            seeds.len(),
            regressions.len(),
            start.elapsed().as_secs_f64()
        );
    }
}
