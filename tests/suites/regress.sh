#!/usr/bin/env bash
# SQL-level behaviour with pg_regress: each file under tests/regress/sql runs
# in psql against a database that AuthFort's own migrations created, and its
# output must match tests/regress/expected exactly.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

start_cluster regress 54410
new_authfort_db regression

regress_dir="$repo/tests/regress"
results=$(mktemp -d)
chmod 777 "$results"
pg_regress=$(pg_config --pkglibdir)/pgxs/src/test/regress/pg_regress
set +e
"$pg_regress" --use-existing --bindir="$(pg_config --bindir)" --host="$PGHOST" --port="$PGPORT" --user=postgres --dbname=regression \
    --inputdir="$regress_dir" --outputdir="$results" --schedule="$regress_dir/schedule" \
    | tee "$results/summary"
set -e
if [ -s "$results/regression.diffs" ]; then
    cp "$results/regression.diffs" "$regress_dir/regression.diffs"
    echo "diffs: tests/regress/regression.diffs"
fi
passed=$(grep -cE '^(ok|test) .* ok|^ok [0-9]+ ' "$results/summary" || true)
failed=$(grep -cE 'FAILED|^not ok' "$results/summary" || true)
rm -rf "$results"
finish
