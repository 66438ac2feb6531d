#!/usr/bin/env bash
# Builds and runs main.go: tests/clients/go/run.sh DSN SEED_SQL
#
# GOPATH mode against Debian's packaged sources (golang-github-jackc-pgx-v4-dev
# under /usr/share/gocode), since there is no Go module proxy to fetch from.
# The binary and Go's build cache live in .build/ here, which git ignores.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
build=$here/.build
mkdir -p "$build"
GO111MODULE=off GOPATH=/usr/share/gocode GOPROXY=off GOFLAGS= GOCACHE=$build/cache \
    go build -o "$build/pgx-client" "$here/main.go"
exec "$build/pgx-client" "$@"
