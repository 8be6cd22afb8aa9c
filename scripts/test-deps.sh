#!/usr/bin/env bash
# scripts/test-deps.sh: system packages the test suite needs beyond `make setup`, installed from Debian
# only when missing (CI starts from a machine with nothing but CPython 3.11). Run through `make test`.
#   postgresql   a real server for the distributed-search tests (they start a throwaway cluster of their own)
#   chromium     a real browser for the report test (tests/search/test_report_browser.py loads report.html
#                headless, over the DevTools protocol; no browser download of its own is possible here)
set -Eeuo pipefail

log() { printf 'test-deps: %s\n' "$*"; }

missing=()
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
command -v chromium >/dev/null || missing+=(chromium)

if [ ${#missing[@]} -eq 0 ]; then
    log "system packages present (postgresql, chromium): nothing to install"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    log "missing Debian packages: ${missing[*]}; install them (sudo apt-get install ${missing[*]}) and rerun"
    exit 1
fi
log "installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The package starts a system cluster on 5432; the tests use their own on a free port, so stop it.
if command -v pg_ctlcluster >/dev/null; then
    for cluster in /etc/postgresql/*/main; do
        [ -d "$cluster" ] || continue
        version=$(basename "$(dirname "$cluster")")
        pg_ctlcluster "$version" main stop >/dev/null 2>&1 || true
    done
fi
log "installed: ${missing[*]}"
