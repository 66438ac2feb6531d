"""The steady state of a real deployment: a large sessions table of which a
small, fixed number of rows is deletable, cleaned through the time indexes
(targets T1 to T3 of issue #11), and what those indexes cost AuthFort's
refreshes. bench.py runs it after its own cases.

Settings (environment):
  BENCH_STEADY_N          table sizes, e.g. "1000000 10000000" (make bench-10m)
  BENCH_STEADY_REPEAT     runs of each variant up to 1M rows; median kept (3)
  BENCH_STEADY_REPEAT_10M runs of each variant above 1M rows (1: a copy of a
                          10M-row database takes most of a minute)
  BENCH_REFRESH_SECONDS   pgbench duration per refresh-throughput round (20)
  BENCH_REFRESH_ROUNDS    rounds of it, each with and without the indexes (3)

Every table, whatever its size, holds the same 100,000 deletable rows
(90,000 expired and 10,000 revoked but unexpired), so a run's cost should
follow those rows and not the table. Two layouts (bench/seed_steady.sql):
`ordered`, where rows expire in the order they were inserted, as in a real
table, and `scattered`, for information, where every expired row is on a
heap page of its own.
"""

import asyncio
import os
import re
import statistics
import subprocess
import time
from dataclasses import dataclass, field

from bench import (CAP, CLIENTS, HERE, HOST, PORT, RAW_SESSIONS, USER, Outcome, connect, copy, drop, log,
                   make_template, median_outcome, ratio, ratio_text, seconds_text, sql_variant, spread_text, verdict)

# Empty: skip the steady state (make bench-10m runs it on its own).
SIZES = [int(n) for n in os.environ.get("BENCH_STEADY_N", "1000000").split()]
REPEAT = int(os.environ.get("BENCH_STEADY_REPEAT", "3"))
REPEAT_LARGE = int(os.environ.get("BENCH_STEADY_REPEAT_10M", "1"))
REFRESH_SECONDS = int(os.environ.get("BENCH_REFRESH_SECONDS", "20"))
REFRESH_ROUNDS = int(os.environ.get("BENCH_REFRESH_ROUNDS", "3"))
LAYOUTS = ["ordered", "scattered"]
EXPIRED, REVOKED = 90_000, 10_000

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


@dataclass
class Table:
    n: int
    layout: str
    deletable: int
    expired: int
    mb: float
    outcomes: dict[str, Outcome] = field(default_factory=dict)


@dataclass
class Throughput:
    with_time_indexes: list[float] = field(default_factory=list)
    without: list[float] = field(default_factory=list)


def template_name(n: int, layout: str) -> str:
    return f"bench_steady_{layout}_{n}"


async def seed(n: int, layout: str) -> tuple[int, int, float]:
    template = template_name(n, layout)
    log(f"steady N={n} {layout}: seeding {template}")
    started = time.perf_counter()
    await make_template(template, "seed_steady.sql",
                        {"bench.n": n, "bench.expired": EXPIRED, "bench.revoked": REVOKED, "bench.layout": layout})
    connection = await connect(template)
    try:
        # The fixes authfort_cleanup_check() names, on every copy: the
        # replaced_by index and the time indexes.
        await connection.execute("SELECT count(*) FROM authfort_cleanup_create_indexes(time_indexes => true)")
        await connection.execute("VACUUM ANALYZE authfort_refresh_tokens")
        deletable, expired, mb = await connection.fetchrow(
            "SELECT count(*) FILTER (WHERE revoked OR expires_at < now()), count(*) FILTER (WHERE expires_at < now()),"
            " pg_total_relation_size('authfort_refresh_tokens') / 1048576.0 FROM authfort_refresh_tokens")
    finally:
        await connection.close()
    log(f"steady N={n} {layout}: seeded in {time.perf_counter() - started:.0f} s, {deletable} deletable, {mb:.0f} MB")
    return deletable, expired, float(mb)


