#!/usr/bin/env bash
# Differential suite: our SQL functions against the real AuthFort package,
# seed by seed, on copies of the same database (see tests/differential.py).
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

start_cluster differential 54411
"$repo/.venv/bin/python" "$repo/tests/differential.py"
