#!/usr/bin/env bash
# Runs each libFuzzer target for a bounded time on a scratch copy of its
# committed corpus (new inputs are not added to the tree; a crash is kept
# in the build directory), then prints one line per target.
# Usage: tests/fuzz/run.sh SECONDS BINDIR NAME...
set -u
cd "$(dirname "$0")/../.."
secs=$1
bindir=$2
shift 2
artifacts="$bindir/artifacts"
mkdir -p "$artifacts"
summary=()
rc=0
for name in "$@"; do
  scratch=$(mktemp -d "/tmp/kbr-fuzz-$name.XXXXXX")
  cp -R "tests/fuzz/corpus/$name/." "$scratch/"
  dict=()
  [ -f "tests/fuzz/$name.dict" ] && dict=("-dict=tests/fuzz/$name.dict")
  log="$artifacts/$name.log"
  echo "== $name: ${secs}s on $(ls "$scratch" | wc -l) seeds"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    "$bindir/${name}_fuzz" -max_total_time="$secs" -timeout=30 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$artifacts/$name-" "${dict[@]}" "$scratch" \
    >"$log" 2>&1
  status=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
  corpus=$(ls "$scratch" | wc -l)
  rm -rf "$scratch"
  if [ "$status" -ne 0 ]; then
    rc=1
    tail -n 60 "$log"
    summary+=("$name: FAILED (exit $status), see $log and $artifacts/$name-*")
  else
    summary+=("$name: ok, ${execs:-?} executions, cov ${cov:-?}, corpus $corpus")
  fi
done
echo
printf '%s\n' "${summary[@]}"
exit $rc
