#!/usr/bin/env bash
# Shows what of the local stack and the services is running and answering.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
set +e
status=0
check() { if "$@" >/dev/null 2>&1; then echo "up"; else echo "DOWN"; status=1; fi; }
printf '%-12s %s\n' clickhouse "$(check ch_ping) ($AA_CH_URL)"
printf '%-12s %s\n' kafka "$(check kafka_ping) ($AA_BROKERS)"
for s in ingest:9419 enricher:9439 correlator:9449 export:9469 writer:9459 query-api:9429; do
  name="${s%%:*}" port="${s##*:}"
  if curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; then r="ready"
  elif curl -sS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; then r="alive, not ready"
  else r="not running"; fi
  printf '%-12s %s\n' "$name" "$r (ops :$port)"
done
exit $status
