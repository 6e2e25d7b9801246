#!/usr/bin/env bash
# Installs what the local stack and the build need, skipping what is already there:
# Debian packages (ClickHouse server, cmake and headers for librdkafka, protoc, curl, Chromium
# and ChromeDriver for the web UI tests, Python and Node.js for the SIEM schema validators), the
# tansu Kafka-protocol broker (built once with cargo, cached under $AA_CACHE) and the SIEM
# schema validators the export tests use (OCSF from PyPI, ECS from npm; cached likewise).
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

need_apt=()
command -v clickhouse-server >/dev/null || need_apt+=(clickhouse-server clickhouse-client)
command -v cmake >/dev/null || need_apt+=(cmake)
command -v protoc >/dev/null || need_apt+=(protobuf-compiler)
command -v curl >/dev/null || need_apt+=(curl)
command -v pkg-config >/dev/null || need_apt+=(pkg-config)
command -v c++ >/dev/null || need_apt+=(build-essential)
dpkg -s libcurl4-openssl-dev >/dev/null 2>&1 || need_apt+=(libcurl4-openssl-dev)
dpkg -s libssl-dev >/dev/null 2>&1 || need_apt+=(libssl-dev)
dpkg -s zlib1g-dev >/dev/null 2>&1 || need_apt+=(zlib1g-dev)
# the web UI's browser tests drive Debian's Chromium through ChromeDriver
command -v chromium >/dev/null || need_apt+=(chromium)
command -v chromedriver >/dev/null || need_apt+=(chromium-driver)
# the export tests validate OCSF with a PyPI package and ECS with an npm package
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need_apt+=(python3 python3-venv)
command -v node >/dev/null || need_apt+=(nodejs)
command -v npm >/dev/null || need_apt+=(npm)
if ((${#need_apt[@]})); then
  log "installing Debian packages: ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
  log "cargo is required (rustup toolchain); install Rust first"
  exit 1
fi

if [[ ! -x "$TANSU_BIN" ]]; then
  log "building the tansu broker $TANSU_VERSION (once per machine; about 11 minutes on 2 cores)"
  mkdir -p "$AA_CACHE"
  # Its own target dir: the broker's build must not evict the project's.
  CARGO_TARGET_DIR="$AA_CACHE/tansu-build" cargo install tansu --version "$TANSU_VERSION" \
    --locked --features dynostore,libsql --root "$AA_CACHE/tansu-$TANSU_VERSION"
  rm -rf "$AA_CACHE/tansu-build"
fi
if [[ ! -f "$AA_SIEM/ready-$AA_SIEM_VERSION" ]]; then
  log "installing the SIEM schema validators (OCSF: PyPI ocsf-json-schema; ECS: npm @elastic/ecs)"
  rm -rf "$AA_SIEM" && mkdir -p "$AA_SIEM"
  python3 -m venv "$AA_SIEM/venv"
  "$AA_SIEM/venv/bin/pip" install -q -r "$AA_ROOT/tests/siem/requirements.txt"
  npm install --silent --no-audit --no-fund --prefix "$AA_SIEM/npm" "@elastic/ecs@$AA_ECS_NPM_VERSION" >/dev/null
  node -e 'process.stdout.write(JSON.stringify(require(process.argv[1]).EcsFlat))' \
    "$AA_SIEM/npm/node_modules/@elastic/ecs/build/commonjs/ecs_flat.js" > "$AA_SIEM/ecs_flat.json"
  touch "$AA_SIEM/ready-$AA_SIEM_VERSION"
fi
log "tools ready: $(clickhouse-server --version 2>/dev/null | head -1 || echo clickhouse), tansu $TANSU_VERSION"
