#!/usr/bin/env bash
# Installs what tests/csaf/validate.mjs needs (the BSI's csaf-validator-lib, at the version
# package-lock.json pins) into tests/csaf/node_modules, unless it is there already.
# Needs node and npm (contrib/install-deps.sh installs both on Debian 12).
set -euo pipefail
cd "$(dirname "$0")"
if [ -f node_modules/@secvisogram/csaf-validator-lib/package.json ] &&
   cmp -s package-lock.json node_modules/.package-lock.json.installed 2>/dev/null; then
  exit 0
fi
npm ci --no-audit --no-fund --ignore-scripts >&2
cp package-lock.json node_modules/.package-lock.json.installed
