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
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CROUPIER_EXECUTOR_PIE");
    let linux = std::env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "linux");
    let keep_pie = std::env::var_os("CROUPIER_EXECUTOR_PIE").is_some_and(|v| v == "1");
    if linux && !keep_pie {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}
