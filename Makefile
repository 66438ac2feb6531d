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

.PHONY: setup install install-dev demo stop test bench package clean

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

bench: install
	bench/run.sh $(N)

package: setup
	scripts/package.sh

clean:
	scripts/cluster.sh destroy
	cargo clean
