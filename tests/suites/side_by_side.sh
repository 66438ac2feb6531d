#!/usr/bin/env bash
# Side by side with AuthFort's own job (tests/side_by_side.py): AuthFort's
# real cleanup_expired_sessions() loops beside CALL authfort_cleanup_run()
# and authfort_cleanup_sessions() for 10 s on a rotation-heavy sessions
# table; then for 5 s AuthFort's job holds the advisory lock of the
# extension's runs, the recipe doc/migration-from-python.md gives; then the
# crossing that makes the two deadlock is staged once against each of the
# extension's ways. Asserts behaviour only: that the two sides really
# overlapped, no error on the extension's side (a one-shot function may lose
# a deadlock, with a HINT to retry), that the recipe keeps their deletes
# apart, no live session lost, nothing deletable left after one final
# cleanup. About 30 s.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

start_cluster side_by_side 54470
new_authfort_db app
# With the replaced_by index, as the extension's check() tells an operator
# to create it: without it AuthFort's own DELETE is quadratic.
check "the replaced_by index is created" "ix_authfort_refresh_tokens_replaced_by" \
    "$(sql app "SELECT * FROM authfort_cleanup_create_indexes()" 2>/dev/null)"

log=$(mktemp)
trap 'rm -f "$log"; "$repo/scripts/cluster.sh" destroy' EXIT
status=0
"$repo/.venv/bin/python" "$repo/tests/side_by_side.py" app >"$log" 2>&1 || status=$?
# Fold the program's tally into the suite's, so the suite ends with a
# single "N passed, N failed" line covering both.
summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -n 1 || true)
grep -v -E '^[0-9]+ passed, [0-9]+ failed$' "$log" || true
if [ -z "$summary" ]; then
    check "tests/side_by_side.py ran to its summary (exit $status)" "yes" "no"
else
    program_failed=${summary#*passed, }
    program_failed=${program_failed%% failed}
    passed=$((passed + ${summary%% passed*}))
    failed=$((failed + program_failed))
    # A crash after the summary would otherwise go unnoticed.
    [ "$program_failed" -gt 0 ] || check "tests/side_by_side.py exits 0" "0" "$status"
fi
finish
