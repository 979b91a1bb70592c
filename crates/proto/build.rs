//! Compiles every `.proto` under the repository's `proto/` directory with
//! protox (no system `protoc`), generates prost messages and tonic services,
//! and writes the encoded file descriptor set for server reflection.

use std::path::{Path, PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let mut proto_files = Vec::new();
    collect_proto_files(&proto_root, &mut proto_files)?;
    proto_files.sort();
    println!("cargo:rerun-if-changed={}", proto_root.display());
    for file in &proto_files {
        println!("cargo:rerun-if-changed={}", file.display());
    }

    let descriptor_set = protox::compile(&proto_files, [&proto_root])?;

    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let encoded = prost::Message::encode_to_vec(&descriptor_set);
    std::fs::write(out_dir.join("esocial_descriptor.bin"), encoded)?;

    tonic_prost_build::configure()
        // Maps and repeated fields in deterministic order, so that encoding the
        // same request twice gives the same bytes (idempotency fingerprints).
        .btree_map(".")
        .include_file("esocial.rs")
        .emit_rerun_if_changed(false)
        .compile_fds(descriptor_set)?;
    Ok(())
}

fn collect_proto_files(directory: &Path, found: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(directory)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_proto_files(&path, found)?;
        } else if path.extension().is_some_and(|extension| extension == "proto") {
            found.push(path);
        }
    }
    Ok(())
}
