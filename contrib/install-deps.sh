#!/usr/bin/env bash
# Installs what keybroker needs to build, test and run its demo on Debian 12,
# then the npm packages of the tests' independent implementations
# (tests/interop/package-lock.json) and the CSAF validator the tests check the
# broker's CSAF documents with (tests/csaf/install.sh, at the version
# tests/csaf/package-lock.json pins).  Only what is missing is installed;
# needs root (or sudo) for the Debian packages.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

interop() {
  [ -d "$here/../tests/interop/node_modules/cose-js" ] && return 0
  if ! command -v npm >/dev/null; then
    $SUDO apt-get install -y -q --no-install-recommends npm >&2
  fi
  echo "installing the interop tests' npm packages" >&2
  (cd "$here/../tests/interop" && npm ci --no-audit --no-fund >&2)
}

pkgs=(build-essential pkg-config softhsm2 opensc libssl-dev openssl libevent-dev
      libsqlite3-dev sqlite3 libjansson-dev libcmocka-dev postgresql libpq-dev
      libcurl4-openssl-dev libp11-kit-dev uthash-dev libcbor-dev libjemalloc-dev clang libclang-rt-dev clang-format cppcheck jq nodejs
      systemd groff-base bsdextrautils debhelper lintian)
# promtool (tests/integration/test_packaging.c checks the alert rules with it) comes only in
# Debian's prometheus package, a server with a service: CI's throwaway machine gets it, with
# its service kept from starting; elsewhere KBR_PROMTOOL=1 asks for it.
want_prometheus=false
if [ "${CI:-}" = true ] || [ "${KBR_PROMTOOL:-}" = 1 ]; then
  want_prometheus=true
  pkgs+=(prometheus)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Debian's nodejs comes without npm; a nodejs that brings its own (NodeSource's) conflicts with it.
command -v npm >/dev/null || missing+=(npm)
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  $SUDO apt-get update -q >&2
  # invoke-rc.d asks policy-rc.d whether a package may start its service: not during this run
  policy=""
  if $want_prometheus && [ ! -e /usr/sbin/policy-rc.d ]; then
    policy=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee $policy >/dev/null
    $SUDO chmod 0755 $policy
    trap '$SUDO rm -f $policy' EXIT
  fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
  if [ -n "$policy" ] && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    $SUDO systemctl disable --now prometheus >/dev/null 2>&1 || true
  fi
fi
interop
"$here/../tests/csaf/install.sh"
