"""The steady state of a real deployment: a large sessions table of which a
small part is deletable, cleaned through the time indexes (targets T1 to T3
of issue #11, T5 of issue #18), and what those indexes cost AuthFort's
refreshes. bench.py runs it after its own cases.

Settings (environment):
  BENCH_STEADY_N          sizes of the tables with 100,000 deletable rows,
                          e.g. "1000000 10000000" (make bench-10m); default 1000000
  BENCH_STEADY_1PCT_N     sizes of the tables with 1 % deletable (T5), e.g.
                          "2000000 10000000" (make bench-10m); default 2000000
  BENCH_STEADY_REPEAT     runs of each variant up to 2M rows; median kept (3)
  BENCH_STEADY_REPEAT_10M runs of each variant above 2M rows (1: a copy of a
                          10M-row database takes most of a minute)
  BENCH_REFRESH_SECONDS   pgbench duration per refresh-throughput round (20)
  BENCH_REFRESH_ROUNDS    rounds of it, each with and without the indexes (3)
  BENCH_STEADY_JSON       a file to write every table's medians to, for
                          bench/charts.py (make bench-10m sets it)

Two kinds of table. Those of BENCH_STEADY_N hold the same 100,000 deletable
rows (90,000 expired and 10,000 revoked but unexpired) whatever their size,
so a run's cost should follow those rows and not the table. Those of
BENCH_STEADY_1PCT_N hold 1 % deletable in the same proportions (20,000 at
2M); at 10M that is the first kind's table, seeded and measured once. Two
layouts (bench/seed_steady.sql): `ordered`, where rows expire in the order
they were inserted, as in a real table, and `scattered`, for information,
where every expired row is on a heap page of its own; the 1 % tables are
ordered only.
"""

import asyncio
import json
import os
import re
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bench import (CAP, CLIENTS, HERE, HOST, PORT, RAW_SESSIONS, USER, Outcome, authfort_variant, connect, copy, drop,
                   log, make_template, median_outcome, ratio, ratio_text, seconds_text, sql_variant, spread_text,
                   verdict)

# Empty: skip the steady state (make bench-10m runs it on its own).
SIZES = [int(n) for n in os.environ.get("BENCH_STEADY_N", "1000000").split()]
ONE_PERCENT_SIZES = [int(n) for n in os.environ.get("BENCH_STEADY_1PCT_N", "2000000").split()]
REPEAT = int(os.environ.get("BENCH_STEADY_REPEAT", "3"))
REPEAT_LARGE = int(os.environ.get("BENCH_STEADY_REPEAT_10M", "1"))
REFRESH_SECONDS = int(os.environ.get("BENCH_REFRESH_SECONDS", "20"))
REFRESH_ROUNDS = int(os.environ.get("BENCH_REFRESH_ROUNDS", "3"))
JSON_PATH = os.environ.get("BENCH_STEADY_JSON", "")
LAYOUTS = ["ordered", "scattered"]
EXPIRED, REVOKED = 90_000, 10_000
# Up to this size a copy takes seconds, so every variant runs REPEAT times.
REPEAT_ALL_UP_TO = 2_000_000

TIME_INDEXES = ("ix_authfort_refresh_tokens_expires_at", "ix_authfort_refresh_tokens_expires_at_revoked")
DROP_TIME_INDEXES = "DROP INDEX " + ", ".join(TIME_INDEXES)
LAST_RUN_SESSIONS = "SELECT sessions FROM authfort_cleanup_runs ORDER BY id DESC LIMIT 1"
RAW_KEEP = "DELETE FROM authfort_refresh_tokens WHERE expires_at < now()"

