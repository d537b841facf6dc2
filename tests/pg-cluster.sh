#!/usr/bin/env bash
# tests/pg-cluster.sh start DIR | stop DIR | pause DIR | resume DIR
#
# A private PostgreSQL 15 cluster for the tests: `start` creates DIR (it must not exist),
# runs initdb and pg_ctl from /usr/lib/postgresql/15/bin into it and prints the libpq URI of
# its database "kbr" (superuser "kbr", trust authentication on a unix socket in DIR/sock;
# no TCP port).  PostgreSQL refuses to run as root, so as root the cluster runs as the user
# "nobody"; as any other user it runs as that user.  KBT_PG_FSYNC=on keeps fsync (the
# benchmark); tests run without it, since they never crash the server itself.
# `stop` stops it and removes DIR; `pause` stops the server (the tests' "database lost") and
# `resume` starts it again.
set -euo pipefail
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
cmd=${1:?start|stop}
dir=${2:?directory}

as_owner() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u nobody -- "$@"
    else
        "$@"
    fi
}

case "$cmd" in
start)
    mkdir -m 0755 "$dir"
    mkdir -m 0700 "$dir/data" "$dir/sock"
    [ "$(id -u)" -eq 0 ] && chown nobody: "$dir/data" "$dir/sock"
    as_owner "$PGBIN/initdb" -D "$dir/data" -U kbr --auth=trust -E UTF8 --locale=C.UTF-8 \
        >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
    cat >>"$dir/data/postgresql.conf" <<CONF
listen_addresses = ''
unix_socket_directories = '$dir/sock'
max_connections = 300
fsync = ${KBT_PG_FSYNC:-off}
synchronous_commit = on
shared_buffers = 64MB
log_min_messages = warning
CONF
    as_owner "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/data/server.log" -w -t 60 start >/dev/null ||
        { cat "$dir/data/server.log" >&2; exit 1; }
    "$PGBIN/createdb" -h "$dir/sock" -U kbr kbr
    echo "postgresql:///kbr?host=$dir/sock&user=kbr"
    ;;
stop)
    if [ -d "$dir/data" ]; then
        as_owner "$PGBIN/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$dir"
    ;;
pause)
    as_owner "$PGBIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
    ;;
resume)
    as_owner "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/data/server.log" -w -t 60 start >/dev/null
    ;;
*)
    echo "usage: $0 start|stop|pause|resume DIR" >&2
    exit 2
    ;;
esac
