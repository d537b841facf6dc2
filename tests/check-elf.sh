#!/usr/bin/env bash
# The built binaries as the linker left them: which libraries each one needs,
# and the hardening the Makefile asks for (README "Building and testing").
# Run by `make check` through tests/run-tests.sh, so it reports in cmocka's
# words.  Reads from the environment:
#   KBR_BIN_DIR    bin/keybrokerd and bin/keybroker
#   KBR_FAULTY_SO  the PKCS#11 test module (a shared object, not PIE)
#   KBR_BUILD_DIR  where the archives are (their objects carry the CET notes)
#   KBR_HARDEN     non-empty: hardened build; KBR_FORTIFY, KBR_CET: non-empty
#                  when _FORTIFY_SOURCE and -fcf-protection were in CFLAGS
set -u
export LC_ALL=C
bin=${KBR_BIN_DIR:?}
build=${KBR_BUILD_DIR:?}
faulty=${KBR_FAULTY_SO:?}

ok=0
bad=()
check() { # name, then the command that must succeed
    local name=$1 out
    shift
    if out=$("$@" 2>&1); then
        echo "[       OK ] $name"
        ok=$((ok + 1))
    else
        printf '%s\n' "$out"
        echo "[  FAILED  ] $name"
        bad+=("$name")
    fi
}

needed() { readelf -dW "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'; }

# The C library, the loader and the compiler's runtimes (sanitizer builds
# link theirs) are not the product's choice.
runtime='^(libc|libm|libpthread|libdl|librt|libgcc_s|libstdc\+\+|libasan|libubsan|libtsan|liblsan)\.so|^ld-linux'

# needs_only BINARY LIB...: every NEEDED library is a runtime or one of LIB
# (names without ".so*").
needs_only() {
    local binary=$1 lib base rc=0
    shift
    for lib in $(needed "$binary"); do
        [[ $lib =~ $runtime ]] && continue
        base=${lib%%.so*}
        if [[ " $* " != *" $base "* ]]; then
            echo "$binary needs $lib, which it should not"
            rc=1
        fi
    done
    return $rc
}

# No library is linked that nothing calls.
all_used() {
    local out
    out=$(ldd -u -r "$1" 2>&1 | grep -v -e '^Unused direct dependencies:' -e '^[[:space:]]*$' \
        -e "^$1:")
    [ -z "$out" ] || { echo "$1: linked but not called:"; echo "$out"; return 1; }
}

pie() {
    readelf -hW "$1" | grep -q 'Type:[[:space:]]*DYN' &&
        readelf -dW "$1" | grep -q '(FLAGS_1).*PIE' || { echo "$1 is not PIE"; return 1; }
}
relro_now() {
    readelf -lW "$1" | grep -q '^[[:space:]]*GNU_RELRO' || { echo "$1: no GNU_RELRO"; return 1; }
    readelf -dW "$1" | grep -Eq '\(FLAGS\).*BIND_NOW|\(FLAGS_1\).*NOW' ||
        { echo "$1: not BIND_NOW"; return 1; }
}
noexecstack() {
    readelf -lW "$1" | grep '^[[:space:]]*GNU_STACK' | grep -qv 'RWE' ||
        { echo "$1: the stack is executable (or GNU_STACK is missing)"; return 1; }
}
dynsym() { readelf --dyn-syms -W "$1" | grep -Eq "UND ($2)(@|\$)" || { echo "$1: no $2"; return 1; }; }
stack_protector() { dynsym "$1" __stack_chk_fail; }
fortified() { dynsym "$1" '__[a-z]*_chk'; }

# cet ARCHIVE: every member carries the IBT and SHSTK properties.  The
# executables do not: Debian 12's crt1.o, crti.o and crtn.o carry none, and
# the linker keeps a property only when every input has it.
cet() {
    local members marked
    members=$(ar t "$1" | grep -c '\.o$')
    marked=$(readelf -nW "$1" | grep -c 'x86 feature: IBT, SHSTK')
    [ "$members" -gt 0 ] && [ "$members" -eq "$marked" ] ||
        { echo "$1: $marked of $members objects marked IBT, SHSTK"; return 1; }
}

check "keybroker needs libcrypto, jansson and libcurl only" \
    needs_only "$bin/keybroker" libcrypto libjansson libcurl
# libcurl fetches OIDC issuers' key sets (jwks_url); libpq is the PostgreSQL store's client
check "keybrokerd needs no p11-kit, and libcurl only as the key set fetcher" \
    needs_only "$bin/keybrokerd" libssl libcrypto libjansson libevent_core-2.1 libevent_extra-2.1 \
    libevent_pthreads-2.1 libevent_openssl-2.1 libsqlite3 libcbor libcurl libpq libjemalloc
# the allocator the Makefile chose: jemalloc unless MALLOC=libc or a sanitizer build
if [ -n "${KBR_JEMALLOC:-}" ]; then
    check "keybrokerd allocates with jemalloc" \
        sh -c "readelf -dW '$bin/keybrokerd' | grep -q 'NEEDED.*\\[libjemalloc\\.so'"
else
    check "keybrokerd allocates with the C library's malloc" \
        sh -c "! readelf -dW '$bin/keybrokerd' | grep -q 'NEEDED.*libjemalloc'"
fi
check "keybroker calls every library it needs" all_used "$bin/keybroker"
check "keybrokerd calls every library it needs" all_used "$bin/keybrokerd"

if [ -n "${KBR_HARDEN:-}" ]; then
    for b in "$bin/keybrokerd" "$bin/keybroker"; do
        n=$(basename "$b")
        check "$n is PIE" pie "$b"
        check "$n has full RELRO" relro_now "$b"
        check "$n has a non-executable stack" noexecstack "$b"
        check "$n has stack protectors" stack_protector "$b"
        [ -n "${KBR_FORTIFY:-}" ] && check "$n calls fortified functions" fortified "$b"
    done
    check "the PKCS#11 test module has full RELRO" relro_now "$faulty"
    check "the PKCS#11 test module has a non-executable stack" noexecstack "$faulty"
    if [ -n "${KBR_CET:-}" ]; then
        for a in "$build"/libkbr_core.a "$build"/libkbr.a "$build"/libkbrd.a "$build"/libkbr_cli.a; do
            check "$(basename "$a") is built for CET (IBT, SHSTK)" cet "$a"
        done
    fi
fi

echo "[==========] $((ok + ${#bad[@]})) test(s) run."
echo "[  PASSED  ] $ok test(s)."
if [ ${#bad[@]} -gt 0 ]; then
    echo "[  FAILED  ] ${#bad[@]} test(s), listed below:"
    for b in "${bad[@]}"; do echo "[  FAILED  ] $b"; done
    exit 1
fi
