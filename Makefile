# The two commands a newcomer needs are `make demo` and `make test`; both
# install what they need first (scripts/setup.sh is idempotent).
#
# Every target that builds takes PG_CONFIG, the pg_config of the PostgreSQL
# to build for (15 to 18); without it, the pg_config on PATH (Debian's 15).
PG_CONFIG ?= $(shell command -v pg_config)
# The PostgreSQL 16 and 18 that scripts/setup.sh installs from PyPI, and
# Debian 13's 17, which runs in the Debian 13 root (scripts/debian13.sh).
PG16_CONFIG = $(CURDIR)/.pg16/bin/pg_config
PG17_CONFIG = debian13:/usr/lib/postgresql/17/bin/pg_config
PG18_CONFIG = $(CURDIR)/.pg18/bin/pg_config
# Debian 12's security release of 15, which scripts/setup.sh unpacks (never
# installs) into .pg15-security: major_upgrade's journeys also start there.
PG15_SECURITY_CONFIG = $(CURDIR)/.pg15-security/bin/pg_config
N ?= 10000 100000 1000000
SUITES ?=
# `make test` covers 15 to 18, `make package` 15 and 18 here and 17 in the
# Debian 13 root; with PG_CONFIG=... given, that PostgreSQL only.
ifeq ($(origin PG_CONFIG),command line)
PG_CONFIGS = $(PG_CONFIG)
TEST_CONFIGS = $(PG_CONFIG)
else
PG_CONFIGS = $(PG_CONFIG) $(PG18_CONFIG)
TEST_CONFIGS = $(PG_CONFIG) $(PG16_CONFIG) $(PG17_CONFIG) $(PG18_CONFIG)
UPGRADE_FROM_PG_ATTVER = $(PG15_SECURITY_CONFIG)
endif

PG_MAJOR = $(shell "$(PG_CONFIG)" --version | sed -nE 's/^PostgreSQL ([0-9]+).*/\1/p')
SUPPORTED_MAJORS = 15 16 17 18
# pgrx builds for exactly one major, chosen by a cargo feature.
PGRX_FEATURES = --no-default-features --features pg$(PG_MAJOR)
EXTENSION_DIR = $(shell "$(PG_CONFIG)" --sharedir)/extension
# Unlinked before each install: backends that have the old library loaded
# keep their copy, instead of crashing when it is overwritten in place.
LIBRARY = $(shell "$(PG_CONFIG)" --pkglibdir)/authfort_cleanup.so
# Install scripts of earlier releases, so CREATE EXTENSION ... VERSION and
# ALTER EXTENSION ... UPDATE work from them (pgrx installs only the current
# version's script and the update scripts).
RELEASED_SCRIPTS = $(shell ls sql/authfort_cleanup--*.sql | grep -vE -- '--.+--')

.PHONY: setup build-tools supported-major install install-dev demo stop test bench bench-10m bench-soak bench-tools package clean

# Everything the demo, the tests and the benchmarks need (servers, drivers,
# toolchains): for a development machine, never needed to install.
setup:
	scripts/setup.sh

# Only what building needs: cargo-pgrx, and for Debian's PostgreSQL its
# headers (pinned to the server's version) and libclang when missing. Safe
# on a database server: never a server, pg_cron, Node.js, a wheel or a venv.
build-tools: supported-major
	PG_CONFIG="$(PG_CONFIG)" scripts/build-tools.sh

# Refuses, with the reason, a pg_config of a major we do not build for.
supported-major:
	@case " $(SUPPORTED_MAJORS) " in *" $(PG_MAJOR) "*) ;; \
	  *) echo "PG_CONFIG=$(PG_CONFIG) is PostgreSQL '$(PG_MAJOR)'; authfort_cleanup supports $(SUPPORTED_MAJORS)" >&2; exit 1 ;; \
	esac

# cargo-pgrx links the library with --no-gc-sections, so that no linker
# drops the section its SQL is generated from. Here the section survives the
# linker's pruning (and `cargo pgrx install` fails loudly if it did not), and
# the pruned library is 1.7 MB instead of 4 to 7.6, which every new session
# loads 0.2 ms sooner. scripts/package.sh builds the same way.
export CARGO_PGRX_DISABLE_GC_SECTIONS_WORKAROUND = 1

# pgrx's build reads the pg_config to build against from here, so a
# PostgreSQL never registered with `cargo pgrx init` builds too.
PGRX_INSTALL = PGRX_PG_CONFIG_PATH="$(PG_CONFIG)" cargo pgrx install --pg-config "$(PG_CONFIG)" $(PGRX_FEATURES)

# Builds and installs into the PostgreSQL that PG_CONFIG names.
install: build-tools
	rm -f "$(LIBRARY)"
	$(PGRX_INSTALL) --release
	install -m 644 $(RELEASED_SCRIPTS) "$(EXTENSION_DIR)/"

# The unoptimised build the demo and the tests run against: it compiles in
# half the time.
install-dev: build-tools
	rm -f "$(LIBRARY)"
	$(PGRX_INSTALL)
	install -m 644 $(RELEASED_SCRIPTS) "$(EXTENSION_DIR)/"

