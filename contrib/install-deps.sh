#!/usr/bin/env bash
# Installs what keybroker needs to build, test and run its demo on Debian 12.
# Only packages that are missing are installed; needs root (or sudo).  Then the
# CSAF validator the tests check the broker's CSAF documents with
# (tests/csaf/install.sh, from npm, at the version tests/csaf/package-lock.json pins).
set -euo pipefail
pkgs=(build-essential pkg-config softhsm2 opensc libssl-dev openssl libevent-dev
      libsqlite3-dev sqlite3 libjansson-dev libcmocka-dev
      libcurl4-openssl-dev libp11-kit-dev uthash-dev libcbor-dev clang libclang-rt-dev clang-format cppcheck jq nodejs)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Debian's nodejs comes without npm; a nodejs that brings its own (NodeSource's) conflicts with it.
command -v npm >/dev/null || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "installing: ${missing[*]}" >&2
  $SUDO apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
fi
"$(dirname "$0")/../tests/csaf/install.sh"
