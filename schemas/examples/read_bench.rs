//! Decoding one topic line, per line: serde (sonic-rs, the baseline) against
//! `schemas::json::read_event`, into an owned event and into a sink that keeps nothing
//! (what a borrowing reader such as the writer's pays).
//! `cargo run --release -p schemas --example read_bench`

use schemas::ActivityEvent;
use std::hint::black_box;
use std::time::{Duration, Instant};

/// Counts fields and drops their values (strings stay borrowed).
#[derive(Default)]
struct Count(usize);

impl<'a> schemas::json::Fields<'a> for Count {
    fn set(&mut self, _: schemas::json::Field, v: schemas::json::Value<'a>) -> Option<()> {
        self.0 += 1;
        black_box(&v);
        Some(())
    }
}

const LINE: &[u8] = br#"{"id":"3f9a0c4e2b1d8e7f6a5b4c3d2e1f0a9b","type":"command","source":"falco","timestamp":1764000000123456789,"receivedTimestamp":1764000000123456790,"tenant":"acme","traceId":"9b8a7c6d5e4f3a2b1c0d9e8f7a6b5c4d","traceConfidence":1.0,"traceLink":"exec-root: argv0+tty+time","revision":1048577,"hostname":"ip-10-0-3-17.eu-west-1.compute.internal","containerId":"4d2c8b1f0e9a7c6d5b4a3f2e1d0c9b8a7f6e5d4c3b2a19081726354453627180","container.name":"web","container.image":"registry.example.com/shop/web:1.42.0","kubernetes.cluster.name":"prod-eu","kubernetes.namespace.name":"shop","kubernetes.workload.kind":"Deployment","kubernetes.workload.name":"web","kubernetes.pod.name":"web-7d9f8c6b5-x2x9k","kubernetes.node.name":"ip-10-0-3-17.eu-west-1.compute.internal","kubernetes.pod.labels":["app=web","tier=frontend"],"kubernetes.namespace.labels":["team=shop"],"enrichment":"api","comm":"bash","cmdline":"bash -c \"curl -s http://10.0.0.5:8080/health\"","exe":"/usr/bin/bash","cwd":"/app","pid":4242,"ppid":4200,"pcomm":"sh","uid":0,"username":"root","tty":34816,"loginShellId":4200,"loginShellDistance":1,"processStartTime":1764000000100000000,"execId":"aXAtMTAtMC0zLTE3OjE3NjQwMDAwMDAxMDAwMDAwMDA6NDI0Mg==","parentExecId":"aXAtMTAtMC0zLTE3OjE3NjQwMDAwMDAwOTAwMDAwMDA6NDIwMA==","inInitTree":false}"#;

fn time<T>(n: u32, decode: impl Fn(&[u8]) -> T) -> f64 {
    let t = Instant::now();
    for _ in 0..n {
        black_box(decode(black_box(LINE)));
    }
    let d: Duration = t.elapsed();
    d.as_nanos() as f64 / n as f64
}

fn main() {
    let n = 1_000_000;
    for round in 0..3 {
        let serde = time(n, |l| sonic_rs::from_slice::<ActivityEvent>(l).unwrap());
        let owned = time(n, |l| {
            schemas::json::read_event::<ActivityEvent>(l).unwrap()
        });
        let borrowed = time(n, |l| schemas::json::read_event::<Count>(l).unwrap().0);
        println!(
            "round {round}: {} B line: owned event: serde (sonic-rs) {serde:.0} ns, read_event {owned:.0} ns ({:.2}x); borrowed, kept nothing: read_event {borrowed:.0} ns",
            LINE.len(),
            serde / owned
        );
    }
}
