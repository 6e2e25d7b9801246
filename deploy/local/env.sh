# Shared settings of the local stack scripts (sourced, not run).
# Everything the stack writes lives under $AA_STATE (default: <repo>/.state); built tools are
# cached under $AA_CACHE (default: ~/.cache/activity-audit) so they are built once per machine.
set -euo pipefail
AA_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
AA_STATE="${AA_STATE:-$AA_ROOT/.state}"
AA_CACHE="${AA_CACHE:-$HOME/.cache/activity-audit}"
TANSU_VERSION=0.6.0
TANSU_BIN="$AA_CACHE/tansu-$TANSU_VERSION/bin/tansu"
# SIEM schema validators (tests/siem/): a venv with tests/siem/requirements.txt and the ECS
# field definitions; bump AA_SIEM_VERSION when either changes.
AA_ECS_NPM_VERSION=8.11.5
AA_SIEM_VERSION=1
AA_SIEM="$AA_CACHE/siem-validators"
AA_KAFKA_PORT="${AA_KAFKA_PORT:-9092}"
AA_CH_HTTP_PORT="${AA_CH_HTTP_PORT:-8123}"
AA_CH_TCP_PORT="${AA_CH_TCP_PORT:-9000}"
AA_BROKERS="127.0.0.1:$AA_KAFKA_PORT"
AA_CH_URL="http://127.0.0.1:$AA_CH_HTTP_PORT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$AA_CACHE/target}"
# Incremental caches of a debug build of the workspace reach tens of GB and only speed up
# rebuilds after small edits; the scripts build from clean checkouts.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
export PATH="$HOME/.cargo/bin:$PATH"

log() { printf '\033[1m[activity-audit]\033[0m %s\n' "$*" >&2; }

# wait_for DESCRIPTION SECONDS COMMAND...: retries COMMAND until it succeeds.
wait_for() {
  local what="$1" secs="$2"; shift 2
  local i
  for ((i = 0; i < secs * 5; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  log "timed out after ${secs}s waiting for $what"
  return 1
}

ch_ping() { curl -fs "$AA_CH_URL/ping" >/dev/null 2>&1; }
kafka_ping() { (exec 3<>"/dev/tcp/127.0.0.1/$AA_KAFKA_PORT") 2>/dev/null; }
