#!/usr/bin/env bash
# Sign an MCUboot image with a key that stays inside keybroker.
#
#   contrib/mcuboot-sign.sh --key K --product P --version V
#       (--sbom bom.cdx.json | --component name@version[@purl] ...)
#       [--build-id ID] [--name N] [imgtool sign options ...] unsigned.bin signed.bin
#
# The CI step that ran `imgtool sign -k private.pem ...` runs this instead,
# with the same imgtool options less -k/--key:
#   1. keybroker key pubkey K             -> pubkey.pem (the image's key)
#   2. imgtool sign --key pubkey.pem --vector-to-sign digest ... unsigned.bin D
#                                         -> D, the hash MCUboot checks the signature over
#   3. keybroker sign --key K --digest D --format der --product P --version V --sbom ...
#                                         -> the signature, recorded with the build and SBOM
#   4. imgtool sign --fix-sig SIG.b64 --fix-sig-pubkey pubkey.pem ... unsigned.bin signed.bin
#   5. imgtool verify -k pubkey.pem signed.bin
# --version V is both the image version imgtool writes into the header and
# the firmware version the broker records; --name defaults to unsigned.bin's
# file name.  A version names one build at the broker: re-running with the same
# image and options is a retry, while another image or other header options under
# the same --version give another image hash and a 409 conflict.
#
# Key types, as imgtool wants their signatures:
#   ecdsa-p256  DER ECDSA over the SHA-256 image hash (--format der)
#   ecdsa-p384  DER ECDSA over the SHA-384 image hash (needs an imgtool with P-384 keys)
#   ed25519     Ed25519 over the image hash bytes themselves (the digest file goes as
#               --message); imgtool's --pure mode, which signs the whole image, is refused
#   rsa-*       refused: imgtool's RSA-PSS salt length has changed between its versions
#
# What was checked against imgtool's source (mcu-tools/mcuboot, scripts/imgtool:
# main.py, image.py, keys/ecdsa.py, keys/ed25519.py, keys/__init__.py), not by
# running it: imgtool is a Python package and was not installed where this
# script was written, so this script has NOT been executed end to end.
#   - `sign --vector-to-sign digest` writes the image hash (over header, image and
#     protected TLVs) to OUTFILE instead of an image, binary unless OUTFILE ends in .hex;
#   - `sign --key FILE` loads a public key PEM as well as a private one; the key, or
#     else --fix-sig-pubkey, picks the hash (SHA-384 for P-384), so both runs agree;
#   - `sign --fix-sig FILE` reads FILE as base64 and puts the decoded bytes in the
#     signature TLV as they are; `--fix-sig-pubkey FILE` names the matching public key;
#     --fix-sig and --key together are refused by imgtool;
#   - ECDSA signatures are DER (keys/ecdsa.py verifies DER over SHA-256/SHA-384 of
#     the payload, i.e. over the image hash); Ed25519 signs the hash bytes;
#   - `verify -k FILE IMAGE` checks the hash and the signature, exit 1 if either fails;
#   - `version` prints imgtool's version (the up-front check that imgtool runs).
#
# Environment:
#   KEYBROKER_URL         the broker
#   KEYBROKER_TOKEN_FILE  a token with op sign on K for product P (it may also read K's
#   or KEYBROKER_TOKEN    public key: GET /v1/keys/K is open to tokens that may use K)
#   KEYBROKER_CACERT      CA bundle for an https broker (optional)
#   KEYBROKER_BIN         the keybroker CLI [keybroker on PATH, else ../bin next to this script]
#   IMGTOOL               the imgtool command, e.g. "python3 mcuboot/scripts/imgtool.py"
#                         [imgtool on PATH]
#
# Exit status: 0 signed.bin is signed and verifies; 1 anything failed; 2 usage.
set -euo pipefail