async def bench_table(n: int, layout: str) -> Table:
    deletable, expired, mb = await seed(n, layout)
    table = Table(n, layout, deletable, expired, mb)
    template, database = template_name(n, layout), f"bench_steady_run_{n}"
    runs: dict[str, list[Outcome]] = {name: [] for name in VARIANTS}
    for round_ in range(REPEAT if n <= 1_000_000 else REPEAT_LARGE):
        for name, (statement, before, counted_by) in VARIANTS.items():
            if name == RUN_UNINDEXED and round_ > 0:
                continue  # for information only: once is enough
            await copy(template, database)
            log(f"steady N={n} {layout}: {name} ({round_ + 1})")
            try:
                runs[name].append(await sql_variant(database, statement, before=before, cap=CAP, counted_by=counted_by))
            finally:
                await drop(database)
    for name, outcomes in runs.items():
        outcome = median_outcome(outcomes)
        expected = expired if name in (RAW_K, FUNCTION_K, RUN_K) else deletable
        if outcome.status == "ok" and outcome.rows != expected:
            outcome.detail = f"deleted {outcome.rows}, expected {expected}"
        table.outcomes[name] = outcome
    return table


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


async def refresh_throughput(n: int) -> Throughput:
    """Refreshes per second on the ordered table, with and without the time
    indexes, alternating so a noisy minute hits both alike."""
    template, database = template_name(n, "ordered"), "bench_steady_refresh"
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
                log(f"refresh throughput N={n} ({round_ + 1}/{REFRESH_ROUNDS}), time indexes: {with_indexes}")
                tps = await asyncio.to_thread(pgbench_tps, database, nclients)
                (result.with_time_indexes if with_indexes else result.without).append(tps)
            finally:
                await drop(database)
    return result


async def run() -> tuple[list[Table], Throughput | None]:
    tables = [await bench_table(n, layout) for n in sorted(set(SIZES)) for layout in LAYOUTS]
    throughput = await refresh_throughput(min(SIZES)) if REFRESH_SECONDS > 0 else None
    for n in sorted(set(SIZES)):
        for layout in LAYOUTS:
            await drop(template_name(n, layout))
    return tables, throughput


def at_most(value: float | None, limit: float) -> str:
    """bench.py's verdict on a ratio that must stay at or under `limit`."""
    return verdict(value, f"<= {limit}x", value is not None and value <= limit)


def report(tables: list[Table], throughput: Throughput | None) -> None:
    print(f"Steady state: sessions tables with {EXPIRED + REVOKED:,} deletable rows ({EXPIRED:,} expired,"
          f" {REVOKED:,} revoked, unexpired), whatever their size; the replaced_by and time indexes on every copy;"
          f" median of {REPEAT} up to 1M rows, of {REPEAT_LARGE} above; ratio = time / raw DELETE of the same rule")
    header = f"{'N':>10}  {'layout':<9} {'variant':<64} {'deleted':>8} {'time':>10} {'min..max s':>13} {'ratio':>7}"
    print(header)
    print("-" * len(header))
    for table in tables:
        print(f"{table.n:>10,}  {table.layout:<9} ({table.deletable:,} deletable, {table.mb:.0f} MB with indexes)")
        for name, outcome in table.outcomes.items():
            base = table.outcomes[RAW_K if name in (RAW_K, FUNCTION_K, RUN_K) else RAW]
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

    def seconds(n: int, layout: str, name: str) -> float | None:
        table = next((t for t in tables if t.n == n and t.layout == layout), None)
        outcome = table.outcomes.get(name) if table else None
        return outcome.seconds if outcome and outcome.status == "ok" and not outcome.detail else None

    largest = max(SIZES)
    baseline_n = 1_000_000
    print("Targets (issue #11)")
    for layout in LAYOUTS:
        info = "" if layout == "ordered" else "  [T2: for information]"
        for label, ours, raw in (("T1", RUN, RAW), ("T3", FUNCTION_K, RAW_K), ("T3", RUN_K, RAW_K)):
            value = ratio(seconds(largest, layout, ours), seconds(largest, layout, raw))
            print(f"  {label} {layout}: {ours} vs raw DELETE at N={largest:,}: {at_most(value, 1.5)}")
        for label, ours in (("T2", RUN), ("T3", FUNCTION_K), ("T3", RUN_K)):
            if largest == baseline_n:
                print(f"  {label} {layout}: {ours} at 10M vs 1M: n/a (run make bench-10m){info}")
                continue
            value = ratio(seconds(largest, layout, ours), seconds(baseline_n, layout, ours))
            print(f"  {label} {layout}: {ours} at N={largest:,} vs N={baseline_n:,}: {at_most(value, 1.3)}{info}")
    value = ratio(seconds(largest, "ordered", FUNCTION), seconds(largest, "ordered", RAW))
    print(f"    (for reference: {FUNCTION} vs raw DELETE at N={largest:,}, ordered: {ratio_text(value)})")
