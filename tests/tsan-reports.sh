#!/usr/bin/env bash
# Prints the ThreadSanitizer reports that `make tsan` collected (one file per
# process that reported) and fails if there is any.
# Usage: tests/tsan-reports.sh DIR
set -u
dir=$1
shopt -s nullglob
reports=("$dir"/tsan.*)
for r in "${reports[@]}"; do
    echo "== $r"
    cat "$r"
done
echo "ThreadSanitizer: ${#reports[@]} process(es) reported"
[ ${#reports[@]} -eq 0 ]
