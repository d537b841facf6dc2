#!/usr/bin/env bash
# Simple mistakes a grep can see (after s2n-tls's grep_simple_mistakes.sh).
set -u
cd "$(dirname "$0")/.."
rc=0
src="include common pkcs11 policy audit store ca cose broker tests bench"
if grep -rnE --include='*.c' --include='*.h' '\b(strcpy|strcat|sprintf|vsprintf|gets)\s*\(' $src; then
  echo "unbounded string call: use snprintf or a bounded copy"; rc=1
fi
if grep -rnE --include='*.c' '\bmemcmp\s*\([^)]*(pin|secret|token|sig|hash|mac)' $src; then
  echo "memcmp on secret-like data: use CRYPTO_memcmp / kbr_secret_equal"; rc=1
fi
if grep -rnE --include='*.c' --include='*.h' '#include [<"]pkcs11\.h[>"]' $src; then
  echo "include the OASIS header as <p11-kit/pkcs11.h>, never a local pkcs11.h"; rc=1
fi
exit $rc
