//! Man pages from the `clap` definitions that also render `--help`, so the two never drift.
//!
//! The options come from `clap_mangen`. The long description and the text after the options
//! are written the way `--help` shows them: paragraphs with an indented line (tables of
//! variables, lists, examples) keep their lines instead of being refilled, prose paragraphs
//! are filled, and each part headed by an upper-case word (`MODES`, `ENVIRONMENT`,
//! `SETTINGS`, `EXAMPLES`, ...) becomes a section of its own.

use std::io::Write;

/// Renders `cmd` as a section-1 man page (roff).
pub fn render(cmd: clap::Command) -> std::io::Result<Vec<u8>> {
    let mut cmd = cmd;
    cmd.build();
    let description = cmd
        .get_long_about()
        .or_else(|| cmd.get_about())
        .map(|s| s.to_string())
        .unwrap_or_default();
    let after = cmd
        .get_after_long_help()
        .or_else(|| cmd.get_after_help())
        .map(|s| s.to_string())
        .unwrap_or_default();
    let man = clap_mangen::Man::new(cmd);
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    write_sections(&mut out, "DESCRIPTION", &description)?;
    man.render_options_section(&mut out)?;
    write_sections(&mut out, "NOTES", &after)?;
    man.render_version_section(&mut out)?;
    Ok(out)
}

/// Is this line a heading: at the start of the line, an upper-case word of 3+ letters?
fn heading(line: &str) -> Option<(&str, &str)> {
    if line.starts_with(char::is_whitespace) {
        return None;
    }
    let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
    (word.len() >= 3 && word.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        .then_some((word, rest.trim()))
}

fn write_sections(out: &mut Vec<u8>, first: &str, text: &str) -> std::io::Result<()> {
    let mut sections: Vec<(String, Vec<String>)> = vec![(first.to_string(), Vec::new())];
    for line in text.lines() {
        if let Some((title, rest)) = heading(line) {
            let mut body = Vec::new();
            if !rest.is_empty() {
                body.push(rest.to_string());
            }
            sections.push((title.to_string(), body));
        } else if let Some(last) = sections.last_mut() {
            last.1.push(line.trim_end().to_string());
        }
    }
    for (title, mut body) in sections {
        while body.first().is_some_and(|l| l.is_empty()) {
            body.remove(0);
        }
        while body.last().is_some_and(|l| l.is_empty()) {
            body.pop();
        }
        if body.is_empty() {
            continue;
        }
        writeln!(out, ".SH {title}")?;
        // Prose paragraphs (no indented line) are filled; tables and lists keep their lines.
        for (i, para) in body.split(|l| l.is_empty()).enumerate() {
            if i > 0 {
                writeln!(out, ".PP")?;
            }
            let prose = para.iter().all(|l| !l.starts_with(char::is_whitespace));
            if !prose {
                writeln!(out, ".nf")?;
            }
            for line in para {
                writeln!(out, "{}", escape(line))?;
            }
            if !prose {
                writeln!(out, ".fi")?;
            }
        }
    }
    Ok(())
}

/// Text line for roff: backslashes and hyphens literal, no line read as a request.
fn escape(line: &str) -> String {
    let mut s = String::with_capacity(line.len() + 8);
    if line.starts_with('.') || line.starts_with('\'') {
        s.push_str("\\&");
    }
    for ch in line.chars() {
        match ch {
            '\\' => s.push_str("\\e"),
            '-' => s.push_str("\\-"),
            c => s.push(c),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_from_help_text() {
        let cmd = clap::Command::new("demo")
            .version("1.0")
            .about("A demo")
            .long_about("Does things.\n\nMODES\n  a - one\n  b \\ two\n")
            .after_long_help("ENVIRONMENT (set by someone)\n  X=1   the x\n.hidden\n")
            .arg(clap::Arg::new("flag").long("flag").help("A flag"));
        let page = String::from_utf8(render(cmd).unwrap()).unwrap();
        let at = |s: &str| {
            page.find(s)
                .unwrap_or_else(|| panic!("{s} missing:\n{page}"))
        };
        assert!(at(".SH NAME") < at(".SH SYNOPSIS"));
        assert!(at(".SH DESCRIPTION") < at("Does things."));
        assert!(at(".SH MODES") < at("  a \\- one"));
        assert!(page.contains("  b \\e two"));
        assert!(at(".SH OPTIONS") < at(".SH ENVIRONMENT"));
        assert!(at(".SH ENVIRONMENT") < at("(set by someone)"));
        assert!(page.contains("\n\\&.hidden\n"));
    }
}
