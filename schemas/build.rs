//! With the `grpc` feature: the gRPC code (`Ingest` and `Query` services, messages) from
//! `proto/activity_audit.proto`, by protoc from the distribution's `protobuf-compiler`
//! (installed by `deploy/local/install.sh`).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    #[cfg(feature = "grpc")]
    {
        let proto = "proto/activity_audit.proto";
        println!("cargo:rerun-if-changed={proto}");
        tonic_prost_build::configure()
            .build_client(true)
            .build_server(true)
            .compile_protos(&[proto], &["proto"])?;
    }
    Ok(())
}