# name -> (statement, statement run first on the same connection, rows counted by)
RAW, RUN, FUNCTION = "raw DELETE, time indexes (baseline)", "CALL authfort_cleanup_run()", "authfort_cleanup_sessions()"
RAW_K = "raw DELETE WHERE expires_at < now() (keep baseline)"
RUN_K = "CALL authfort_cleanup_run(keep_revoked_until_expired => true)"
FUNCTION_K = "authfort_cleanup_sessions(keep_revoked_until_expired => true)"
RUN_UNINDEXED = "CALL authfort_cleanup_run(), no time indexes (0.2.0's walk)"
VARIANTS = {
    RAW: (RAW_SESSIONS, None, None),
    FUNCTION: ("SELECT authfort_cleanup_sessions()", None, None),
    RUN: ("CALL authfort_cleanup_run()", None, LAST_RUN_SESSIONS),
    RAW_K: (RAW_KEEP, None, None),
    FUNCTION_K: ("SELECT authfort_cleanup_sessions(keep_revoked_until_expired => true)", None, None),
    RUN_K: ("CALL authfort_cleanup_run(keep_revoked_until_expired => true)", None, LAST_RUN_SESSIONS),
    RUN_UNINDEXED: ("CALL authfort_cleanup_run()", DROP_TIME_INDEXES, LAST_RUN_SESSIONS),
}
KEEP_VARIANTS = (RAW_K, FUNCTION_K, RUN_K)
# AuthFort's own cleanup_expired_sessions(), through its own engine and ORM:
# on the same copy as the others (so through the same indexes: it issues the
# same DELETE), and as AuthFort's users run it, with the replaced_by index
# check() insists on but without the opt-in time indexes.
AUTHFORT = "AuthFort cleanup_expired_sessions()"
AUTHFORT_UNINDEXED = "AuthFort cleanup_expired_sessions(), no time indexes"
AUTHFORT_VARIANTS = {AUTHFORT: False, AUTHFORT_UNINDEXED: True}
# What a 1 %-only table runs: T5's two, and the others of the chart.
ONE_PERCENT_VARIANTS = (RAW, FUNCTION, RUN, AUTHFORT)


@dataclass
class Table:
    n: int
    layout: str
    # What the seed was asked for; `deletable` and `expired` are what it made.
    expired_wanted: int
    revoked_wanted: int
    deletable: int = 0
    expired: int = 0
    mb: float = 0.0
    outcomes: dict[str, Outcome] = field(default_factory=dict)

    @property
    def fixed(self) -> bool:
        """One of the tables with the same 100,000 deletable rows (T1 to T3)."""
        return (self.expired_wanted, self.revoked_wanted) == (EXPIRED, REVOKED)

    @property
    def percent(self) -> float:
        return 100.0 * (self.expired_wanted + self.revoked_wanted) / self.n

    def variants(self) -> list[str]:
        if not self.fixed:
            return list(ONE_PERCENT_VARIANTS)
        names = list(VARIANTS)
        if self.layout == "ordered":
            names += list(AUTHFORT_VARIANTS)
        return names


@dataclass
class Throughput:
    with_time_indexes: list[float] = field(default_factory=list)
    without: list[float] = field(default_factory=list)


def planned_tables() -> list[Table]:
    """The fixed-count tables, then the 1 % ones that are not among them (1 %
    of 10M is the fixed count: that table is measured once, for both)."""
    tables = [Table(n, layout, EXPIRED, REVOKED) for n in sorted(set(SIZES)) for layout in LAYOUTS]
    for n in sorted(set(ONE_PERCENT_SIZES)):
        expired, revoked = n * 9 // 1000, n // 1000
        if not any(t.n == n and t.layout == "ordered" and (t.expired_wanted, t.revoked_wanted) == (expired, revoked)
                   for t in tables):
            tables.append(Table(n, "ordered", expired, revoked))
    return tables


def template_name(table: Table) -> str:
    return f"bench_steady_{table.layout}_{table.n}_{table.expired_wanted + table.revoked_wanted}"


