#!/usr/bin/env bash
# Runs test binaries again against PostgreSQL: starts a private cluster (tests/pg-cluster.sh),
# runs each binary named in PG_TESTS with KBT_PG_URL set to its database (each test makes a
# schema of its own in it) and KBT_PG_DIR, KBT_PG_CLUSTER to pause and resume the server, prints
# their output and how long each ran for tests/run-tests.sh to count, and stops the cluster.
# Fails if the cluster cannot start or any binary fails.
set -u
here=$(cd "$(dirname "$0")" && pwd)
dir=$(mktemp -u "${TMPDIR:-/tmp}/kbr-pg.XXXXXX")
if [ "$(id -u)" -eq 0 ]; then
    # the cluster runs as nobody, who must reach its directory
    dir=$(mktemp -u /tmp/kbr-pg.XXXXXX)
fi
url=$("$here/pg-cluster.sh" start "$dir") || exit 1
trap '"$here/pg-cluster.sh" stop "$dir"' EXIT
rc=0
for t in ${PG_TESTS:?}; do
    echo "== $t (PostgreSQL)"
    t0=$SECONDS
    KBT_PG_URL="$url" KBT_PG_DIR="$dir" KBT_PG_CLUSTER="$here/pg-cluster.sh" "$t" || rc=1
    echo "-- $t (PostgreSQL): $((SECONDS - t0))s"
done
exit $rc
