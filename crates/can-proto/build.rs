//! Compiles proto/ with protox (pure Rust), so building needs no system `protoc`.

use std::path::PathBuf;

// Relative to this crate. Cargo shares one compiled build script between checkouts of the
// same workspace that use the same target dir (CI's clean clone and the work tree), so
// nothing here may be baked in at compile time (`env!`): the manifest dir is read when the
// script runs, and rerun-if-changed paths stay relative, which Cargo resolves against the
// package being built.
const PROTO_DIR: &str = "../../proto";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR")?;
    let root = PathBuf::from(manifest_dir).join(PROTO_DIR);
    let files = ["can/sync/v1/sync_api.proto", "can/peer/v1/peer.proto"];
    for f in &files {
        println!("cargo:rerun-if-changed={PROTO_DIR}/{f}");
    }
    let fds = protox::compile(files, [&root])?;
    prost_build::Config::new().compile_fds(fds)?;
    Ok(())
}