async def seed(table: Table) -> None:
    template = template_name(table)
    log(f"steady N={table.n} {table.layout}: seeding {template}")
    started = time.perf_counter()
    await make_template(template, "seed_steady.sql",
                        {"bench.n": table.n, "bench.expired": table.expired_wanted,
                         "bench.revoked": table.revoked_wanted, "bench.layout": table.layout})
    connection = await connect(template)
    try:
        # The fixes authfort_cleanup_check() names, on every copy: the
        # replaced_by index and the time indexes.
        await connection.execute("SELECT count(*) FROM authfort_cleanup_create_indexes(time_indexes => true)")
        await connection.execute("VACUUM ANALYZE authfort_refresh_tokens")
        table.deletable, table.expired, mb = await connection.fetchrow(
            "SELECT count(*) FILTER (WHERE revoked OR expires_at < now()), count(*) FILTER (WHERE expires_at < now()),"
            " pg_total_relation_size('authfort_refresh_tokens') / 1048576.0 FROM authfort_refresh_tokens")
        table.mb = float(mb)
    finally:
        await connection.close()
    log(f"steady N={table.n} {table.layout}: seeded in {time.perf_counter() - started:.0f} s,"
        f" {table.deletable} deletable, {table.mb:.0f} MB")


async def authfort_sessions(database: str, drop_time_indexes: bool) -> Outcome:
    if drop_time_indexes:
        connection = await connect(database)
        try:
            await connection.execute(DROP_TIME_INDEXES)
        finally:
            await connection.close()
    return await authfort_variant(database, "cleanup_expired_sessions", CAP)


async def bench_table(table: Table) -> None:
    await seed(table)
    template, database = template_name(table), f"bench_steady_run_{table.n}"
    names = table.variants()
    runs: dict[str, list[Outcome]] = {name: [] for name in names}
    for round_ in range(REPEAT if table.n <= REPEAT_ALL_UP_TO else REPEAT_LARGE):
        # Each round starts one variant later, so that no variant always
        # meets the cache and the disk in the state the one before it left.
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            if name == RUN_UNINDEXED and round_ > 0:
                continue  # for information only: once is enough
            await copy(template, database)
            log(f"steady N={table.n} {table.layout}: {name} ({round_ + 1})")
            try:
                if name in AUTHFORT_VARIANTS:
                    outcome = await authfort_sessions(database, AUTHFORT_VARIANTS[name])
                else:
                    statement, before, counted_by = VARIANTS[name]
                    outcome = await sql_variant(database, statement, before=before, cap=CAP, counted_by=counted_by)
                runs[name].append(outcome)
            finally:
                await drop(database)
    for name, outcomes in runs.items():
        outcome = median_outcome(outcomes)
        expected = table.expired if name in KEEP_VARIANTS else table.deletable
        if outcome.status == "ok" and outcome.rows != expected:
            outcome.detail = f"deleted {outcome.rows}, expected {expected}"
        table.outcomes[name] = outcome


def pgbench_tps(database: str, nclients: int) -> float:
    """AuthFort-style refreshes as fast as they go, for REFRESH_SECONDS."""
    command = ["pgbench", "-n", "-M", "prepared", "-f", str(HERE / "refresh.pgbench"), "-D", f"nclients={nclients}",
               "-T", str(REFRESH_SECONDS), "-c", str(CLIENTS), "-j", str(min(CLIENTS, 2)),
               "-h", HOST, "-p", str(PORT), "-U", USER, database]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    match = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", output)
    if not match:
        raise RuntimeError(f"no tps in pgbench's output: {output[-300:]}")
    return float(match.group(1))


