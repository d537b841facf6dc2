#!/bin/bash
# bench/instructions.sh - instructions keybrokerd executes per signature, counted by callgrind.
#
# usage: bench/instructions.sh <bin dir> [out dir]     (make bench-instructions)
#        KBR_INSTR_PHASE=provision bench/instructions.sh ...  per certificate instead
#
# Time-based figures move with whatever else the machine runs; instruction counts barely do,
# so this is how a change to the signing path is compared on a busy machine: run it on the
# tree before and after the change.  It runs bench_sign with keybrokerd (the network
# process, all its threads) under callgrind, zeroes the counters once the broker phase is
# signing, dumps them some seconds later, and divides by the audit entries written between.
# With KBR_INSTR_PHASE=provision it does the same in the provision phase and divides by the
# devices provisioned between.
# The HSM process and syscalls' kernel time are not counted; `make bench` measures those.
# Needs valgrind (apt-get install valgrind).  The report is callgrind's: read it with
#   callgrind_annotate --inclusive=yes <out dir>/cg.<pid>.1
set -eu
BIN=$(cd "$1" && pwd)
OUT=${2:-$(mktemp -d "${TMPDIR:-/tmp}/kbr-instr.XXXXXX")}
SECS=${KBR_BENCH_SECONDS:-24}
HERE=$(cd "$(dirname "$0")" && pwd)
BUILD=${BUILD:-build}
command -v valgrind >/dev/null || { echo "instructions.sh: needs valgrind (apt-get install valgrind)" >&2; exit 2; }
mkdir -p "$OUT/bin"
cc -O2 -shared -fPIC -o "$OUT/bin/no_seccomp.so" "$HERE/no_seccomp.c" -ldl
ln -sf "$BIN/keybroker" "$OUT/bin/keybroker"
cat > "$OUT/bin/keybrokerd" <<WRAP
#!/bin/sh
case " \$* " in *" --init"*|*" --check"*|*"--verify"*) exec "$BIN/keybrokerd" "\$@";; esac
LD_PRELOAD="$OUT/bin/no_seccomp.so" exec valgrind -q --tool=callgrind --dump-instr=no \
    --callgrind-out-file="$OUT/cg.%p" "$BIN/keybrokerd" "\$@"
WRAP
chmod +x "$OUT/bin/keybrokerd"

TMPDIR=$OUT KBR_BIN_DIR=$OUT/bin KBR_BENCH_SECONDS=$SECS KBR_BENCH_WARMUP=3 KBR_BENCH_CONNS=8 \
    KBR_BENCH_CSRS=4000 "$BUILD/bench/bench_sign" > "$OUT/bench.out" 2>&1 &
bench=$!
db=""
for _ in $(seq 300); do
    db=$(ls "$OUT"/kbt.*/keybroker.db 2>/dev/null | head -1 || true)
    [ -n "$db" ] && break
    sleep 1
done
PHASE=${KBR_INSTR_PHASE:-sign}
if [ "$PHASE" = provision ]; then
    what=certificate
    # each certificate of the provision phase is a device of its own
    seq_now() { sqlite3 "file:$db?mode=ro" "SELECT count(*) FROM devices" 2>/dev/null || echo 0; }
    for _ in $(seq 900); do
        [ "$(seq_now)" -gt 20 ] && break
        sleep 1
    done
else
    what=signature
    seq_now() { sqlite3 "file:$db?mode=ro" "SELECT coalesce(max(seq), 0) FROM audit" 2>/dev/null || echo 0; }
    # the broker phase has begun when entries arrive faster than setup makes them
    prev=0
    for _ in $(seq 600); do
        now=$(seq_now)
        [ "$prev" -gt 0 ] && [ $((now - prev)) -gt 20 ] && break
        prev=$now
        sleep 2
    done
fi
main=$(pgrep -o -f "keybrokerd -c $OUT/") || { echo "instructions.sh: keybrokerd did not start" >&2; exit 1; }
sleep 4
TMPDIR=$OUT callgrind_control -z "$main" >/dev/null
s0=$(seq_now)
sleep $((SECS - 8))
TMPDIR=$OUT callgrind_control -d "$main" >/dev/null
s1=$(seq_now)
wait "$bench" || { cat "$OUT/bench.out" >&2; exit 1; }
n=$((s1 - s0))
ir=$(callgrind_annotate "$OUT/cg.$main.1" | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }')
echo "keybrokerd: $n ${what}s, $((ir / n)) instructions per $what ($OUT/cg.$main.1)"