demo: setup
	$(MAKE) --no-print-directory install-dev
	scripts/demo.sh

stop:
	scripts/cluster.sh stop

test: setup
	case " $(TEST_CONFIGS)" in *" debian13:"*) scripts/debian13.sh create ;; esac
	for config in $(TEST_CONFIGS); do \
	    case $$config in \
	        debian13:*) scripts/debian13.sh run make --no-print-directory install-dev PG_CONFIG=$${config#debian13:} ;; \
	        *) $(MAKE) --no-print-directory install-dev PG_CONFIG=$$config ;; \
	    esac || exit 1; \
	done
ifneq ($(UPGRADE_FROM_PG_ATTVER),)
# The build for Debian 12's 15 (PG_CONFIG's, just installed), copied into
# its security release, as the Debian 12 .deb would install it there: the
# same major, so the same ABI.
	install -m 755 "$$("$(PG_CONFIG)" --pkglibdir)/authfort_cleanup.so" "$$("$(PG15_SECURITY_CONFIG)" --pkglibdir)/"
	install -m 644 "$$("$(PG_CONFIG)" --sharedir)"/extension/authfort_cleanup* "$$("$(PG15_SECURITY_CONFIG)" --sharedir)/extension/"
endif
	TEST_PG_CONFIGS="$(TEST_CONFIGS)" UPGRADE_FROM_PG_ATTVER="$(UPGRADE_FROM_PG_ATTVER)" tests/run.sh $(SUITES)

# The 60%-deletable cases at N sessions (T4), then the steady state: T1 and
# T3 at 1M (T2 needs the 10M table), T5 (issue #18: 1 % deletable) at 2M.
# About 15 minutes here, of which T5's 2M table takes 30 s.
bench: setup
	$(MAKE) --no-print-directory install
	PG_CONFIG="$(PG_CONFIG)" bench/run.sh $(N)

# The results the charts are drawn from (bench/charts.py), named like the
# results files: bench/results-<date>-<benchmark>-pg<major>.json.
TODAY := $(shell date -u +%F)
STEADY_JSON ?= bench/results-$(TODAY)-steady-pg$(PG_MAJOR).json
SOAK_JSON ?= bench/results-$(TODAY)-soak-pg$(PG_MAJOR).json

# matplotlib for the charts (bench/requirements.txt), into .venv: only the
# targets that draw charts install it, make test never does.
bench-tools: setup
	@if ! [ .venv/.bench-installed -nt bench/requirements.txt ]; then \
	    echo "==> matplotlib from bench/requirements.txt into .venv"; \
	    .venv/bin/pip install -q -r bench/requirements.txt && touch .venv/.bench-installed; \
	fi

# The steady state at 1M and 10M sessions: targets T1 to T3, T5 at 2M and
# 10M; then doc/img/steady-state.svg from STEADY_JSON. About 11 minutes here
# with one run a variant at 10M (BENCH_STEADY_REPEAT_10M=3 for three), a
# third of it seeding the two 10M-row tables (4.7 GB each, in SQL).
bench-10m: setup bench-tools
	$(MAKE) --no-print-directory install
	BENCH_ONLY_STEADY=1 BENCH_STEADY_N="1000000 10000000" BENCH_STEADY_1PCT_N="2000000 10000000" \
	    BENCH_STEADY_JSON="$(STEADY_JSON)" PG_CONFIG="$(PG_CONFIG)" bench/run.sh
	.venv/bin/python bench/charts.py steady "$(STEADY_JSON)"

# Months of nightly cleanup in one run (issue #18): 60 nights of AuthFort's
# traffic on two 1M-session tables, one cleaned by CALL authfort_cleanup_run(),
# the other by a raw DELETE, autovacuum at its defaults; then
# doc/img/soak-size.svg and doc/img/soak-time.svg from SOAK_JSON. 26
# minutes here; SOAK_NIGHTS, SOAK_LIVE and SOAK_NIGHT_SECONDS shorten it
# (bench/soak.py describes them).
bench-soak: setup bench-tools
	$(MAKE) --no-print-directory install
	SOAK_JSON="$(SOAK_JSON)" PG_CONFIG="$(PG_CONFIG)" bench/soak.sh
	.venv/bin/python bench/charts.py soak "$(SOAK_JSON)"

# A tarball for each of PG_CONFIGS and a .deb for Debian 12's PostgreSQL 15;
# without PG_CONFIG, also the .deb and tarball for Debian 13's 17, built in
# the Debian 13 root so that it links against Debian 13's libraries.
package: setup
	PACKAGE_PG_CONFIGS="$(PG_CONFIGS)" scripts/package.sh
ifneq ($(origin PG_CONFIG),command line)
	scripts/debian13.sh create
	scripts/debian13.sh run env PACKAGE_PG_CONFIGS=$(PG17_CONFIG:debian13:%=%) scripts/package.sh
endif

clean:
	scripts/cluster.sh destroy
	cargo clean
