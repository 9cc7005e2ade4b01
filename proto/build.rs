//! Generates the Mesos wire types with prost-build and a vendored protoc (no system protoc
//! needed), and writes the file descriptor set used by the JSON mapping.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    std::env::set_var("PROTOC", protoc);

    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let protos = [
        "proto/mesos/v1/mesos.proto",
        "proto/mesos/v1/executor/executor.proto",
    ];
    for p in &protos {
        println!("cargo:rerun-if-changed={p}");
    }
    prost_build::Config::new()
        .enable_type_names()
        .file_descriptor_set_path(out_dir.join("mesos_descriptor.bin"))
        .compile_protos(&protos, &["proto"])?;
    Ok(())
}
