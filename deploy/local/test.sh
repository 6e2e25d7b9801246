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
out="$AA_STATE/test-output.log"
set +e
cargo test --workspace --all-targets --no-fail-fast -- --test-threads 2 2>&1 | tee "$out"
status=${PIPESTATUS[0]}
set -e
# One closing line for the whole workspace (cargo prints one per test binary).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "workspace: %d passed, %d failed\n", p, f }' "$out"
exit "$status"
