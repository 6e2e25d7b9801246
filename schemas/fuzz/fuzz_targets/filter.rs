//! Any text either parses to a tree whose canonical text parses back to the same tree, or
//! fails with an error positioned inside the text.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match schemas::filter::parse(text) {
        Ok(Some(expr)) => {
            let canonical = expr.to_string();
            let back = schemas::filter::parse(&canonical).expect("canonical text parses");
            assert_eq!(back, Some(expr), "{canonical}");
        }
        Ok(None) => {}
        Err(e) => assert!(e.position <= text.chars().count()),
    }
});
