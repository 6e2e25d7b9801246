#!/usr/bin/env bash
# Brings up the local stack, idempotently: installs what is missing, starts ClickHouse and the
# tansu broker on loopback with their data under $AA_STATE, waits until both answer, creates
# the default topics and applies the ClickHouse migrations (`--no-migrate` skips the last step,
# which needs the project built).
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
"$AA_ROOT/deploy/local/install.sh"
mkdir -p "$AA_STATE"/{clickhouse/data,clickhouse/tmp,clickhouse/user_files,clickhouse/log,tansu,run}

if ch_ping; then
  log "clickhouse already answering on $AA_CH_URL"
else
  sed -e "s|@STATE@|$AA_STATE/clickhouse|g" -e "s|@HTTP_PORT@|$AA_CH_HTTP_PORT|g" \
      -e "s|@TCP_PORT@|$AA_CH_TCP_PORT|g" \
      "$AA_ROOT/deploy/local/clickhouse/config.xml" > "$AA_STATE/clickhouse/config.xml"
  cp "$AA_ROOT/deploy/local/clickhouse/users.xml" "$AA_STATE/clickhouse/users.xml"
  log "starting clickhouse on $AA_CH_URL"
  # `cd` first, then background the server itself, so the pid file holds the server's pid.
  (cd "$AA_STATE/clickhouse" || exit 1; nohup clickhouse-server --config-file="$AA_STATE/clickhouse/config.xml" \
     >"$AA_STATE/clickhouse/log/stdout.log" 2>&1 & echo $! >"$AA_STATE/run/clickhouse.pid")
  wait_for "clickhouse" 60 ch_ping || { tail -20 "$AA_STATE/clickhouse/log/"*.log >&2; exit 1; }
fi

if kafka_ping; then
  log "kafka broker already answering on $AA_BROKERS"
else
  log "starting tansu on $AA_BROKERS"
  # tansu resolves the SQLite path relative to its working directory (brief §7).
  (cd "$AA_STATE/tansu" || exit 1; nohup "$TANSU_BIN" broker \
      --listener-url "tcp://127.0.0.1:$AA_KAFKA_PORT" \
      --advertised-listener-url "tcp://127.0.0.1:$AA_KAFKA_PORT" \
      --storage-engine sqlite://tansu.db >"$AA_STATE/tansu/broker.log" 2>&1 & echo $! >"$AA_STATE/run/tansu.pid")
  wait_for "tansu" 60 kafka_ping || { tail -20 "$AA_STATE/tansu/broker.log" >&2; exit 1; }
fi

# Default topics; creating one that exists fails harmlessly.
for t in activity.raw.v1 activity.enriched.v1 activity.events.v1 activity.deadletter.v1 \
         activity.traces.v1 activity.correlator-state.v1; do
  "$TANSU_BIN" topic create "$t" --partitions 4 --broker "tcp://$AA_BROKERS" >/dev/null 2>&1 || true
done

if [[ "${1:-}" != "--no-migrate" ]]; then
  log "applying ClickHouse migrations"
  (cd "$AA_ROOT" && cargo build -q -p store --bin activity-audit-writer)
  AA_WRITER__CLICKHOUSE__URL="$AA_CH_URL" "$CARGO_TARGET_DIR/debug/activity-audit-writer" --migrate-only
fi
log "stack up: kafka $AA_BROKERS, clickhouse $AA_CH_URL, state in $AA_STATE"
