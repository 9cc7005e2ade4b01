//! Man pages from the `clap` definitions that also render `--help`, so the two never drift.

/// Renders `cmd` as a section-1 man page (roff).
pub fn render(cmd: clap::Command) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd).render(&mut out)?;
    Ok(out)
}
