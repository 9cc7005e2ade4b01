//! Links the `croupier-executor` binary as a position-dependent executable on Linux, with the
//! code one command task runs first in its text.
//!
//! No PIE: a PIE's loader fills every pointer in `.data.rel.ro` and the GOT at start-up from
//! `.rela.dyn`: it reads the whole relocation table (633 KiB in the 0.1 release build) and
//! dirties every page of the relocated data (492 KiB), and neither is shared with the other
//! executors running the same binary on the agent. Linked without PIE, those relocations are
//! resolved at link time: no table to read, and the data pages are clean file pages, paged in
//! only when used and shared between executors. The cost is that the executable image itself
//! is not randomized (its libraries, heap and stacks still are). Set CROUPIER_EXECUTOR_PIE=1
//! when building to keep a PIE.
//!
//! Link order: `executor/link-order.txt` lists the functions one drop-in command task runs
//! (start-up, SUBSCRIBE, launch, supervision, exit, updates, shutdown), as
//! `bench/executor-link-order.sh` records them. An optimised build links them first in `.text`,
//! next to each other, through a linker script that describes `.text` with those input sections
//! first (rustc gives every function its own `.text.<symbol>` section) and inserts it after
//! `.eh_frame`, where LLD puts `.text` anyway; every other function follows in its usual order.
//! The code a command task runs then fills a few pages instead of touching pages all over the
//! 8 MB text, each of which the kernel maps with its 64 KiB fault-around window. The list holds
//! the exact names of the recorded builds and then the same names with their build hashes as
//! `*`, for builds of other targets or versions; names that match nothing are skipped.
//! The script is written for LLD, which merges it into its default layout: rustc's default
//! linker on x86_64-unknown-linux-gnu and Zig's (cargo-zigbuild, the packaged build). GNU ld
//! would make a second `.text`, so elsewhere the list is not used (a build warning says so).
//! CROUPIER_EXECUTOR_LINK_ORDER=<absolute path> links with another list, `none` with none. Debug
//! builds (opt-level 0) are not reordered.
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CROUPIER_EXECUTOR_PIE");
    println!("cargo:rerun-if-env-changed=CROUPIER_EXECUTOR_LINK_ORDER");
    let linux = std::env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "linux");
    if !linux {
        return;
    }
    let keep_pie = std::env::var_os("CROUPIER_EXECUTOR_PIE").is_some_and(|v| v == "1");
    if !keep_pie {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
    let Some(list) = order_list() else {
        return;
    };
    if let Err(linker) = link_with_lld() {
        let msg = format!(
            "link order list {} not used: the linker ({linker}) may not be LLD, which the \
             list's linker script needs (executor/build.rs)",
            list.display()
        );
        if std::env::var_os("CROUPIER_EXECUTOR_LINK_ORDER").is_some_and(|v| !v.is_empty()) {
            panic!("CROUPIER_EXECUTOR_LINK_ORDER: {msg}");
        }
        println!("cargo:warning={msg}");
        return;
    }
    println!("cargo:rerun-if-changed={}", list.display());
    let text = std::fs::read_to_string(&list)
        .unwrap_or_else(|e| panic!("link order list {}: {e}", list.display()));
    let script = linker_script(&text).unwrap_or_else(|e| panic!("{}: {e}", list.display()));
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let path = out.join("link-order.ld");
    if path.to_string_lossy().contains(',') {
        panic!(
            "{}: a path with ',' cannot be passed to the linker through -Wl, (set CARGO_TARGET_DIR)",
            path.display()
        );
    }
    std::fs::write(&path, script).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    println!("cargo:rustc-link-arg-bins=-Wl,-T,{}", path.display());
}