async def refresh_throughput(table: Table) -> Throughput:
    """Refreshes per second on the ordered table, with and without the time
    indexes, alternating so a noisy minute hits both alike."""
    template, database = template_name(table), "bench_steady_refresh"
    connection = await connect(template)
    try:
        nclients = await connection.fetchval("SELECT count(*) FROM bench_clients")
    finally:
        await connection.close()
    result = Throughput()
    for round_ in range(REFRESH_ROUNDS):
        for with_indexes in (True, False):
            await copy(template, database)
            try:
                connection = await connect(database)
                try:
                    if not with_indexes:
                        await connection.execute(DROP_TIME_INDEXES)
                    await connection.execute("CHECKPOINT")
                finally:
                    await connection.close()
                log(f"refresh throughput N={table.n} ({round_ + 1}/{REFRESH_ROUNDS}), time indexes: {with_indexes}")
                tps = await asyncio.to_thread(pgbench_tps, database, nclients)
                (result.with_time_indexes if with_indexes else result.without).append(tps)
            finally:
                await drop(database)
    return result


async def run() -> tuple[list[Table], Throughput | None]:
    tables = planned_tables()
    for table in tables:
        await bench_table(table)
    throughput = None
    if REFRESH_SECONDS > 0 and SIZES:
        smallest = next(t for t in tables if t.fixed and t.layout == "ordered" and t.n == min(SIZES))
        throughput = await refresh_throughput(smallest)
    for table in tables:
        await drop(template_name(table))
    if JSON_PATH:
        await write_json(tables)
    return tables, throughput


async def write_json(tables: list[Table]) -> None:
    """Every table's medians, for bench/charts.py."""
    connection = await connect("postgres")
    try:
        server = await connection.fetchval("SHOW server_version")
        extension = await connection.fetchval(
            "SELECT default_version FROM pg_available_extensions WHERE name = 'authfort_cleanup'")
    finally:
        await connection.close()

    def outcome_json(outcome: Outcome) -> dict:
        low, high = outcome.spread or (outcome.seconds, outcome.seconds)
        return {"status": outcome.status, "seconds": outcome.seconds, "rows": outcome.rows, "min": low, "max": high,
                "detail": outcome.detail}

    data = {
        "postgres": server,
        "authfort_cleanup": extension,
        "finished": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "repeat": REPEAT,
        "repeat_large": REPEAT_LARGE,
        "tables": [{"n": t.n, "layout": t.layout, "deletable": t.deletable, "expired": t.expired, "mb": round(t.mb),
                    "variants": {name: outcome_json(outcome) for name, outcome in t.outcomes.items()}}
                   for t in tables],
    }
    with open(JSON_PATH, "w") as output:
        json.dump(data, output, indent=1)
        output.write("\n")
    log(f"steady state: medians written to {JSON_PATH}")


def at_most(value: float | None, limit: float) -> str:
    """bench.py's verdict on a ratio that must stay at or under `limit`."""
    return verdict(value, f"<= {limit}x", value is not None and value <= limit)


