#!/usr/bin/env bash
# A factory station at a contract manufacturer: one device per run.
#
#   contrib/factory-station.sh SERIAL
#
# The device's key pair (EC P-256) is made here with openssl and its private
# key never leaves the station directory (mode 0600; on the line it would be
# injected into the device's secure element and wiped).  The CSR goes to
# keybroker through the CLI with the factory's token; the certificate that
# comes back is checked before the device is passed: it chains to the device
# CA for TLS client use, names SERIAL as its CN, and carries the device key.
# A run that gets no certificate keeps the key and CSR, and the next run for
# SERIAL sends the same CSR again: provisioning is idempotent, so if the broker
# issued a certificate whose answer was lost, that certificate comes back (and
# no second one is made).
#
# Environment:
#   KEYBROKER_URL         the broker, e.g. https://keybroker.example:8443
#   KEYBROKER_TOKEN_FILE  the factory token (sub factory:NAME, op provision),
#   or KEYBROKER_TOKEN    or the token itself
#   KEYBROKER_CACERT      CA bundle for an https broker (optional)
#   KBR_BATCH             the production batch the devices are built in
#   KBR_PRODUCT           the product
#   KBR_CA_KEY            the device CA key at the broker
#   KBR_FIRMWARE_VERSION  the factory image's version (optional; the broker
#                         must have signed it)
#   KBR_CA_CERT           the device CA certificate the station pins
#                         (optional; without it the returned chain is the
#                         trust anchor, which only proves the chain is whole)
#   KBR_STATION_DIR       where device directories go [./station]
#   KEYBROKER_BIN         the keybroker CLI [keybroker on PATH, else ../bin
#                         next to this script]
#
# Exit status: 0 the device is provisioned and its certificate checked;
# 1 anything failed (the message says what); 2 usage.
set -euo pipefail

