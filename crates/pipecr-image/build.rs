//! Compiles the image schema (`proto/pipecr/image/v1/*.proto`) with protox (pure Rust, no
//! system `protoc`) and generates the prost types into `OUT_DIR`.

use std::path::Path;

const PROTOS: &[&str] = &[
    "pipecr/image/v1/inventory.proto",
    "pipecr/image/v1/data.proto",
    "pipecr/image/v1/pipe.proto",
    "pipecr/image/v1/files.proto",
    "pipecr/image/v1/tree.proto",
    "pipecr/image/v1/mm.proto",
    "pipecr/image/v1/core.proto",
    "pipecr/image/v1/stats.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    for p in PROTOS {
        println!(
            "cargo:rerun-if-changed={}",
            Path::new("proto").join(p).display()
        );
    }
    let fds = protox::compile(PROTOS, ["proto"])?;
    prost_build::Config::new()
        .type_attribute(".", "#[derive(serde::Serialize)]")
        .compile_fds(fds)?;
    Ok(())
}
