#!/usr/bin/env bash
# README command (b): the full test suite. Brings up the local stack (installing what is
# missing), checks formatting and lints, then runs every unit and integration test against the
# real broker and ClickHouse.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
"$AA_ROOT/deploy/local/stack-up.sh" --no-migrate
cd "$AA_ROOT"
rustup component add rustfmt clippy >/dev/null 2>&1 || true
log "cargo fmt --check"
cargo fmt --all --check
log "cargo clippy"
cargo clippy -q --workspace --all-targets -- -D warnings
log "cargo test"
export AA_BROKERS AA_CH_URL
cargo test --workspace --no-fail-fast -- --test-threads 2
