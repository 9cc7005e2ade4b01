//! Locating the real interop peers installed by `scripts/setup-venv.sh`.

use std::path::PathBuf;

/// The venv holding pyspark 3.5.7, pymesos 0.3.15 and moto.
///
/// Panics with a clear instruction when `CROUPIER_VENV` is not set or does not exist: interop
/// tests must fail, never silently skip, when their peer is missing.
pub fn venv() -> PathBuf {
    let Some(v) = std::env::var_os("CROUPIER_VENV") else {
        panic!("CROUPIER_VENV is not set: run the suite with scripts/test.sh, which installs pyspark/pymesos/moto into a venv and exports it");
    };
    let p = PathBuf::from(v);
    assert!(
        p.join("bin/python").exists(),
        "CROUPIER_VENV={} has no bin/python: run scripts/setup-venv.sh",
        p.display()
    );
    p
}

/// The venv's python interpreter.
pub fn python() -> PathBuf {
    venv().join("bin/python")
}

/// `SPARK_HOME` inside the venv's pyspark package.
pub fn spark_home() -> PathBuf {
    let venv = venv();
    let lib = venv.join("lib");
    let found = std::fs::read_dir(&lib)
        .ok()
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("site-packages/pyspark"))
        .find(|p| p.join("jars").is_dir());
    match found {
        Some(p) => p,
        None => panic!(
            "no pyspark with jars/ under {}: run scripts/setup-venv.sh",
            lib.display()
        ),
    }
}