prog=${0##*/}

die() {
  printf '%s: %s\n' "$prog" "$*" >&2
  exit 1
}

usage() {
  printf 'usage: %s --key K --product P --version V (--sbom FILE | --component C ...)\n' "$prog" >&2
  printf '         [--build-id ID] [--name N] [imgtool sign options ...] unsigned.bin signed.bin\n' >&2
  printf '  env: KEYBROKER_URL, KEYBROKER_TOKEN_FILE or KEYBROKER_TOKEN [KEYBROKER_BIN] [IMGTOOL]\n' >&2
  exit 2
}

usage_error() {
  printf '%s: %s\n' "$prog" "$*" >&2
  usage
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

# Before the broker is asked anything: without imgtool there is no image to finish.
find_imgtool() {
  read -r -a imgtool <<<"${IMGTOOL:-imgtool}"
  local v
  if [ "${#imgtool[@]}" -eq 0 ] || ! command -v "${imgtool[0]}" >/dev/null 2>&1 ||
    ! v=$("${imgtool[@]}" version 2>/dev/null); then
    die "imgtool not found or not working ('${IMGTOOL:-imgtool}'): install MCUboot's imgtool" \
      "(pip install imgtool, or use scripts/imgtool.py of the mcuboot tree) or set IMGTOOL" \
      "to its command"
  fi
  printf '%s: imgtool %s\n' "$prog" "$v" >&2
}

# Options the script sets itself; passed through they would contradict it.
reserved_option() {
  case $1 in
    -k | --key | --key=* | -v | --version | --version=* | --fix-sig | --fix-sig=* | \
      --fix-sig-pubkey | --fix-sig-pubkey=* | --vector-to-sign | --vector-to-sign=* | \
      --sig-out | --sig-out=* | --pure) return 0 ;;
  esac
  return 1
}

key=""
product=""
version=""
sbom=""
build_id=""
name=""
components=()
imgargs=()
infile=""
outfile=""

# value_of OPTION ARG [NEXT]: sets $value and $shift_by (1 for --opt=value, 2 for --opt value).
value_of() {
  case $2 in
    "$1"=*) value=${2#"$1"=}; shift_by=1 ;;
    *)
      [ "$#" -ge 3 ] || usage_error "$1 needs a value"
      value=$3
      shift_by=2
      ;;
  esac
  [ -n "$value" ] || usage_error "$1 needs a value"
}

parse_args() {
  local n=$#
  [ "$n" -ge 2 ] || usage
  infile=${*: -2:1}
  outfile=${*: -1}
  set -- "${@:1:n-2}"
  while [ "$#" -gt 0 ]; do
    case $1 in
      --key | --key=*) value_of --key "$@"; key=$value ;;
      --product | --product=*) value_of --product "$@"; product=$value ;;
      --version | --version=*) value_of --version "$@"; version=$value ;;
      --sbom | --sbom=*) value_of --sbom "$@"; sbom=$value ;;
      --component | --component=*) value_of --component "$@"; components+=(--component "$value") ;;
      --build-id | --build-id=*) value_of --build-id "$@"; build_id=$value ;;
      --name | --name=*) value_of --name "$@"; name=$value ;;
      -h | --help) usage ;;
      *)
        ! reserved_option "$1" || usage_error "$1 is set by this script; leave it out"
        imgargs+=("$1")
        shift_by=1
        ;;
    esac
    shift "$shift_by"
  done
}

check_args() {
  [ -n "$key" ] || usage_error "--key is required (the firmware-signing key at the broker)"
  [ -n "$product" ] || usage_error "--product is required"
  [ -n "$version" ] || usage_error "--version is required"
  if [ -n "$sbom" ] && [ "${#components[@]}" -gt 0 ]; then
    usage_error "--sbom and --component exclude each other"
  fi
  [ -n "$sbom" ] || [ "${#components[@]}" -gt 0 ] ||
    usage_error "the broker records firmware with its SBOM: give --sbom FILE or --component C"
  case $infile in -*) usage_error "the last two arguments are unsigned.bin signed.bin" ;; esac
  case $outfile in -*) usage_error "the last two arguments are unsigned.bin signed.bin" ;; esac
  [ -r "$infile" ] || die "cannot read $infile"
  [ "$infile" != "$outfile" ] || usage_error "signed.bin must not be unsigned.bin"
  [ -n "$name" ] || name=${infile##*/}
}

kb_run() {
  local -a global=()
  if [ -n "${KEYBROKER_TOKEN_FILE:-}" ]; then
    global+=(--token-file "$KEYBROKER_TOKEN_FILE")
  fi
  "$kb" "${global[@]}" "$@"
}