prog=${0##*/}

die() {
  printf '%s: %s\n' "$prog" "$*" >&2
  exit 1
}

usage() {
  printf 'usage: %s SERIAL\n' "$prog" >&2
  printf '  env: KEYBROKER_URL, KEYBROKER_TOKEN_FILE or KEYBROKER_TOKEN, KBR_BATCH,\n' >&2
  printf '       KBR_PRODUCT, KBR_CA_KEY [KBR_FIRMWARE_VERSION] [KBR_CA_CERT]\n' >&2
  printf '       [KBR_STATION_DIR] [KEYBROKER_BIN]\n' >&2
  exit 2
}

need_env() {
  local name
  for name in "$@"; do
    [ -n "${!name:-}" ] || { printf '%s: %s is not set\n' "$prog" "$name" >&2; usage; }
  done
}

find_cli() {
  local here
  if [ -n "${KEYBROKER_BIN:-}" ]; then
    printf '%s\n' "$KEYBROKER_BIN"
  elif command -v keybroker >/dev/null 2>&1; then
    command -v keybroker
  else
    here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
    printf '%s\n' "$here/../bin/keybroker"
  fi
}

# The serial becomes a directory name and the CN of openssl's -subj: the
# broker's name rules less '+' (a multi-valued RDN to openssl) and '@'.
check_serial() {
  [[ "$1" =~ ^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$ ]] ||
    { printf '%s: bad SERIAL %q: letters, digits, . _ : - only\n' "$prog" "$1" >&2; usage; }
}

make_key_and_csr() {
  local dir=$1 serial=$2
  # umask first: the private key is never readable by anyone else, not even briefly.
  (
    umask 077
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
      -out "$dir/device.key" 2>/dev/null
  ) || die "openssl could not make the device key"
  chmod 0600 "$dir/device.key"
  openssl req -new -key "$dir/device.key" -subj "/CN=$serial" -out "$dir/device.csr" \
    2>/dev/null || die "openssl could not make the CSR"
}

provision() {
  local dir=$1 serial=$2
  local -a args=(provision --csr "$dir/device.csr" --serial "$serial" --batch "$KBR_BATCH"
    --product "$KBR_PRODUCT" --key "$KBR_CA_KEY"
    --out "$dir/cert.pem" --chain-out "$dir/chain.pem")
  local -a global=()

  if [ -n "${KBR_FIRMWARE_VERSION:-}" ]; then
    args+=(--firmware-version "$KBR_FIRMWARE_VERSION")
  fi
  if [ -n "${KEYBROKER_TOKEN_FILE:-}" ]; then
    global+=(--token-file "$KEYBROKER_TOKEN_FILE")
  fi
  "$kb" "${global[@]}" "${args[@]}"
}

verify_chain() {
  local dir=$1
  if [ -n "${KBR_CA_CERT:-}" ]; then
    openssl verify -CAfile "$KBR_CA_CERT" -untrusted "$dir/chain.pem" -purpose sslclient \
      "$dir/cert.pem" >/dev/null
  else
    openssl verify -CAfile "$dir/chain.pem" -purpose sslclient "$dir/cert.pem" >/dev/null
  fi
}

# Exactly one CN, equal to the serial: the broker sets it whatever the CSR asked.
check_cn() {
  local cert=$1 serial=$2 cns
  cns=$(openssl x509 -noout -subject -nameopt sep_multiline,sname,esc_ctrl -in "$cert" |
    sed -n 's/^ *CN=//p')
  [ "$cns" = "$serial" ] || die "certificate CN is '$cns', not '$serial'"
}

check_pubkey() {
  local dir=$1 cert_pub key_pub
  cert_pub=$(openssl x509 -noout -pubkey -in "$dir/cert.pem")
  key_pub=$(openssl pkey -in "$dir/device.key" -pubout)
  if [ -z "$key_pub" ] || [ "$cert_pub" != "$key_pub" ]; then
    die "the certificate does not carry this device's public key"
  fi
}

summary() {
  local dir=$1 serial=$2
  printf '\n%s: device %s provisioned and checked\n' "$prog" "$serial"
  printf '  product      %s (batch %s)\n' "$KBR_PRODUCT" "$KBR_BATCH"
  printf '  %s\n' "$(openssl x509 -noout -issuer -nameopt RFC2253 -in "$dir/cert.pem")"
  printf '  %s\n' "$(openssl x509 -noout -enddate -in "$dir/cert.pem")"
  printf '  %s\n' "$(openssl x509 -noout -fingerprint -sha256 -in "$dir/cert.pem")"
  printf '  files        %s/{device.key,cert.pem,chain.pem}\n' "$dir"
}

main() {
  [ "$#" -eq 1 ] || usage
  local serial=$1 dir
  check_serial "$serial"
  need_env KEYBROKER_URL KBR_BATCH KBR_PRODUCT KBR_CA_KEY
  [ -n "${KEYBROKER_TOKEN_FILE:-}" ] || [ -n "${KEYBROKER_TOKEN:-}" ] ||
    { printf '%s: set KEYBROKER_TOKEN_FILE or KEYBROKER_TOKEN\n' "$prog" >&2; usage; }
  command -v openssl >/dev/null 2>&1 || die "openssl is not installed"
  kb=$(find_cli)
  [ -x "$kb" ] || die "keybroker CLI not found at $kb (set KEYBROKER_BIN)"

  dir="${KBR_STATION_DIR:-./station}/$serial"
  [ ! -e "$dir/cert.pem" ] || die "$serial already has a certificate in $dir"
  (umask 077 && mkdir -p "$dir") || die "cannot create $dir"
  rm -f "$dir/chain.pem"

  if [ -s "$dir/device.key" ] && [ -s "$dir/device.csr" ]; then
    printf '%s: %s: sending the CSR of the earlier attempt again\n' "$prog" "$serial" >&2
  else
    make_key_and_csr "$dir" "$serial"
  fi
  if ! provision "$dir" "$serial"; then
    # The key stays: the broker may have issued a certificate whose answer was lost, and the
    # same CSR gets it back, where a new key for the serial would be refused.
    die "provisioning $serial failed (see the broker's message above); run again to retry with the same key"
  fi
  if [ ! -s "$dir/cert.pem" ] || [ ! -s "$dir/chain.pem" ]; then
    die "the CLI wrote no certificate or chain"
  fi
  verify_chain "$dir" || die "the certificate of $serial does not verify for TLS client use"
  check_cn "$dir/cert.pem" "$serial"
  check_pubkey "$dir"
  summary "$dir" "$serial"
}

kb=""
main "$@"
