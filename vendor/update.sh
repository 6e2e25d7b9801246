#!/usr/bin/env bash
# Regenerates the vendored crates: each is its crates.io package, without what our build does
# not use, with vendor/patches/<crate>/*.patch applied in order.
#
#   vendor/update.sh          rewrite vendor/rdkafka-sys and vendor/rdkafka
#   vendor/update.sh --check  fail unless both are exactly that
#
# To move to a new version: set it below (and the rdkafka version in Cargo.toml), run this, and
# rebase any patch that no longer applies (or drop it if upstream fixed it).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# rdkafka-sys bundles librdkafka's source: drop librdkafka's tests, examples and packaging
# other than cmake.
prune_rdkafka_sys() {
    (
        cd "$1/librdkafka"
        rm -rf tests examples win32 debian mklove packaging/[!c]* packaging/cp \
            configure configure.self Doxyfile mainpage.doxy dev-conf.sh service.yml vcpkg.json \
            README.win32 lds-gen.py Makefile
    )
}

# rdkafka: the package without its CI and docs tooling (its manifest names its examples and
# tests, so they stay).
prune_rdkafka() {
    (
        cd "$1"
        rm -f Dockerfile docker-compose.yaml coverage.sh test_suite.sh generate_readme.py \
            readme_template rdkafka.suppressions
    )
}

status=0
vendor() { # crate version prune
    local crate="$1" version="$2" prune="$3"
    local dest="$here/$crate" pkg
    pkg="$(ls "${CARGO_HOME:-$HOME/.cargo}"/registry/cache/*/"$crate-$version.crate" 2>/dev/null | head -n1 || true)"
    if [[ -z "$pkg" ]]; then
        pkg="$work/$crate.crate"
        curl -sSfL -o "$pkg" "https://static.crates.io/crates/$crate/$crate-$version.crate"
    fi
    tar xzf "$pkg" -C "$work"
    local src="$work/$crate-$version"
    "$prune" "$src"
    rm -f "$src/.cargo_vcs_info.json" "$src/Cargo.toml.orig"
    for p in "$here/patches/$crate"/*.patch; do
        patch --quiet -p1 -d "$src" < "$p"
    done
    if [[ "$CHECK" == 1 ]]; then
        if diff -r "$src" "$dest"; then
            echo "vendor/$crate is $crate $version with vendor/patches/$crate applied"
        else
            status=1
        fi
        return
    fi
    rm -rf "$dest"
    mv "$src" "$dest"
    echo "vendor/$crate: $crate $version with $(ls "$here/patches/$crate"/*.patch | wc -l) patch(es)"
}

CHECK=0
[[ "${1:-}" == "--check" ]] && CHECK=1
vendor rdkafka-sys "4.10.0+2.12.1" prune_rdkafka_sys
vendor rdkafka "0.39.0" prune_rdkafka
exit "$status"