# ecdsa-p256, ecdsa-p384 or ed25519, read from the public key itself.
key_type() {
  local text
  text=$(openssl pkey -pubin -in "$1" -noout -text 2>/dev/null) || die "$1 is not a public key"
  case $text in
    *"NIST CURVE: P-256"* | *prime256v1*) echo ecdsa-p256 ;;
    *"NIST CURVE: P-384"* | *secp384r1*) echo ecdsa-p384 ;;
    *ED25519*) echo ed25519 ;;
    *Modulus*) die "key $key is RSA: imgtool's RSA-PSS salt length differs between its" \
      "versions, so this script signs only with ecdsa-p256, ecdsa-p384 or ed25519 keys" ;;
    *) die "key $key has a key type imgtool does not sign with" ;;
  esac
}

# The broker call for each key type; the image hash is what gets signed.
broker_sign() {
  local type=$1 digest_file=$2 sig=$3 hex len
  local -a args=(sign --key "$key" --product "$product" --version "$version" --name "$name"
    --kind firmware --out "$sig")

  len=$(wc -c <"$digest_file")
  hex=$(od -An -v -tx1 "$digest_file" | tr -d ' \n')
  case $type:$len in
    ecdsa-p256:32) args+=(--digest "$hex" --hash sha256 --format der) ;;
    ecdsa-p384:48) args+=(--digest "$hex" --hash sha384 --format der) ;;
    ed25519:32 | ed25519:48) args+=(--message "$digest_file") ;;
    *) die "imgtool gave a $len-byte image hash for a $type key; the broker signs SHA-256" \
      "or SHA-384 hashes (check --sha)" ;;
  esac
  [ -z "$sbom" ] || args+=(--sbom "$sbom")
  args+=("${components[@]}")
  [ -z "$build_id" ] || args+=(--build-id "$build_id")
  printf '%s: image hash %s, signing with %s at the broker\n' "$prog" "$hex" "$key" >&2
  kb_run "${args[@]}" >&2
}

main() {
  parse_args "$@"
  check_args
  need_tools
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/mcuboot-sign.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT

  kb_run key pubkey "$key" --out "$tmp/pubkey.pem" >/dev/null ||
    die "cannot get the public key of $key from the broker"
  type=$(key_type "$tmp/pubkey.pem")
  # Same options in both runs: the hash covers the header and protected TLVs they produce.
  "${imgtool[@]}" sign "${imgargs[@]}" --version "$version" --key "$tmp/pubkey.pem" \
    --vector-to-sign digest "$infile" "$tmp/image.digest" >&2 ||
    die "imgtool could not compute the image hash"
  [ -s "$tmp/image.digest" ] || die "imgtool wrote no image hash"
  broker_sign "$type" "$tmp/image.digest" "$tmp/sig.bin" ||
    die "the broker did not sign (see its message above)"
  base64 -w0 "$tmp/sig.bin" >"$tmp/sig.b64"
  "${imgtool[@]}" sign "${imgargs[@]}" --version "$version" --fix-sig "$tmp/sig.b64" \
    --fix-sig-pubkey "$tmp/pubkey.pem" "$infile" "$outfile" >&2 ||
    die "imgtool could not finish $outfile with the broker's signature"
  "${imgtool[@]}" verify -k "$tmp/pubkey.pem" "$outfile" >&2 ||
    { rm -f "$outfile"; die "$outfile does not verify against $key; removed"; }
  printf '%s: %s signed with %s (%s) and verified\n' "$prog" "$outfile" "$key" "$type" >&2
}

need_tools() {
  [ -n "${KEYBROKER_URL:-}" ] || usage_error "KEYBROKER_URL is not set"
  [ -n "${KEYBROKER_TOKEN_FILE:-}" ] || [ -n "${KEYBROKER_TOKEN:-}" ] ||
    usage_error "set KEYBROKER_TOKEN_FILE or KEYBROKER_TOKEN"
  find_imgtool
  command -v openssl >/dev/null 2>&1 || die "openssl is not installed"
  kb=$(find_cli)
  [ -x "$kb" ] || die "keybroker CLI not found at $kb (set KEYBROKER_BIN)"
}

kb=""
imgtool=()
tmp=""
type=""
value=""
shift_by=1
main "$@"
