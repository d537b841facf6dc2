#!/usr/bin/env bash
# bench/with-pg.sh COMMAND...: runs COMMAND with KBR_BENCH_PG_URL set to a private PostgreSQL
# cluster (tests/pg-cluster.sh, fsync on, as a production server would run), and stops it.
set -u
here=$(cd "$(dirname "$0")" && pwd)
dir=$(mktemp -u /tmp/kbr-bench-pg.XXXXXX)
url=$(KBT_PG_FSYNC=on "$here/../tests/pg-cluster.sh" start "$dir") || exit 1
trap '"$here/../tests/pg-cluster.sh" stop "$dir"' EXIT
KBR_BENCH_PG_URL="$url" "$@"