/// Makes this build link with LLD, or says which linker it uses instead: Ok with Zig's
/// (cargo-zigbuild's `zigcc-*` wrapper as the linker), or with rustc's own on
/// x86_64-unknown-linux-gnu when no other linker is asked for (then asked for explicitly, when
/// the toolchain ships it). Otherwise Err with the linker, as far as it is known.
fn link_with_lld() -> Result<(), String> {
    println!("cargo:rerun-if-env-changed=RUSTC_LINKER");
    if let Some(linker) = std::env::var_os("RUSTC_LINKER") {
        let name = Path::new(&linker)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        return if name.starts_with("zigcc-") {
            Ok(())
        } else {
            Err(linker.to_string_lossy().into_owned())
        };
    }
    let target = std::env::var("TARGET").unwrap_or_default();
    if target != "x86_64-unknown-linux-gnu" {
        return Err(format!("{target}'s default"));
    }
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    if [
        "linker-features",
        "fuse-ld",
        "linker=",
        "linker-flavor",
        "link-self-contained",
    ]
    .iter()
    .any(|f| flags.contains(f))
    {
        return Err(format!("as set by RUSTFLAGS {flags:?}"));
    }
    // rustup's rustc (1.90 and later) links with its own LLD on this target, but an older or a
    // distribution's rustc may use the system's `cc` and GNU ld. Ask for rustc's LLD
    // explicitly, as rustc itself does, when this toolchain has one.
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let sysroot = std::process::Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let gcc_ld = Path::new(&sysroot).join("lib/rustlib/x86_64-unknown-linux-gnu/bin/gcc-ld");
    if sysroot.is_empty() || !gcc_ld.join("ld.lld").exists() {
        return Err(format!(
            "the system's cc: this rustc has no LLD at {}",
            gcc_ld.display()
        ));
    }
    println!("cargo:rustc-link-arg-bins=-fuse-ld=lld");
    println!("cargo:rustc-link-arg-bins=-B{}", gcc_ld.display());
    Ok(())
}

/// The list to link with: CROUPIER_EXECUTOR_LINK_ORDER's, or `link-order.txt` beside this
/// script in an optimised build; None for `none` and for debug builds.
fn order_list() -> Option<PathBuf> {
    match std::env::var_os("CROUPIER_EXECUTOR_LINK_ORDER").filter(|v| !v.is_empty()) {
        Some(v) if v == "none" => None,
        Some(v) if !Path::new(&v).is_absolute() => panic!(
            "CROUPIER_EXECUTOR_LINK_ORDER={}: give an absolute path (cargo runs this build \
             script in executor/, not where cargo was started)",
            v.to_string_lossy()
        ),
        Some(v) => Some(Path::new(&v).canonicalize().unwrap_or_else(|e| {
            panic!("CROUPIER_EXECUTOR_LINK_ORDER={}: {e}", v.to_string_lossy())
        })),
        None => {
            let optimised = std::env::var("OPT_LEVEL").is_ok_and(|o| o != "0");
            let dir = std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it");
            optimised.then(|| Path::new(&dir).join("link-order.txt"))
        }
    }
}

/// The shortest run without `*` a listed pattern must have (the recorded patterns have 15 or
/// more). It catches a pattern cut short by mistake; a long one can still match many
/// functions (`_ZN4core3ptr13drop_in_place*` matches every drop glue), which the recorder
/// never writes.
const MIN_LITERAL: usize = 12;

/// A linker script that puts the listed functions, in the list's order, first in `.text`.
/// Each line is one symbol name, `*` standing for any run of characters (a build hash); blank
/// lines and lines starting with `#` are skipped. A symbol promoted by LTO
/// (`<name>.llvm.<digits>`) is matched too, and so is a cold function's section
/// (`.text.unlikely.<name>`: LLVM's for `#[cold]` functions, which a task also runs). A
/// pattern needs a run of [`MIN_LITERAL`] characters without `*`.
fn linker_script(list: &str) -> Result<String, String> {
    let mut script = String::from("SECTIONS {\n  .text : {\n");
    for (i, line) in list.lines().enumerate() {
        let name = line.trim();
        if name.is_empty() || name.starts_with('#') {
            continue;
        }
        // Mangled Rust names (legacy and v0) and C names use only these; anything else
        // (spaces, quotes, other glob characters) would change the script's meaning.
        if let Some(c) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '$' | '.' | '*')))
        {
            return Err(format!(
                "line {}: {c:?} in {name:?} (a symbol name, with * for a build hash)",
                i + 1
            ));
        }
        // A short pattern (`*`, `_ZN*`, `_RNvNtCs*`) would pull a large part of `.text` to
        // the front and undo the ordering. A recorded name keeps its path and function name
        // around the hash it stands for, so it always has a long run without `*`.
        let longest = name.split('*').map(str::len).max().unwrap_or(0);
        if name.contains('*') && longest < MIN_LITERAL {
            return Err(format!(
                "line {}: {name:?} matches too much: a pattern needs a run of at least \
                 {MIN_LITERAL} characters without *",
                i + 1
            ));
        }
        let _ = writeln!(
            script,
            "    *(.text.{name} .text.{name}.llvm.* .text.unlikely.{name} .text.unlikely.{name}.llvm.*)"
        );
    }
    script.push_str("  }\n} INSERT AFTER .eh_frame;\n");
    Ok(script)
}
