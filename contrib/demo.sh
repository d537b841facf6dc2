#!/usr/bin/env bash
# keybroker end to end on its embedded defaults: a throwaway SoftHSM2 token,
# a SQLite store, keybrokerd on 127.0.0.1; a firmware-signing key made in the
# HSM, a CI token scoped to it, a firmware image signed with its SBOM through
# the CLI, the signature checked with openssl, and the audit entries that
# recorded it.  Everything lives in one directory, kept for inspection.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "installing what is missing and building"
contrib/install-deps.sh
make -j"$(nproc)" >/dev/null
kb="$here/bin/keybroker"
kbd="$here/bin/keybrokerd"

demo=${KEYBROKER_DEMO_DIR:-$(mktemp -d /tmp/keybroker-demo.XXXXXX)}
mkdir -p "$demo"
cd "$demo"
broker_pid=""
stop_broker() {
  if [ -n "$broker_pid" ] && kill -0 "$broker_pid" 2>/dev/null; then
    kill -TERM "$broker_pid"
    wait "$broker_pid" || true
  fi
}
trap stop_broker EXIT

step "a throwaway SoftHSM2 token in $demo/tokens"
mkdir -p tokens
cat > softhsm2.conf <<EOF
directories.tokendir = $demo/tokens
objectstore.backend = file
log.level = ERROR
EOF
export SOFTHSM2_CONF="$demo/softhsm2.conf"
umask 077
openssl rand -hex 12 > pin
softhsm2-util --init-token --free --label keybroker --pin "$(cat pin)" \
  --so-pin "$(openssl rand -hex 12)" >/dev/null
umask 022

step "preparing the deployment: keybrokerd -c keybroker.conf --init"
cat > keybroker.conf <<EOF
# keybroker demo deployment (paths are relative to this file)
listen = 127.0.0.1:0
port_file = keybrokerd.port
pin_file = pin
store = sqlite:keybroker.db
token_label = keybroker
bootstrap_token_file = bootstrap.token
EOF
"$kbd" -c keybroker.conf --init

step "starting keybrokerd on 127.0.0.1"
rm -f keybrokerd.port
"$kbd" -c keybroker.conf 2>keybrokerd.log &
broker_pid=$!
for _ in $(seq 100); do
  [ -s keybrokerd.port ] && break
  kill -0 "$broker_pid" 2>/dev/null || { cat keybrokerd.log; exit 1; }
  sleep 0.1
done
export KEYBROKER_URL="http://127.0.0.1:$(cat keybrokerd.port)"
"$kb" health

step "security team: a firmware-signing key inside the HSM"
export KEYBROKER_TOKEN
KEYBROKER_TOKEN=$(cat bootstrap.token)
"$kb" key create fw-gateway --purpose firmware-signing --algorithm ecdsa-p256 \
  --product gateway --owner platform-security

step "security team: a CI token that can only sign gateway firmware with that key"
"$kb" token issue --sub ci:gateway-release --op sign --key fw-gateway --product gateway \
  --ttl 3600 --out ci.token
unset KEYBROKER_TOKEN

step "CI: a firmware image and its CycloneDX SBOM, signed through the broker"
head -c 1048576 /dev/urandom > gateway-1.4.2.bin
cat > gateway-1.4.2.cdx.json <<'EOF'
{"bomFormat": "CycloneDX", "specVersion": "1.5", "version": 1,
 "components": [
  {"type": "library", "name": "openssl", "version": "3.0.13", "purl": "pkg:generic/openssl@3.0.13"},
  {"type": "library", "name": "zlib", "version": "1.3.1", "purl": "pkg:generic/zlib@1.3.1"},
  {"type": "operating-system", "name": "zephyr", "version": "3.6.0", "purl": "pkg:github/zephyrproject-rtos/zephyr@v3.6.0"}
 ]}
EOF
"$kb" --token-file ci.token sign --key fw-gateway --file gateway-1.4.2.bin \
  --product gateway --version 1.4.2 --sbom gateway-1.4.2.cdx.json --format der \
  --out gateway-1.4.2.sig

step "anyone: the signature verifies with openssl against the key's public key"
KEYBROKER_TOKEN=$(cat bootstrap.token) "$kb" key pubkey fw-gateway --out fw-gateway.pub.pem
openssl dgst -sha256 -verify fw-gateway.pub.pem -signature gateway-1.4.2.sig gateway-1.4.2.bin

step "security team: the audit entries that recorded it"
export KEYBROKER_TOKEN
KEYBROKER_TOKEN=$(cat bootstrap.token)
"$kb" audit list
sign_seq=$("$kb" --json audit list | jq -r '[.entries[] | select(.op == "sign")][-1].seq')
echo "the signature's own entry, as the hash chain holds it:"
"$kb" --json audit list --after $((sign_seq - 1)) --limit 1 | jq '.entries[0]'
unset KEYBROKER_TOKEN

step "stopping keybrokerd"
stop_broker
broker_pid=""
echo "done; the deployment, token and log are in $demo"
