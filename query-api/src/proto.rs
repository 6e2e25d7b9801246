//! Generated gRPC types and the `Query` service of `activity_audit.v1`.
#![allow(clippy::all, clippy::pedantic, missing_docs)]
tonic::include_proto!("activity_audit.v1");
