#!/usr/bin/env bash
# Installs what keybroker needs to build, test and run its demo on Debian 12.
# Only packages that are missing are installed; needs root (or sudo).
set -euo pipefail
pkgs=(build-essential pkg-config softhsm2 opensc libssl-dev openssl libevent-dev
      libsqlite3-dev sqlite3 libjansson-dev libcmocka-dev postgresql libpq-dev
      libcurl4-openssl-dev libp11-kit-dev uthash-dev libcbor-dev clang libclang-rt-dev clang-format cppcheck jq nodejs
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
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
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
