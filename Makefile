# The two commands a newcomer needs are `make demo` and `make test`; both
# install what they need first (scripts/setup.sh is idempotent).
PG_CONFIG ?= $(shell command -v pg_config)
N ?= 10000 100000 1000000
SUITES ?=
EXTENSION_DIR = $(shell "$(PG_CONFIG)" --sharedir)/extension
# Unlinked before each install: backends that have the old library loaded
# keep their copy, instead of crashing when it is overwritten in place.
LIBRARY = $(shell "$(PG_CONFIG)" --pkglibdir)/authfort_cleanup.so
# Install scripts of earlier releases, so CREATE EXTENSION ... VERSION and
# ALTER EXTENSION ... UPDATE work from them (pgrx installs only the current
# version's script and the update scripts).
RELEASED_SCRIPTS = $(shell ls sql/authfort_cleanup--*.sql | grep -vE -- '--.+--')

.PHONY: setup install install-dev demo stop test bench bench-10m package clean

setup:
	scripts/setup.sh

# Builds and installs into the PostgreSQL that pg_config names.
install: setup
	rm -f "$(LIBRARY)"
	cargo pgrx install --release --pg-config "$(PG_CONFIG)"
	install -m 644 $(RELEASED_SCRIPTS) "$(EXTENSION_DIR)/"

# The unoptimised build the tests run against: it compiles in half the time.
install-dev: setup
	rm -f "$(LIBRARY)"
	cargo pgrx install --pg-config "$(PG_CONFIG)"
	install -m 644 $(RELEASED_SCRIPTS) "$(EXTENSION_DIR)/"

demo: install-dev
	scripts/demo.sh

stop:
	scripts/cluster.sh stop

test: install-dev
	tests/run.sh $(SUITES)

# The 60%-deletable cases at N sessions (T4), then the steady state at 1M
# (T1 and T3 at 1M; T2 needs the 10M table). About 25 minutes here.
bench: install
	bench/run.sh $(N)

# The steady state at 1M and 10M sessions: targets T1 to T3. About 40
# minutes here, most of it seeding and copying the 10M-row tables (6 GB each).
bench-10m: install
	BENCH_ONLY_STEADY=1 BENCH_STEADY_N="1000000 10000000" bench/run.sh

package: setup
	scripts/package.sh

clean:
	scripts/cluster.sh destroy
	cargo clean
