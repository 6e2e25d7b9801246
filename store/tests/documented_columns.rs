//! `docs/analytics/README.md` documents every column of `events`, with its type and attribute,
//! and no column that does not exist.

#[test]
fn every_events_column_is_documented() {
    let doc = include_str!("../../docs/analytics/README.md");
    let section = &doc[doc.find("### `events`").unwrap()..doc.find("### `traces`").unwrap()];
    let rows: Vec<&str> = section.lines().filter(|l| l.starts_with("| `")).collect();
    for c in store::columns::COLUMNS {
        let row = rows
            .iter()
            .find(|r| r.starts_with(&format!("| `{}` |", c.name)))
            .unwrap_or_else(|| panic!("column {} is not documented", c.name));
        assert!(
            row.ends_with(&format!("| `{}` |", c.attribute)),
            "{}: {row}",
            c.name
        );
        let ty = if c.ch_type == "LC" {
            "LowCardinality(String)"
        } else if matches!(c.ch_type, "TYPE" | "SOURCE") {
            "Enum8("
        } else {
            c.ch_type
        };
        assert!(row.contains(ty), "{}: {row}", c.name);
    }
    assert_eq!(
        rows.len(),
        store::columns::COLUMNS.len(),
        "documented columns that do not exist"
    );
}
