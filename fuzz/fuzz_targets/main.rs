//! One libFuzzer binary for every target (one link, one build): the target is chosen by the
//! CROUPIER_FUZZ_TARGET environment variable (see scripts/fuzz.sh and FUZZING.md).
#![no_main]

use std::sync::OnceLock;

static TARGET: OnceLock<fn(&[u8])> = OnceLock::new();

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let run = TARGET.get_or_init(|| {
        let name = std::env::var("CROUPIER_FUZZ_TARGET").unwrap_or_default();
        match croupier_fuzz::target(&name) {
            Some(f) => f,
            None => {
                let names: Vec<_> = croupier_fuzz::TARGETS.iter().map(|(n, _)| *n).collect();
                eprintln!(
                    "CROUPIER_FUZZ_TARGET={name:?} is not a target; one of: {}",
                    names.join(", ")
                );
                std::process::exit(2);
            }
        }
    });
    run(data);
});
