//! gRPC code for the `Query` service from `schemas/proto/activity_audit.proto` (protoc from
//! the distribution's `protobuf-compiler`, installed by `deploy/local/install.sh`).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "../schemas/proto/activity_audit.proto";
    println!("cargo:rerun-if-changed={proto}");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_protos(&[proto], &["../schemas/proto"])?;
    Ok(())
}
