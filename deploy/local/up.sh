#!/usr/bin/env bash
# README command (a): brings up the whole system locally — installs what is missing, starts
# Kafka (tansu) and ClickHouse, builds and starts every service (ingest, enricher, correlator,
# writer, export, query-api) in the background — then runs the demo: a realistic stream of activity
# through the native ingest API, ending in ClickHouse, with a count and sample queries.
# Stop everything with deploy/local/stack-down.sh.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
"$AA_ROOT/deploy/local/stack-up.sh" --no-migrate
log "building the services"
(cd "$AA_ROOT" && cargo build -q --bins)
mkdir -p "$AA_STATE/logs" "$AA_STATE/run"
export AA_INGEST__KAFKA__BROKERS="$AA_BROKERS" AA_ENRICHER__KAFKA__BROKERS="$AA_BROKERS" \
  AA_CORRELATOR__KAFKA__BROKERS="$AA_BROKERS" AA_WRITER__KAFKA__BROKERS="$AA_BROKERS" \
  AA_WRITER__CLICKHOUSE__URL="$AA_CH_URL" AA_QUERY__CLICKHOUSE__URL="$AA_CH_URL" \
  AA_EXPORT__KAFKA__BROKERS="$AA_BROKERS"
# One local broker: the export topics get the local topics' shape, not production replication.
export AA_EXPORT__TOPIC_SETUP__PARTITIONS=4 AA_EXPORT__TOPIC_SETUP__REPLICATION=1 \
  AA_EXPORT__TOPIC_SETUP__MIN_INSYNC_REPLICAS=1
export AA_INGEST__TOKENS_FILE="$AA_ROOT/deploy/local/tokens.toml"
export AA_QUERY__TOKENS_FILE="$AA_ROOT/deploy/local/query-tokens.toml"
export AA_INGEST__KAFKA__INSTANCE_ID=local-ingest AA_ENRICHER__KAFKA__INSTANCE_ID=local-enricher \
  AA_CORRELATOR__KAFKA__INSTANCE_ID=local-correlator AA_WRITER__KAFKA__INSTANCE_ID=local-writer \
  AA_EXPORT__KAFKA__INSTANCE_ID=local-export
start() {
  local name="$1" bin="$2" port="$3" pidfile="$AA_STATE/run/$1.pid"
  if [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    log "$name already running"
  else
    nohup "$CARGO_TARGET_DIR/debug/$bin" >>"$AA_STATE/logs/$name.log" 2>&1 &
    echo $! >"$pidfile"
  fi
  wait_for "$name to be ready" 60 curl -fsS "http://127.0.0.1:$port/readyz" \
    || { tail -20 "$AA_STATE/logs/$name.log" >&2; exit 1; }
}
# The writer applies the ClickHouse migrations before it reports ready.
start writer activity-audit-writer 9459
start correlator activity-audit-correlator 9449
start export activity-audit-export 9469
start enricher activity-audit-enricher 9439
start ingest activity-audit-ingest 9419
start query-api activity-audit-query-api 9429
log "services up: ingest http://127.0.0.1:9410 (gRPC 9411), query-api http://127.0.0.1:9420 (logs in $AA_STATE/logs)"
"$CARGO_TARGET_DIR/debug/aa-demo" --ingest http://127.0.0.1:9410 --token local-dev-token \
  --query-api http://127.0.0.1:9420 --query-token local-query-token --clickhouse "$AA_CH_URL" "$@"
# The same events went to the SIEM export topics (activity.export.ocsf.v1, activity.export.ecs.v1).
curl -fsS http://127.0.0.1:9469/metrics | grep '^aa_export_records_total' \
  | sed 's/^/[activity-audit] SIEM export records: /' >&2 || true
