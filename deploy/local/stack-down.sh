#!/usr/bin/env bash
# Stops the services and the local stack started by the scripts here (data is kept in
# $AA_STATE; `--wipe` deletes it).
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
stop() {
  local name="$1" pidfile="$AA_STATE/run/$1.pid"
  [[ -f "$pidfile" ]] || return 0
  local pid; pid="$(cat "$pidfile")"
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
    log "stopped $name"
  fi
  rm -f "$pidfile"
}
for s in ingest enricher correlator export writer query-api tansu clickhouse; do stop "$s"; done
if [[ "${1:-}" == "--wipe" ]]; then rm -rf "$AA_STATE"; log "wiped $AA_STATE"; fi
