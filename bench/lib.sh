# Shared by bench/run.sh and bench/soak.sh: a throwaway cluster of their
# own, and a check that the build measured is the build installed
# throughout. Source it after setting `repo`; it expects `set -euo pipefail`.

# bench_cluster NAME PORT SETTING...: a fresh cluster in .cluster/NAME on
# PORT (BENCH_PORT moves it), restarted with each SETTING ("name = 'value'")
# in postgresql.auto.conf, which cluster.conf's settings give way to. It is
# destroyed on exit; on failure the end of its log is shown first, and
# BENCH_KEEP_CLUSTER=1 leaves it (stopped) for a post-mortem.
bench_cluster() {
    local name=$1 port=$2 setting
    shift 2
    export CLUSTER_DIR="$repo/.cluster/$name" PGPORT=${BENCH_PORT:-$port}
    export PGHOST=$CLUSTER_DIR PGUSER=postgres
    # A leftover from an interrupted run would carry old databases and settings.
    "$repo/scripts/cluster.sh" destroy
    "$repo/scripts/cluster.sh" start
    trap finish_bench_cluster EXIT
    local statements=()
    for setting in "$@"; do statements+=(-c "ALTER SYSTEM SET $setting"); done
    psql -X -q -v ON_ERROR_STOP=1 -d postgres "${statements[@]}"
    "$repo/scripts/cluster.sh" stop
    "$repo/scripts/cluster.sh" start
}

finish_bench_cluster() {
    local status=$?
    if [ "$status" -ne 0 ] && [ -f "$CLUSTER_DIR/server.log" ]; then
        echo "--- last lines of $CLUSTER_DIR/server.log" >&2
        tail -n 40 "$CLUSTER_DIR/server.log" >&2
    fi
    if [ "${BENCH_KEEP_CLUSTER:-0}" = 1 ]; then
        "$repo/scripts/cluster.sh" stop
    else
        "$repo/scripts/cluster.sh" destroy
    fi
    exit "$status"
}

# measured COMMAND...: says which build of the extension is installed, runs
# COMMAND, and fails if it is a debug build or changed meanwhile. A
# reinstall during a run (make install copies over the loaded library)
# would mix two builds, or crash backends that have it mapped.
measured() {
    local library before version
    library="$(pg_config --pkglibdir)/authfort_cleanup.so"
    # make install-dev's build is unoptimised and carries debug info: its
    # times say nothing about the release (one results file was measured so).
    if readelf -S "$library" | grep '\.debug_info' >/dev/null; then
        echo "$library is a debug build (make install-dev); make install builds the release to measure" >&2
        exit 64
    fi
    before=$(sha256sum "$library" | cut -c1-12)
    version=$(psql -X -A -t -d postgres -c "SELECT default_version FROM pg_available_extensions WHERE name = 'authfort_cleanup'")
    echo "authfort_cleanup $version (library sha256 $before, installed $(date -u -r "$library" '+%Y-%m-%d %H:%M UTC'), $(($(stat -c %s "$library") / 1048576)) MB), repo HEAD $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)"
    "$@"
    local after
    after=$(sha256sum "$library" | cut -c1-12)
    if [ "$after" != "$before" ]; then
        echo "WARNING: authfort_cleanup.so changed during the run ($before -> $after): the results mix builds; run again."
        exit 3
    fi
}