def report(tables: list[Table], throughput: Throughput | None) -> None:
    print(f"Steady state: sessions tables with {EXPIRED + REVOKED:,} deletable rows ({EXPIRED:,} expired,"
          f" {REVOKED:,} revoked, unexpired) whatever their size, and tables with 1% deletable in the same proportions;"
          f" the replaced_by and time indexes on every copy;"
          f" median of {REPEAT} up to {REPEAT_ALL_UP_TO // 1_000_000}M rows, of {REPEAT_LARGE} above;"
          f" ratio = time / raw DELETE of the same rule")
    header = f"{'N':>10}  {'layout':<9} {'variant':<64} {'deleted':>8} {'time':>10} {'min..max s':>13} {'ratio':>7}"
    print(header)
    print("-" * len(header))
    for table in tables:
        print(f"{table.n:>10,}  {table.layout:<9} ({table.deletable:,} deletable, {table.percent:g}%,"
              f" {table.mb:.0f} MB with indexes)")
        for name, outcome in table.outcomes.items():
            base = table.outcomes[RAW_K if name in KEEP_VARIANTS else RAW]
            value = ratio(outcome.seconds, base.seconds) if outcome.status == base.status == "ok" else None
            print(f"{'':>10}  {'':<9} {name:<64} {outcome.rows if outcome.rows is not None else '':>8} "
                  f"{seconds_text(outcome):>10} {spread_text(outcome):>13} {ratio_text(value):>7}")
            if outcome.detail:
                print(f"{'':>22}{outcome.detail}")
    print()
    if throughput:
        with_indexes, without = (statistics.median(each) for each in (throughput.with_time_indexes, throughput.without))
        print(f"AuthFort-style refresh throughput (bench/refresh.pgbench, -c {CLIENTS}, no rate limit,"
              f" {REFRESH_SECONDS} s, {REFRESH_ROUNDS} rounds, median) at N={min(SIZES):,}, ordered:")
        print(f"  replaced_by index only: {without:.0f} tps ({', '.join(f'{t:.0f}' for t in throughput.without)})")
        print(f"  + the two time indexes: {with_indexes:.0f} tps"
              f" ({', '.join(f'{t:.0f}' for t in throughput.with_time_indexes)}):"
              f" {100 * (with_indexes / without - 1):+.1f}%")
        print()

    def seconds(table: Table | None, name: str) -> float | None:
        outcome = table.outcomes.get(name) if table else None
        return outcome.seconds if outcome and outcome.status == "ok" and not outcome.detail else None

    def fixed(n: int, layout: str) -> Table | None:
        return next((t for t in tables if t.n == n and t.layout == layout and t.fixed), None)

    if SIZES:
        largest = max(SIZES)
        baseline_n = 1_000_000
        print("Targets (issue #11)")
        for layout in LAYOUTS:
            info = "" if layout == "ordered" else "  [T2: for information]"
            for label, ours, raw in (("T1", RUN, RAW), ("T3", FUNCTION_K, RAW_K), ("T3", RUN_K, RAW_K)):
                value = ratio(seconds(fixed(largest, layout), ours), seconds(fixed(largest, layout), raw))
                print(f"  {label} {layout}: {ours} vs raw DELETE at N={largest:,}: {at_most(value, 1.5)}")
            for label, ours in (("T2", RUN), ("T3", FUNCTION_K), ("T3", RUN_K)):
                if largest == baseline_n:
                    print(f"  {label} {layout}: {ours} at 10M vs 1M: n/a (run make bench-10m){info}")
                    continue
                value = ratio(seconds(fixed(largest, layout), ours), seconds(fixed(baseline_n, layout), ours))
                print(f"  {label} {layout}: {ours} at N={largest:,} vs N={baseline_n:,}: {at_most(value, 1.3)}{info}")
        value = ratio(seconds(fixed(largest, "ordered"), FUNCTION), seconds(fixed(largest, "ordered"), RAW))
        print(f"    (for reference: {FUNCTION} vs raw DELETE at N={largest:,}, ordered: {ratio_text(value)})")
    if ONE_PERCENT_SIZES:
        print("Targets (issue #18)")
        for n in sorted(set(ONE_PERCENT_SIZES) | {2_000_000, 10_000_000}):
            if n not in ONE_PERCENT_SIZES:
                print(f"  T5 ordered, 1% deletable: {RUN} vs raw DELETE at N={n:,}: n/a"
                      f" (BENCH_STEADY_1PCT_N does not list it; make bench-10m runs 2M and 10M)")
                continue
            table = next(t for t in tables if t.n == n and t.layout == "ordered"
                         and (t.expired_wanted, t.revoked_wanted) == (n * 9 // 1000, n // 1000))
            value = ratio(seconds(table, RUN), seconds(table, RAW))
            print(f"  T5 ordered, 1% deletable: {RUN} vs raw DELETE at N={n:,}: {at_most(value, 1.15)}")
            value = ratio(seconds(table, AUTHFORT), seconds(table, RAW))
            print(f"    (for reference: {AUTHFORT} vs raw DELETE at N={n:,}: {ratio_text(value)})")
