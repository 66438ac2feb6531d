#!/usr/bin/env bash
# Runs every test suite (or the ones named) and totals their results.
# Each suite is tests/suites/NAME.sh; it prints "N passed, N failed" last
# and exits non-zero when anything failed.
set -uo pipefail
cd "$(dirname "$0")/.."

all_suites=(docs regress differential upgrade procedure cron clients standby traffic package pg_test)
suites=("$@")
[ "${#suites[@]}" -gt 0 ] || suites=("${all_suites[@]}")

total_passed=0
total_failed=0
broken=()
for suite in "${suites[@]}"; do
    printf '\n=== %s\n' "$suite"
    log=$(mktemp)
    bash "tests/suites/$suite.sh" 2>&1 | tee "$log"
    status=${PIPESTATUS[0]}
    counts=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
    rm -f "$log"
    if [ -z "$counts" ]; then
        broken+=("$suite")
        total_failed=$((total_failed + 1))
        continue
    fi
    total_passed=$((total_passed + ${counts%% passed*}))
    suite_failed=${counts#*passed, }
    total_failed=$((total_failed + ${suite_failed%% failed*}))
    if [ "$status" -ne 0 ] && [ "${suite_failed%% failed*}" -eq 0 ]; then
        broken+=("$suite")
        total_failed=$((total_failed + 1))
    fi
done

echo
[ "${#broken[@]}" -eq 0 ] || echo "suites that did not finish cleanly: ${broken[*]}"
echo "total: $total_passed passed, $total_failed failed"
[ "$total_failed" -eq 0 ]
