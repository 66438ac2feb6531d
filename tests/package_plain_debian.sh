#!/usr/bin/env bash
# The Debian 13 .deb on a Debian 13 system that has only PostgreSQL 17 and
# pg_cron (scripts/debian13.sh's plain root, no build tools): apt installs
# it, the extension deletes what it should, its pg_cron schedule really
# runs, it updates from 0.1.0, and apt removes it.
#
# usage (in the plain root): package_plain_debian.sh DEB SCHEMA_SQL VERSION
# SCHEMA_SQL is AuthFort's schema as its migrations made it (a pg_dump -s).
# Prints one "  ok  ..." or "  FAIL ..." line per check.
set -euo pipefail
deb=$1 schema=$2 version=$3
name=postgresql-17-authfort-cleanup
bindir=/usr/lib/postgresql/17/bin
data=/tmp/authfort-package/data socket=/tmp/authfort-package
export PGHOST=$socket PGPORT=54431 PGUSER=postgres

failures=0
check() {
    if [ "$2" = "$3" ]; then
        printf '  ok  plain Debian 13: %s\n' "$1"
    else
        failures=$((failures + 1))
        printf '  FAIL plain Debian 13: %s: expected [%s], got [%s]\n' "$1" "$2" "$3"
    fi
}
sql() {
    "$bindir/psql" -X -q -A -t -v ON_ERROR_STOP=1 -d app -c "$1"
}
stop_server() {
    [ -f "$data/postmaster.pid" ] && runuser -u postgres -- "$bindir/pg_ctl" -D "$data" -m fast stop >/dev/null || true
}
trap 'stop_server; apt-get remove -y -qq "$name" >/dev/null 2>&1 || true; rm -rf /tmp/authfort-package' EXIT

check "the system has no compiler and no PostgreSQL headers" "no|no" \
    "$(command -v gcc >/dev/null && echo yes || echo no)|$([ -e /usr/include/postgresql/17/server/postgres.h ] && echo yes || echo no)"
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$deb" >/dev/null
check "apt installs the .deb" ii "$(dpkg-query -W -f='${db:Status-Abbrev}' "$name" | cut -c1-2)"

mkdir -p "$socket"
chown postgres: "$socket"
runuser -u postgres -- "$bindir/initdb" -D "$data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
cat >>"$data/postgresql.conf" <<CONF
port = $PGPORT
listen_addresses = ''
unix_socket_directories = '$socket'
shared_preload_libraries = 'pg_cron'
cron.database_name = 'app'
cron.use_background_workers = on
CONF
runuser -u postgres -- "$bindir/pg_ctl" -D "$data" -l "$data/server.log" -w start >/dev/null
"$bindir/psql" -X -q -d postgres -c "CREATE DATABASE app"
"$bindir/psql" -X -q -v ON_ERROR_STOP=1 -d app -f "$schema" >/dev/null
sql "CREATE EXTENSION pg_cron"
sql "CREATE EXTENSION authfort_cleanup"
check "CREATE EXTENSION gives the packaged version" "$version" \
    "$(sql "SELECT extversion FROM pg_extension WHERE extname = 'authfort_cleanup'")"

seed_tokens() {
    "$bindir/psql" -X -q -v ON_ERROR_STOP=1 -d app -f "$(dirname "$0")/package_tokens.sql" >/dev/null
}
seed_tokens
check "the packaged extension deletes the expired tokens" 3 "$(sql "SELECT authfort_cleanup_tokens()")"
check "and keeps the live ones" 2 "$(sql "SELECT count(*) FROM authfort_verification_tokens")"

# The nightly job, every minute here: pg_cron runs it within 60 s.
seed_tokens
job=$(sql "SELECT authfort_cleanup_schedule('* * * * *')")
status=timed-out
for _ in $(seq 75); do
    found=$(sql "SELECT status FROM cron.job_run_details WHERE jobid = $job AND status IN ('succeeded', 'failed') LIMIT 1")
    [ -n "$found" ] && { status=$found; break; }
    sleep 1
done
check "its pg_cron job runs and succeeds" succeeded "$status"
check "the job cleaned the tokens and logged the run" "2|ok|3" \
    "$(sql "SELECT (SELECT count(*) FROM authfort_verification_tokens) || '|' || status || '|' || tokens
              FROM authfort_cleanup_runs ORDER BY id DESC LIMIT 1")"
check "unschedule() removes the job" t "$(sql "SELECT authfort_cleanup_unschedule()")"

sql "DROP EXTENSION authfort_cleanup"
sql "CREATE EXTENSION authfort_cleanup VERSION '0.1.0'"
sql "ALTER EXTENSION authfort_cleanup UPDATE"
check "the package updates 0.1.0 to $version" "$version" \
    "$(sql "SELECT extversion FROM pg_extension WHERE extname = 'authfort_cleanup'")"
sql "DROP EXTENSION authfort_cleanup"
stop_server

DEBIAN_FRONTEND=noninteractive apt-get remove -y -qq "$name" >/dev/null
check "apt removes the package and its files" no \
    "$([ -e /usr/share/postgresql/17/extension/authfort_cleanup.control ] && echo yes || echo no)"
[ "$failures" -eq 0 ]
