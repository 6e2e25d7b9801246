//! Property tests of the parsers: any input, a clear outcome, never a panic. Run with
//! `cargo test -p ingest fuzz` (set `PROPTEST_CASES=100000` for a longer campaign).

use crate::sources::{Outcome, falco, k8s_audit, tetragon};
use proptest::prelude::*;

/// JSON-shaped noise: objects with the keys our parsers look at, values of every type.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(serde_json::Value::from),
        ".{0,40}".prop_map(serde_json::Value::from),
        Just(serde_json::Value::from("2024-05-07T18:54:19.341081180Z")),
    ];
    let keys = prop::sample::select(vec![
        "kind",
        "apiVersion",
        "items",
        "verb",
        "objectRef",
        "resource",
        "subresource",
        "requestURI",
        "stage",
        "auditID",
        "user",
        "sourceIPs",
        "requestReceivedTimestamp",
        "stageTimestamp",
        "records",
        "properties",
        "log",
        "protoPayload",
        "methodName",
        "resourceName",
        "timestamp",
        "time",
        "output_fields",
        "evt.type",
        "proc.name",
        "proc.tty",
        "fd.sip",
        "fd.name",
        "source",
        "process_exec",
        "process_kprobe",
        "process",
        "parent",
        "function_name",
        "args",
        "sock_arg",
        "file_arg",
        "path",
        "binary",
        "pod",
        "node_name",
    ]);
    leaf.prop_recursive(4, 64, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            prop::collection::btree_map(keys.clone().prop_map(str::to_string), inner, 0..8)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

fn check(outcomes: &[Outcome]) {
    for o in outcomes {
        if let Outcome::Rejected(m) = o {
            assert!(!m.is_empty(), "a rejection says why");
        }
    }
}

proptest! {
    #[test]
    fn fuzz_parsers_never_panic_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let results = [k8s_audit::parse(&bytes), falco::parse(&bytes, true), tetragon::parse(&bytes, true), crate::native::parse(&bytes, 1 << 20)];
        // An Err is a clean whole-body error (e.g. empty or malformed array): fine too.
        for o in results.into_iter().flatten() {
            check(&o);
        }
    }

    #[test]
    fn fuzz_parsers_never_panic_on_json(v in json_value()) {
        let bytes = serde_json::to_vec(&v).unwrap();
        let results = [k8s_audit::parse(&bytes), falco::parse(&bytes, false), tetragon::parse(&bytes, false), crate::native::parse(&bytes, 1 << 20)];
        for o in results.into_iter().flatten() {
            check(&o);
        }
    }

    #[test]
    fn fuzz_audit_uris(uri in "/api/v1/namespaces/[a-z]{1,5}/pods/[a-z]{1,5}/exec\\?([a-z]{1,8}=[^&#]{0,8}(&|\\\\u0026)?){0,6}") {
        let ev = serde_json::json!({"kind":"Event","verb":"create","requestURI":uri,"objectRef":{"resource":"pods","subresource":"exec"},"requestReceivedTimestamp":"2024-01-01T00:00:00Z"});
        let out = k8s_audit::parse(ev.to_string().as_bytes()).unwrap();
        prop_assert!(matches!(out[0], Outcome::Activity(..)));
    }
}
