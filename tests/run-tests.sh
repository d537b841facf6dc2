#!/usr/bin/env bash
# Runs each test binary given, prints its output, and ends with one summary
# line "N passed, N failed" counted over every cmocka test case.  After each binary's output,
# a line "-- BINARY: Ns" says how long it ran.
set -u
passed=0
failed=0
broken=()
for t in "$@"; do
  echo "== $t"
  t0=$SECONDS
  out=$("$t" 2>&1)
  rc=$?
  printf '%s\n' "$out"
  echo "-- $t: $((SECONDS - t0))s"
  p=$(printf '%s\n' "$out" | sed -n 's/^\[  PASSED  \] \([0-9]*\) test(s)\./\1/p' | awk '{s+=$1} END {print s+0}')
  f=$(printf '%s\n' "$out" | sed -n 's/^\[  FAILED  \] \([0-9]*\) test(s), listed below:/\1/p' | awk '{s+=$1} END {print s+0}')
  passed=$((passed + p))
  failed=$((failed + f))
  if [ "$rc" -ne 0 ] || { [ "$p" -eq 0 ] && [ "$f" -eq 0 ]; }; then
    broken+=("$t (exit $rc)")
    [ "$f" -eq 0 ] && failed=$((failed + 1))
  fi
done
echo
for b in "${broken[@]+"${broken[@]}"}"; do echo "FAILED: $b"; done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
