//! The man pages installed by the packages (`packaging/man/*.1`): the binaries' pages are
//! generated from the same clap definitions as their `--help` and must be current; every
//! page, the hand-written one of `start-mesos-shuffle-service` included, must render.
//!
//! After changing a binary's help: `CROUPIER_BLESS=1 cargo test -p croupier --test man_pages`.

use std::path::{Path, PathBuf};
use std::process::Command;

use clap::CommandFactory;

fn man_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("man")
}

/// Every generated page: file name and definition. The version is the crate's (no git
/// revision), so the pages change only when the definitions or the version do.
fn generated() -> Vec<(&'static str, clap::Command)> {
    let v = croupier_ops::build_info::VERSION;
    vec![
        (
            "croupier-executor.1",
            croupier_executor::config::command().version(v),
        ),
        (
            "croupier-shuffle-service.1",
            croupier_shuffle_service::Cli::command().version(v),
        ),
        (
            "croupier-local.1",
            croupier_testkit::local::command().version(v),
        ),
    ]
}

#[test]
fn generated_pages_are_current() {
    let bless = std::env::var_os("CROUPIER_BLESS").is_some_and(|v| v == "1");
    let mut stale = Vec::new();
    for (name, cmd) in generated() {
        let page = croupier_ops::man::render(cmd).expect("render the man page");
        let path = man_dir().join(name);
        if bless {
            std::fs::write(&path, &page).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            continue;
        }
        match std::fs::read(&path) {
            Ok(committed) if committed == page => {}
            _ => stale.push(path.display().to_string()),
        }
    }
    assert!(
        stale.is_empty(),
        "{stale:?} differ from the binaries' --help definitions: run \
         CROUPIER_BLESS=1 cargo test -p croupier --test man_pages and commit the result"
    );
}

fn have(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn every_page_renders() {
    let mut pages: Vec<PathBuf> = std::fs::read_dir(man_dir())
        .expect("packaging/man")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "1"))
        .collect();
    pages.sort();
    let names: Vec<String> = pages
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    assert_eq!(
        names,
        [
            "croupier-executor.1",
            "croupier-local.1",
            "croupier-shuffle-service.1",
            "start-mesos-shuffle-service.1",
        ]
    );
    for page in &pages {
        let roff = std::fs::read_to_string(page).expect("read the page");
        // Structure, whatever is installed.
        for section in [".TH ", ".SH NAME", ".SH SYNOPSIS", ".SH DESCRIPTION"] {
            assert!(
                roff.lines().any(|l| l.starts_with(section)),
                "{}: no {section}",
                page.display()
            );
        }
        // Rendering: groff with every warning on, else man-db's man -l.
        let rendered = if have("groff") {
            let out = Command::new("groff")
                .args(["-man", "-Tutf8", "-ww"])
                .arg(page)
                .output()
                .expect("run groff");
            let warnings = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success() && warnings.trim().is_empty(),
                "{}: groff warns:\n{warnings}",
                page.display()
            );
            Some(out.stdout)
        } else if have("man") {
            let out = Command::new("man")
                .arg("-l")
                .arg(page)
                .env("MANPAGER", "cat")
                .env("MANWIDTH", "80")
                .output()
                .expect("run man -l");
            assert!(out.status.success(), "{}: {out:?}", page.display());
            Some(out.stdout)
        } else {
            eprintln!("neither groff nor man is installed: checked the structure only");
            None
        };
        if let Some(text) = rendered {
            let text = String::from_utf8_lossy(&text);
            // Bold via overstrike in utf8 output: drop the backspaces to read the words.
            let plain: String = {
                let mut s = String::new();
                for ch in text.chars() {
                    if ch == '\u{8}' {
                        s.pop();
                    } else {
                        s.push(ch);
                    }
                }
                s
            };
            let stem = page
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            assert!(
                plain.contains("NAME") && plain.contains("SYNOPSIS") && plain.contains(&stem),
                "{}: rendered text lacks NAME/SYNOPSIS/{stem}:\n{plain}",
                page.display()
            );
        }
    }
}
