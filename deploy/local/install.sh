#!/usr/bin/env bash
# Installs what the local stack and the build need, skipping what is already there:
# Debian packages (ClickHouse server, cmake and headers for librdkafka, protoc, curl, Chromium
# and ChromeDriver for the web UI tests) and the
# tansu Kafka-protocol broker (built once with cargo, cached under $AA_CACHE).
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
log "tools ready: $(clickhouse-server --version 2>/dev/null | head -1 || echo clickhouse), tansu $TANSU_VERSION"
