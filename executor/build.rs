//! Links the `croupier-executor` binary as a position-dependent executable on Linux.
//!
//! A PIE's loader fills every pointer in `.data.rel.ro` and the GOT at start-up from
//! `.rela.dyn`: it reads the whole relocation table (633 KiB in the 0.1 release build) and
//! dirties every page of the relocated data (492 KiB), and neither is shared with the other
//! executors running the same binary on the agent. Linked without PIE, those relocations are
//! resolved at link time: no table to read, and the data pages are clean file pages, paged in
//! only when used and shared between executors. The cost is that the executable image itself
//! is not randomized (its libraries, heap and stacks still are). Set CROUPIER_EXECUTOR_PIE=1
//! when building to keep a PIE.
//!
//! CROUPIER_EXECUTOR_LINK_ORDER=<file> links the functions listed in <file> (one symbol a line,
//! as `bench/executor-link-order.sh` writes them) first in the text, next to each other, with
//! lld's `--symbol-ordering-file` (rustc's default linker on x86_64 Linux): the code a command
//! task runs then fills a few pages instead of touching pages all over the 8 MB text, each of
//! which the kernel maps with its 64 KiB fault-around window.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CROUPIER_EXECUTOR_PIE");
    let linux = std::env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "linux");
    let keep_pie = std::env::var_os("CROUPIER_EXECUTOR_PIE").is_some_and(|v| v == "1");
    if linux && !keep_pie {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
    println!("cargo:rerun-if-env-changed=CROUPIER_EXECUTOR_LINK_ORDER");
    if let Some(order) = std::env::var_os("CROUPIER_EXECUTOR_LINK_ORDER").filter(|v| !v.is_empty())
    {
        // The linker runs elsewhere: make the path absolute (a relative one is taken from
        // executor/, where cargo runs this script).
        let order = std::path::Path::new(&order)
            .canonicalize()
            .unwrap_or_else(|e| {
                panic!(
                    "CROUPIER_EXECUTOR_LINK_ORDER={}: {e}",
                    order.to_string_lossy()
                )
            });
        // --symbol-ordering-file is lld's: rustc links with lld by default only on
        // x86_64-unknown-linux-gnu (elsewhere GNU ld would fail on the option).
        let target = std::env::var("TARGET").unwrap_or_default();
        if target != "x86_64-unknown-linux-gnu" {
            panic!(
                "CROUPIER_EXECUTOR_LINK_ORDER needs rustc's lld linker, the default only on \
                 x86_64-unknown-linux-gnu; this build targets {target}: unset it"
            );
        }
        if order.to_string_lossy().contains(',') {
            panic!(
                "CROUPIER_EXECUTOR_LINK_ORDER={}: a path with ',' cannot be passed through -Wl,",
                order.display()
            );
        }
        println!("cargo:rerun-if-changed={}", order.display());
        println!(
            "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
            order.display()
        );
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
}
