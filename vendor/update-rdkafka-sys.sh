#!/usr/bin/env bash
# Regenerates vendor/rdkafka-sys: the crates.io package rdkafka-sys $VERSION (which bundles
# librdkafka's source), without what its cmake build does not use (librdkafka's tests,
# examples and packaging other than cmake), with vendor/patches/*.patch applied in order.
#
#   vendor/update-rdkafka-sys.sh          rewrite vendor/rdkafka-sys
#   vendor/update-rdkafka-sys.sh --check  fail unless vendor/rdkafka-sys is exactly that
#
# To move to a new rdkafka-sys: set VERSION (and the rdkafka version in Cargo.toml), run
# this, and rebase any patch that no longer applies (or drop it if upstream fixed it).
set -euo pipefail

VERSION="4.10.0+2.12.1"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dest="$here/rdkafka-sys"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

crate="$(ls "${CARGO_HOME:-$HOME/.cargo}"/registry/cache/*/"rdkafka-sys-$VERSION.crate" 2>/dev/null | head -n1 || true)"
if [[ -z "$crate" ]]; then
    crate="$work/rdkafka-sys.crate"
    curl -sSfL -o "$crate" "https://static.crates.io/crates/rdkafka-sys/rdkafka-sys-$VERSION.crate"
fi
tar xzf "$crate" -C "$work"
src="$work/rdkafka-sys-$VERSION"
(
    cd "$src/librdkafka"
    rm -rf tests examples win32 debian mklove packaging/[!c]* packaging/cp \
        configure configure.self Doxyfile mainpage.doxy dev-conf.sh service.yml vcpkg.json \
        README.win32 lds-gen.py Makefile
)
rm -f "$src/.cargo_vcs_info.json" "$src/Cargo.toml.orig"
for p in "$here"/patches/*.patch; do
    patch --quiet -p1 -d "$src" < "$p"
done

if [[ "${1:-}" == "--check" ]]; then
    diff -r "$src" "$dest" && echo "vendor/rdkafka-sys is rdkafka-sys $VERSION with vendor/patches applied"
    exit
fi
rm -rf "$dest"
mv "$src" "$dest"
echo "vendor/rdkafka-sys: rdkafka-sys $VERSION with $(ls "$here"/patches/*.patch | wc -l) patch(es)"
