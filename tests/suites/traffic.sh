#!/usr/bin/env bash
# Traffic suite: AuthFort-shaped clients (sign-in, refresh rotation, logout,
# password reset, key rotation) and every form of the cleanup, concurrently
# for about 25 seconds (tests/traffic.py), twice: with the replaced_by index
# (the cleanup walks heap blocks) and with the time indexes too (it reads
# through them). Asserts behaviour only: no client or cleanup errors, no
# deadlocks, no still-valid row lost, nothing deletable left at the end.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

start_cluster traffic 54417
new_authfort_db app
new_authfort_db app_time_indexes
# Without the index on replaced_by the one-shot session cleanup refuses past
# quadratic_guard_rows and the procedure skips sessions: create it up front,
# as the extension's own check tells an operator to.
check "the replaced_by index is created" "ix_authfort_refresh_tokens_replaced_by" \
    "$(sql app "SELECT * FROM authfort_cleanup_create_indexes()" 2>/dev/null)"
check "the time indexes are created too" \
    "ix_authfort_signing_keys_expires_at ix_authfort_verification_tokens_expires_at ix_authfort_refresh_tokens_replaced_by ix_authfort_refresh_tokens_expires_at ix_authfort_refresh_tokens_expires_at_revoked" \
    "$(sql app_time_indexes "SELECT * FROM authfort_cleanup_create_indexes(time_indexes => true)" 2>/dev/null | xargs)"

log=$(mktemp)
trap 'rm -f "$log"; "$repo/scripts/cluster.sh" destroy' EXIT
for db in app app_time_indexes; do
    echo "  # database $db"
    status=0
    "$repo/.venv/bin/python" "$repo/tests/traffic.py" "$db" >"$log" 2>&1 || status=$?
    # Fold the driver's tally into the suite's, so the suite ends with a single
    # "N passed, N failed" line covering both.
    summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -n 1 || true)
    grep -v -E '^[0-9]+ passed, [0-9]+ failed$' "$log" || true
    if [ -z "$summary" ]; then
        check "tests/traffic.py $db ran to its summary (exit $status)" "yes" "no"
    else
        driver_failed=${summary#*passed, }
        driver_failed=${driver_failed%% failed}
        passed=$((passed + ${summary%% passed*}))
        failed=$((failed + driver_failed))
        # A crash after the summary would otherwise go unnoticed.
        [ "$driver_failed" -gt 0 ] || check "tests/traffic.py $db exits 0" "0" "$status"
    fi
done
finish
