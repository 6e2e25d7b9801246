//! The JSON Schemas in `docs/analytics/` are the ones the Rust types generate: a change to the
//! event model that is not reflected in the documented contract fails here. Regenerate with
//! `AA_BLESS=1 cargo test -p schemas --test documented_schemas`.

use std::path::PathBuf;

fn check(file: &str, generated: serde_json::Value) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../docs/analytics")
        .join(file);
    let text = serde_json::to_string_pretty(&generated).unwrap() + "\n";
    if std::env::var_os("AA_BLESS").is_some() {
        std::fs::write(&path, &text).unwrap();
    }
    let documented =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        documented == text,
        "{} is not what the Rust types generate; regenerate it (AA_BLESS=1) and update the docs",
        path.display()
    );
}

#[test]
fn activity_event_schema_is_documented() {
    let schema = schemas::json_schema::activity_event();
    // the schema names every attribute users filter on
    let props = schema["properties"].as_object().unwrap();
    for a in schemas::filter::ATTRIBUTES {
        if !matches!(a.name, "name" | "namespace" | "kubernetes.deployment.name") {
            assert!(props.contains_key(a.name), "{} missing", a.name);
        }
    }
    check("activity-event.schema.json", schema);
}

#[test]
fn trace_record_schema_is_documented() {
    check(
        "trace-record.schema.json",
        schemas::json_schema::trace_record(),
    );
}
