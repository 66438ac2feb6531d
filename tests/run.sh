#!/usr/bin/env bash
# Runs every test suite (or the ones named) and totals their results.
#
# Each suite is tests/suites/NAME.sh; it prints "N passed, N failed" last and
# exits non-zero when anything failed. A suite that cannot run on a major
# prints one "skipped: why" line and exits 77 (automake's convention); one
# that skips single checks ends "N passed, N failed, N skipped". A skip (a
# whole suite counts as one) is counted as a skip, never as a pass.
#
# The per-major suites run once for each pg_config in TEST_PG_CONFIGS (the
# Makefile passes 15's, 16's, 17's and 18's; 17's as "debian13:PG_CONFIG",
# run inside the Debian 13 root), with that PostgreSQL first on PATH. The
# others run once: docs and install need no server, and major_upgrade goes
# from one major to another, and also from each pg_config in
# UPGRADE_FROM_PG_ATTVER (Debian 12's security release of 15, which stores
# pg_attver on every column; the Makefile passes it). pg_test installs its test
# build over the development build, so each major's pg_test runs after
# everything else.
set -uo pipefail
cd "$(dirname "$0")/.."

once_first=(docs install)
per_major=(regress differential upgrade procedure cron clients standby traffic side_by_side space package)
once_after=(major_upgrade)
per_major_last=(pg_test)
# major_upgrade reads it too: it goes from the first to the last.
export TEST_PG_CONFIGS=${TEST_PG_CONFIGS:-$(command -v pg_config)}
read -r -a pg_configs <<<"$TEST_PG_CONFIGS"
read -r -a pg_attver_configs <<<"${UPGRADE_FROM_PG_ATTVER:-}"

requested=("$@")
# wanted SUITE: true when no suites were named, or SUITE was.
wanted() {
    [ "${#requested[@]}" -eq 0 ] && return 0
    local name
    for name in "${requested[@]}"; do [ "$name" = "$1" ] && return 0; done
    return 1
}

total_passed=0
total_failed=0
total_skipped=0
broken=()

# in_place CONFIG COMMAND...: COMMAND where CONFIG's PostgreSQL runs: here,
# or, for a "debian13:PG_CONFIG" entry, inside the Debian 13 root with that
# PG_CONFIG (scripts/debian13.sh).
in_place() {
    local config=$1
    shift
    case "$config" in
        debian13:*) PG_CONFIG=${config#debian13:} TEST_PG_CONFIGS=${config#debian13:} scripts/debian13.sh run "$@" ;;
        *) PG_CONFIG=$config "$@" ;;
    esac
}

# run_suite SUITE [PG_CONFIG]
run_suite() {
    local suite=$1 config=${2:-} label=$1 major
    if [ -n "$config" ]; then
        major=$(in_place "$config" bash -c '"$PG_CONFIG" --version' | sed -nE 's/^PostgreSQL ([0-9]+).*/\1/p')
        label="$suite (PostgreSQL $major)"
        [[ $config == debian13:* ]] && label="$suite (PostgreSQL $major, Debian 13)"
    elif [ -n "${OLD_PG_CONFIG:-}" ]; then
        label="$suite (from PostgreSQL $("$OLD_PG_CONFIG" --version | sed -nE 's/^PostgreSQL ([0-9.]+).*/\1/p'))"
    fi
    printf '\n=== %s\n' "$label"
    local log status counts suite_failed started=$SECONDS
    log=$(mktemp)
    if [ -n "$config" ]; then
        in_place "$config" bash "tests/suites/$suite.sh" 2>&1 | tee "$log"
    else
        bash "tests/suites/$suite.sh" 2>&1 | tee "$log"
    fi
    status=${PIPESTATUS[0]}
    echo "--- $label took $((SECONDS - started)) s"
    counts=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
    if [ "$status" -eq 77 ] && grep -q '^skipped: ' "$log"; then
        total_skipped=$((total_skipped + 1))
        rm -f "$log"
        return
    fi
    rm -f "$log"
    if [ -z "$counts" ]; then
        broken+=("$label")
        total_failed=$((total_failed + 1))
        return
    fi
    total_passed=$((total_passed + ${counts%% passed*}))
    suite_failed=${counts#*passed, }
    suite_failed=${suite_failed%% failed*}
    total_failed=$((total_failed + suite_failed))
    [[ $counts =~ ([0-9]+)\ skipped ]] && total_skipped=$((total_skipped + BASH_REMATCH[1]))
    if [ "$status" -ne 0 ] && [ "$suite_failed" -eq 0 ]; then
        broken+=("$label")
        total_failed=$((total_failed + 1))
    fi
}

for suite in "${once_first[@]}"; do wanted "$suite" && run_suite "$suite"; done
for config in "${pg_configs[@]}"; do
    for suite in "${per_major[@]}"; do wanted "$suite" && run_suite "$suite" "$config"; done
done
# major_upgrade: from each major to the last (18). Debian 13's 17 goes from
# its root, where the relocatable 18 in the checkout runs too.
newest=${pg_configs[${#pg_configs[@]} - 1]}
for suite in "${once_after[@]}"; do
    wanted "$suite" || continue
    for config in "${pg_configs[@]}"; do
        [ "$config" = "$newest" ] && continue
        case "$config" in
            debian13:*) OLD_PG_CONFIG=${config#debian13:} NEW_PG_CONFIG=$newest run_suite "$suite" "$config" ;;
            *) OLD_PG_CONFIG=$config NEW_PG_CONFIG=$newest run_suite "$suite" ;;
        esac
    done
    # The suite checks that these do store pg_attver; their clusters get
    # ports of their own.
    for config in "${pg_attver_configs[@]}"; do
        OLD_PG_CONFIG=$config NEW_PG_CONFIG=$newest EXPECT_PG_ATTVER=yes MAJOR_UPGRADE_PORT=54490 run_suite "$suite"
    done
done
for config in "${pg_configs[@]}"; do
    for suite in "${per_major_last[@]}"; do wanted "$suite" && run_suite "$suite" "$config"; done
done

echo
[ "${#broken[@]}" -eq 0 ] || echo "suites that did not finish cleanly: ${broken[*]}"
echo "total: $total_passed passed, $total_failed failed, $total_skipped skipped"
[ "$total_failed" -eq 0 ]
