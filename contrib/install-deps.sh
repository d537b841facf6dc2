#!/usr/bin/env bash
# Installs what keybroker needs to build, test and run its demo on Debian 12.
# Only packages that are missing are installed; needs root (or sudo).
set -euo pipefail
pkgs=(build-essential pkg-config softhsm2 opensc libssl-dev openssl libevent-dev
      libsqlite3-dev sqlite3 libjansson-dev libcmocka-dev postgresql libpq-dev
      libcurl4-openssl-dev libp11-kit-dev uthash-dev libcbor-dev clang libclang-rt-dev clang-format cppcheck jq nodejs)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "installing: ${missing[*]}" >&2
$SUDO apt-get update -q >&2
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
