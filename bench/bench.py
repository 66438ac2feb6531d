"""The benchmark behind doc/benchmarks.md's numbers; bench/run.sh starts its cluster.

usage: bench.py N [N ...]        (session counts, e.g. 10000 100000 1000000)

Expects PGHOST/PGPORT/PGUSER for a throwaway cluster. Settings (environment):
  BENCH_CAP              seconds before a quadratic variant is cancelled (120)
  BENCH_REPEAT           runs of each linear session variant; median kept (3)
  BENCH_KEYS             signing keys in the keys benchmark (10000)
  BENCH_KEY_REPEAT       runs of each keys variant; median kept (5)
  BENCH_PGBENCH_SECONDS  minimum pgbench duration per case (15)
  BENCH_IMPACT_ROUNDS    rounds of the application-impact cases (3)
  BENCH_RATE             refreshes per second pgbench aims for (200)
  BENCH_CLIENTS          pgbench clients (4)
  BENCH_LATENCY_LIMIT_MS pgbench --latency-limit (100)
  BENCH_APP_LOCK_TIMEOUT the application's lock_timeout under pgbench (2s)
  BENCH_ONLY_STEADY      1: skip the cases above, run only bench/steady_state.py
  (and bench/steady_state.py's own, BENCH_STEADY_N and the rest)

bench/run.sh also reads BENCH_PORT, the port of its cluster (54420).

Every variant runs on its own copy (CREATE DATABASE ... TEMPLATE) of a
template seeded once per N, so all see byte-identical data: same rows, same
heap layout, same statistics. Times are client wall-clock around the one
statement (or AuthFort method call) being measured; index builds are timed
separately. Machines are noisy, so the ratios against the baseline measured
in the same run are what matter, not the absolute times.
"""

import asyncio
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
from authfort import AuthFort

HERE = Path(__file__).resolve().parent
HOST = os.environ["PGHOST"]
PORT = int(os.environ["PGPORT"])
USER = os.environ.get("PGUSER", "postgres")

CAP = float(os.environ.get("BENCH_CAP", "120"))
REPEAT = int(os.environ.get("BENCH_REPEAT", "3"))
KEYS = int(os.environ.get("BENCH_KEYS", "10000"))
KEY_REPEAT = int(os.environ.get("BENCH_KEY_REPEAT", "5"))
PGBENCH_SECONDS = int(os.environ.get("BENCH_PGBENCH_SECONDS", "15"))
IMPACT_ROUNDS = int(os.environ.get("BENCH_IMPACT_ROUNDS", "3"))
RATE = int(os.environ.get("BENCH_RATE", "200"))
CLIENTS = int(os.environ.get("BENCH_CLIENTS", "4"))
LATENCY_LIMIT_MS = float(os.environ.get("BENCH_LATENCY_LIMIT_MS", "100"))
APP_LOCK_TIMEOUT = os.environ.get("BENCH_APP_LOCK_TIMEOUT", "2s")
# Only the steady-state cases (bench/steady_state.py): make bench-10m.
ONLY_STEADY = os.environ.get("BENCH_ONLY_STEADY") == "1"
# pgbench runs this long before a cleanup starts, so "during" and "alone"
# both exclude connection start-up.
WARMUP_SECONDS = 2.0

# AuthFort's cleanup_expired_sessions(), as SQL.
RAW_SESSIONS = "DELETE FROM authfort_refresh_tokens WHERE revoked OR expires_at < now()"
RAW_KEYS = "DELETE FROM authfort_signing_keys WHERE expires_at IS NOT NULL AND expires_at < now()"
# The fix AuthFort lacks, by hand; the baseline every ratio is taken against.
INDEX = "CREATE INDEX ON authfort_refresh_tokens (replaced_by)"


def log(message: str) -> None:
    """Progress, on stderr, so stdout is only the results."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# ---------------------------------------------------------------- databases


async def connect(database: str) -> asyncpg.Connection:
    return await asyncpg.connect(host=HOST, port=PORT, user=USER, database=database)


async def admin(*statements: str) -> None:
    connection = await connect("postgres")
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


async def copy(template: str, database: str) -> None:
    # FILE_COPY: a file-level copy plus one checkpoint, much faster than
    # WAL-logging every block of a multi-hundred-MB template.
    await admin(f"DROP DATABASE IF EXISTS {quote_ident(database)} WITH (FORCE)",
                f"CREATE DATABASE {quote_ident(database)} TEMPLATE {quote_ident(template)} STRATEGY FILE_COPY")


async def drop(database: str) -> None:
    await admin(f"DROP DATABASE IF EXISTS {quote_ident(database)} WITH (FORCE)")


def authfort_url(database: str) -> str:
    return f"postgresql+asyncpg://{USER}@127.0.0.1:{PORT}/{database}"


async def make_template(database: str, seed_file: str, settings: dict[str, int]) -> None:
    """AuthFort's schema by AuthFort's migrations, the extension, the seed,
    then VACUUM ANALYZE so every copy starts with a visibility map and the
    planner statistics (and pg_class.reltuples/relpages) a live database has."""
    await drop(database)
    await admin(f"CREATE DATABASE {quote_ident(database)}")
    auth = AuthFort(database_url=authfort_url(database))
    try:
        await auth.migrate()
    finally:
        await auth.dispose()
    connection = await connect(database)
    try:
        await connection.execute("CREATE EXTENSION authfort_cleanup")
        for name, value in settings.items():
            await connection.execute("SELECT set_config($1, $2, false)", name, str(value))
        await connection.execute((HERE / seed_file).read_text())
        await connection.execute("VACUUM ANALYZE")
    finally:
        await connection.close()


# ---------------------------------------------------------------- timing


@dataclass
class Outcome:
    """One measured variant."""

    status: str  # ok | cap | refused | error | skipped
    seconds: float | None = None
    rows: int | None = None
    index_seconds: float | None = None
    detail: str = ""
    # (fastest, slowest) of the repeats the median was taken from
    spread: tuple[float, float] | None = None


async def cancel_backends(database: str) -> None:
    """Cancels whatever runs in `database`. Each variant has a database of its
    own, so that is exactly the statement being capped, whoever's connection
    (AuthFort's pool, say) it is on."""
    connection = await connect("postgres")
    try:
        await connection.execute(
            "SELECT pg_cancel_backend(pid) FROM pg_stat_activity"
            " WHERE datname = $1 AND pid <> pg_backend_pid() AND state = 'active'", database)
    finally:
        await connection.close()


async def timed(database: str, work, cap: float | None) -> Outcome:
    """Runs `work()` (a coroutine returning the rows it deleted) and times it.
    At the cap the server-side statement is cancelled; shield() keeps the task
    alive until the server's cancellation has come back through it, so no
    statement is left running into the next variant."""
    task = asyncio.ensure_future(work())
    started = time.perf_counter()
    try:
        rows = await asyncio.wait_for(asyncio.shield(task), cap)
        return Outcome("ok", time.perf_counter() - started, rows)
    except asyncio.TimeoutError:
        while not task.done():
            await cancel_backends(database)
            await asyncio.wait({task}, timeout=1)
        if not task.cancelled():
            task.exception()  # the expected "canceling statement due to user request"
        return Outcome("cap", cap)
    except asyncpg.PostgresError as error:
        seconds = time.perf_counter() - started
        if error.sqlstate == "55000":  # object_not_in_prerequisite_state: the quadratic guard
            return Outcome("refused", seconds, detail=error.message)
        return Outcome("error", seconds, detail=f"{error.sqlstate}: {error.message}")


async def sql_variant(database: str, statement: str, *, before: str | None = None,
                      cap: float | None = None, counted_by=None) -> Outcome:
    """`statement` on a fresh connection, after `before` (timed on its own as
    the index build). The deleted rows come from the command tag, the
    function's result, or `counted_by` run afterwards."""
    connection = await connect(database)
    try:
        index_seconds = None
        if before:
            started = time.perf_counter()
            await connection.execute(before)
            index_seconds = time.perf_counter() - started

        async def work() -> int:
            if statement.startswith("SELECT"):
                return await connection.fetchval(statement)
            tag = await connection.execute(statement)
            return int(tag.split()[-1]) if tag.startswith("DELETE") else None

        outcome = await timed(database, work, cap)
        outcome.index_seconds = index_seconds
        if outcome.status == "ok" and counted_by:
            outcome.rows = await connection.fetchval(counted_by)
        return outcome
    finally:
        await connection.close()


async def authfort_variant(database: str, method: str, cap: float | None) -> Outcome:
    """AuthFort's own cleanup method, through its own engine and ORM."""
    auth = AuthFort(database_url=authfort_url(database))
    try:
        # Open the pool's connection first (AuthFort's _engine is private, but
        # there is no public way), so connecting is not part of the time.
        from sqlalchemy import text
        async with auth._engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
        return await timed(database, getattr(auth, method), cap)
    finally:
        await auth.dispose()


def median_outcome(outcomes: list[Outcome]) -> Outcome:
    ok = [outcome for outcome in outcomes if outcome.status == "ok"]
    if len(ok) < len(outcomes):
        return next(outcome for outcome in outcomes if outcome.status != "ok")
    result = sorted(ok, key=lambda outcome: outcome.seconds)[len(ok) // 2]
    indexes = [outcome.index_seconds for outcome in ok if outcome.index_seconds is not None]
    return Outcome("ok", result.seconds, result.rows, statistics.median(indexes) if indexes else None,
                   spread=(min(o.seconds for o in ok), max(o.seconds for o in ok)) if len(ok) > 1 else None)


# ---------------------------------------------------------------- sessions

BASELINE = "raw DELETE + index (baseline)"
SESSION_VARIANTS = [
    "AuthFort cleanup_expired_sessions()",
    "raw DELETE (AuthFort's statement)",
    BASELINE,
    "authfort_cleanup_sessions(), no index",
    "authfort_cleanup_sessions() + create_indexes()",
    "raw DELETE + index, in batches that COMMIT",
    "CALL authfort_cleanup_run() + create_indexes()",
]
OURS_FIXED, BATCHED_BASELINE, OURS_RUN = SESSION_VARIANTS[4:7]
LAST_RUN_SESSIONS = "SELECT sessions FROM authfort_cleanup_runs ORDER BY id DESC LIMIT 1"
# The procedure's work by hand, its yardstick: AuthFort's DELETE over the
# same heap block ranges it walks (sized for its default of 10000 rows a
# batch), with a COMMIT after each. A top-level DO block may COMMIT.
RAW_SESSIONS_BATCHED = """
DO $$
DECLARE
    span bigint;
    blocks bigint;
    first bigint := 0;
BEGIN
    SELECT greatest(1, floor(10000 / (reltuples / relpages))), pg_relation_size(oid) / 8192
      INTO span, blocks FROM pg_class WHERE oid = 'authfort_refresh_tokens'::regclass;
    WHILE first < blocks LOOP
        DELETE FROM authfort_refresh_tokens
         WHERE (revoked OR expires_at < now())
           AND ctid >= format('(%s,0)', first)::tid AND ctid < format('(%s,0)', first + span)::tid;
        first := first + span;
        COMMIT;
    END LOOP;
END $$"""


@dataclass
class SessionResults:
    n: int
    deletable: int
    table_mb: float
    outcomes: dict[str, Outcome] = field(default_factory=dict)


async def bench_sessions(n: int, over_cap: set[str], keep_template: bool) -> SessionResults:
    template = f"bench_sessions_{n}"
    log(f"sessions N={n}: seeding template {template}")
    started = time.perf_counter()
    await make_template(template, "seed_sessions.sql", {"bench.n": n})
    connection = await connect(template)
    try:
        deletable = await connection.fetchval(
            "SELECT count(*) FROM authfort_refresh_tokens WHERE revoked OR expires_at < now()")
        table_mb = await connection.fetchval(
            "SELECT pg_total_relation_size('authfort_refresh_tokens') / 1048576.0")
    finally:
        await connection.close()
    log(f"sessions N={n}: seeded in {time.perf_counter() - started:.1f} s, {deletable} deletable, {table_mb:.0f} MB")
    results = SessionResults(n, deletable, float(table_mb))
    database = f"bench_run_{n}"

    async def once(name: str) -> Outcome:
        if name in over_cap:
            # Quadratic: it went over the cap at a smaller N already, and a
            # larger table only makes it slower. Don't spend another cap on it.
            return Outcome("skipped", detail="over the cap at a smaller N")
        await copy(template, database)
        log(f"sessions N={n}: {name}")
        try:
            if name == SESSION_VARIANTS[0]:
                return await authfort_variant(database, "cleanup_expired_sessions", CAP)
            if name == SESSION_VARIANTS[1]:
                return await sql_variant(database, RAW_SESSIONS, cap=CAP)
            if name == BASELINE:
                return await sql_variant(database, RAW_SESSIONS, before=INDEX, cap=CAP)
            if name == SESSION_VARIANTS[3]:
                return await sql_variant(database, "SELECT authfort_cleanup_sessions()", cap=CAP)
            if name == OURS_FIXED:
                return await sql_variant(database, "SELECT authfort_cleanup_sessions()",
                                         before="SELECT count(*) FROM authfort_cleanup_create_indexes()", cap=CAP)
            if name == BATCHED_BASELINE:
                return await sql_variant(database, RAW_SESSIONS_BATCHED, before=INDEX, cap=CAP,
                                         counted_by=f"SELECT {deletable} - count(*) FROM authfort_refresh_tokens"
                                                    " WHERE revoked OR expires_at < now()")
            return await sql_variant(database, "CALL authfort_cleanup_run()",
                                     before="SELECT count(*) FROM authfort_cleanup_create_indexes()", cap=CAP,
                                     counted_by=LAST_RUN_SESSIONS)
        finally:
            await drop(database)

    # The linear variants are compared with each other to a few percent, so
    # they run REPEAT times, interleaved (baseline, ours, run, baseline, ...)
    # so that a noisy minute hits all of them alike; the median is kept.
    linear = [BASELINE, OURS_FIXED, BATCHED_BASELINE, OURS_RUN]
    runs: dict[str, list[Outcome]] = {name: [] for name in linear}
    for _ in range(REPEAT):
        for name in linear:
            runs[name].append(await once(name))
    for name in linear:
        results.outcomes[name] = median_outcome(runs[name])
    for name in SESSION_VARIANTS:
        if name not in linear:
            results.outcomes[name] = await once(name)
            if results.outcomes[name].status == "cap":
                over_cap.add(name)
    for name, outcome in results.outcomes.items():
        if outcome.status == "ok" and outcome.rows != deletable:
            outcome.detail = (outcome.detail + f"; deleted {outcome.rows}, expected {deletable}").lstrip("; ")
    if not keep_template:
        await drop(template)
    return results


# ---------------------------------------------------------------- keys

KEY_VARIANTS = ["AuthFort cleanup_expired_keys()", "raw DELETE", "authfort_cleanup_keys()"]


async def bench_keys() -> tuple[int, dict[str, Outcome]]:
    template = "bench_keys"
    log(f"keys: seeding {KEYS} signing keys")
    await make_template(template, "seed_keys.sql", {"bench.keys": KEYS})
    connection = await connect(template)
    try:
        deletable = await connection.fetchval(
            "SELECT count(*) FROM authfort_signing_keys WHERE expires_at < now() AND NOT is_current")
    finally:
        await connection.close()
    runs: dict[str, list[Outcome]] = {name: [] for name in KEY_VARIANTS}
    for round_ in range(KEY_REPEAT):
        for name in KEY_VARIANTS:
            await copy(template, "bench_run_keys")
            log(f"keys: {name} ({round_ + 1}/{KEY_REPEAT})")
            try:
                if name == KEY_VARIANTS[0]:
                    outcome = await authfort_variant("bench_run_keys", "cleanup_expired_keys", CAP)
                elif name == KEY_VARIANTS[1]:
                    outcome = await sql_variant("bench_run_keys", RAW_KEYS, cap=CAP)
                else:
                    outcome = await sql_variant("bench_run_keys", "SELECT authfort_cleanup_keys()", cap=CAP)
            finally:
                await drop("bench_run_keys")
            runs[name].append(outcome)
    await drop(template)
    outcomes = {name: median_outcome(runs[name]) for name in KEY_VARIANTS}
    for outcome in outcomes.values():
        if outcome.status == "ok" and outcome.rows != deletable:
            outcome.detail = (outcome.detail + f"; deleted {outcome.rows}, expected {deletable}").lstrip("; ")
    return deletable, outcomes


# ---------------------------------------------------------------- application impact

IMPACT_CASES = ["refreshes alone", "during raw DELETE (indexed, 1 statement)", "during CALL authfort_cleanup_run()",
                "during a busy loop as long (reference)"]
# The reference case: one backend kept busy, with no writes, locks or I/O,
# for as long as our run took. On a small machine the CPU it takes is part of
# any cleanup's impact; this shows how much.
BUSY_LOOP = """
DO $$
DECLARE
    until timestamptz := clock_timestamp() + interval '{seconds} seconds';
BEGIN
    WHILE clock_timestamp() < until LOOP
    END LOOP;
END $$"""


@dataclass
class Impact:
    case: str
    transactions: int = 0
    p50_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    late: int = 0
    skipped: int = 0
    errors: int = 0
    lock_timeouts: int = 0
    cleanup_seconds: float | None = None
    cleanup_rows: int | None = None
    detail: str = ""


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1))]


def read_pgbench_logs(prefix: str) -> list[tuple[float, float | None]]:
    """(end time in epoch seconds, latency in ms or None if skipped) for every
    transaction in pgbench's --log files (one per thread). With -R the logged
    latency counts from the scheduled start, so it includes the time a
    transaction waited behind a slow one: what a user would see."""
    transactions = []
    for path in Path(prefix).parent.glob(Path(prefix).name + ".*"):
        for line in path.read_text().splitlines():
            fields = line.split()
            # client_id transaction_no time script_no time_epoch time_us [schedule_lag]
            end = int(fields[4]) + int(fields[5]) / 1e6
            latency = None if fields[2] == "skipped" else int(fields[2]) / 1000
            transactions.append((end, latency))
    return transactions


async def impact_case(template: str, case: str, statement: str | None, nclients: int, seconds: int,
                      workdir: str) -> Impact:
    """pgbench's refreshes, with `statement` run after the warm-up (or,
    None, alone)."""
    database = "bench_impact"
    await copy(template, database)
    result = Impact(case)
    try:
        connection = await connect(database)
        try:
            # The same fixed table in every case: the missing index would
            # make the raw DELETE quadratic and our functions refuse.
            await connection.fetchval("SELECT count(*) FROM authfort_cleanup_create_indexes()")
            await connection.execute("CHECKPOINT")
        finally:
            await connection.close()
        prefix = f"{workdir}/case{IMPACT_CASES.index(case)}"
        command = [
            "pgbench", "-n", "-M", "prepared", "-f", str(HERE / "refresh.pgbench"),
            "-D", f"nclients={nclients}", "-R", str(RATE), "-T", str(seconds),
            "-c", str(CLIENTS), "-j", str(min(CLIENTS, 2)),
            "--latency-limit", str(LATENCY_LIMIT_MS), "-P", "5",
            "--log", "--log-prefix", prefix,
            "-h", HOST, "-p", str(PORT), "-U", USER, database,
        ]
        # A lock wait longer than this fails the refresh, as it would behind
        # an application's statement/lock timeout, instead of hiding in p99.
        environment = dict(os.environ, PGOPTIONS=f"-c lock_timeout={APP_LOCK_TIMEOUT}")
        output_path = f"{workdir}/pgbench-case{IMPACT_CASES.index(case)}.txt"
        with open(output_path, "w") as output:
            pgbench = await asyncio.create_subprocess_exec(*command, stdout=output, stderr=subprocess.STDOUT,
                                                           env=environment, cwd=workdir)
            await asyncio.sleep(WARMUP_SECONDS)
            window_start = time.time()
            if statement is None:
                window_end = window_start + seconds - WARMUP_SECONDS
            else:
                cleanup = await connect(database)
                try:
                    started = time.perf_counter()
                    tag = await cleanup.execute(statement)
                    result.cleanup_seconds = time.perf_counter() - started
                    window_end = time.time()
                    if tag.startswith("DELETE"):
                        result.cleanup_rows = int(tag.split()[-1])
                    elif tag == "CALL":
                        row = await cleanup.fetchrow(
                            "SELECT sessions, status, error FROM authfort_cleanup_runs ORDER BY id DESC LIMIT 1")
                        result.cleanup_rows = row["sessions"]
                        if row["status"] != "ok":
                            result.detail = f"run {row['status']}: {row['error']}"
                finally:
                    await cleanup.close()
            await pgbench.wait()
        text = Path(output_path).read_text()
        # pgbench 15 aborts a client on any error other than a serialization
        # failure or deadlock, with one such line per aborted client.
        error_lines = [line for line in text.splitlines() if "aborted in command" in line or "ERROR:" in line]
        result.errors = sum("aborted in command" in line for line in error_lines)
        result.lock_timeouts = sum("lock timeout" in line for line in error_lines)
        if error_lines:
            result.detail = f"first pgbench error: {error_lines[0].strip()}"
        if pgbench.returncode not in (0, 2):
            result.detail = (result.detail + f"; pgbench exited {pgbench.returncode}: "
                             + " | ".join(text.strip().splitlines()[-3:])).lstrip("; ")
        if window_end > time.time():
            window_end = time.time()
        during = [(end, latency) for end, latency in read_pgbench_logs(prefix)
                  # transactions that overlapped the cleanup (or, alone, the
                  # same span after warm-up)
                  if end >= window_start and end - (latency or 0) / 1000 <= window_end]
        latencies = [latency for _, latency in during if latency is not None]
        result.transactions = len(latencies)
        result.skipped = len(during) - len(latencies)
        result.late = sum(latency > LATENCY_LIMIT_MS for latency in latencies)
        if latencies:
            result.p50_ms = percentile(latencies, 0.50)
            result.p99_ms = percentile(latencies, 0.99)
            result.max_ms = max(latencies)
        overlap = min(window_end, window_start + seconds - WARMUP_SECONDS) - window_start
        if result.cleanup_seconds and overlap < result.cleanup_seconds * 0.95:
            result.detail = (result.detail + f"; pgbench covered only {overlap:.1f} s of it").lstrip("; ")
        return result
    finally:
        await drop(database)


async def bench_impact(n: int, expected_cleanup_seconds: float | None) -> list[list[Impact]]:
    """IMPACT_ROUNDS rounds of the cases. A p99 over the few hundred
    refreshes that overlap a cleanup of a few seconds swings by half from one
    round to the next on these machines, so each round's ratio is taken
    against its own baseline and the report keeps the median."""
    # The template bench_sessions() kept for the largest N.
    template = f"bench_sessions_{n}"
    connection = await connect(template)
    try:
        nclients = await connection.fetchval("SELECT count(*) FROM bench_clients")
    finally:
        await connection.close()
    # Long enough that pgbench outlasts the cleanup it is measured against.
    seconds = max(PGBENCH_SECONDS, int(WARMUP_SECONDS + 1.5 * (expected_cleanup_seconds or 0) + 3))
    rounds = []
    for round_ in range(IMPACT_ROUNDS):
        results = []
        with tempfile.TemporaryDirectory(prefix="authfort-bench-") as workdir:
            for case in IMPACT_CASES:
                log(f"impact N={n} ({round_ + 1}/{IMPACT_ROUNDS}): pgbench -R {RATE} -T {seconds} -c {CLIENTS}: {case}")
                if case == IMPACT_CASES[0]:
                    statement = None
                elif case == IMPACT_CASES[1]:
                    statement = RAW_SESSIONS
                elif case == IMPACT_CASES[2]:
                    statement = "CALL authfort_cleanup_run()"
                else:  # as long as this round's run of ours took
                    statement = BUSY_LOOP.format(seconds=results[2].cleanup_seconds or 0)
                results.append(await impact_case(template, case, statement, nclients, seconds, workdir))
        rounds.append(results)
    await drop(template)
    return rounds


# ---------------------------------------------------------------- report


def seconds_text(outcome: Outcome) -> str:
    if outcome.status == "ok":
        return f"{outcome.seconds:.3f} s" if outcome.seconds < 10 else f"{outcome.seconds:.1f} s"
    if outcome.status == "cap":
        return f"> {CAP:.0f} s (cap)"
    if outcome.status == "refused":
        return f"refused (guard) in {outcome.seconds * 1000:.1f} ms"
    if outcome.status == "skipped":
        return f"> {CAP:.0f} s (not run)"
    return f"error after {outcome.seconds:.3f} s"


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def ratio_text(value: float | None, lower_bound: bool = False) -> str:
    if value is None:
        return "-"
    return f"{'>' if lower_bound else ''}{value:.2f}x"


def verdict(value: float | None, target: str, ok: bool | None) -> str:
    if value is None:
        return f"n/a (target {target})"
    return f"{value:.2f}x  (target {target}: {'met' if ok else 'NOT met'})"


def spread_text(outcome: Outcome) -> str:
    if not outcome.spread:
        return ""
    low, high = outcome.spread
    return f"{low:.3f}..{high:.3f}" if high < 10 else f"{low:.1f}..{high:.1f}"


def per_row_us(outcome: Outcome) -> float | None:
    if outcome.status != "ok" or not outcome.rows:
        return None
    return outcome.seconds / outcome.rows * 1e6


def report(sessions: list[SessionResults], keys: tuple[int, dict[str, Outcome]] | None,
           impact: list[Impact] | None) -> None:
    print()
    print(f"PostgreSQL {POSTGRES_VERSION}; cap {CAP:.0f} s; linear session variants: median of {REPEAT};"
          f" keys: median of {KEY_REPEAT}")
    print()
    print("Sessions (authfort_refresh_tokens), 60% deletable in rotation chains; ratio = time / baseline time")
    header = (f"{'N':>9}  {'variant':<47} {'deleted':>8} {'time (median)':>24} {'min..max s':>13}"
              f" {'index build':>11} {'µs/row':>7} {'ratio':>8}")
    print(header)
    print("-" * len(header))
    for result in sessions:
        baseline = result.outcomes[BASELINE]
        print(f"{result.n:>9,}  ({result.deletable:,} deletable, {result.table_mb:.0f} MB with indexes)")
        for name in SESSION_VARIANTS:
            outcome = result.outcomes[name]
            base = baseline.seconds if baseline.status == "ok" else None
            value = ratio(outcome.seconds, base)
            lower = outcome.status in ("cap", "skipped")
            if outcome.status == "refused":
                value = None
            us = per_row_us(outcome)
            index = f"{outcome.index_seconds:.3f} s" if outcome.index_seconds is not None else ""
            print(f"{'':>9}  {name:<47} {outcome.rows if outcome.rows is not None else '':>8} "
                  f"{seconds_text(outcome):>24} {spread_text(outcome):>13} {index:>11} "
                  f"{f'{us:.1f}' if us else '':>7} {ratio_text(value, lower):>8}")
            if outcome.detail and outcome.status not in ("refused",):
                print(f"{'':>13}{outcome.detail}")
    print()

    if keys:
        deletable, outcomes = keys
        raw = outcomes[KEY_VARIANTS[1]]
        print(f"Signing keys: {KEYS:,} keys, {deletable:,} deletable; ratio = time / raw DELETE time")
        header = f"{'variant':<47} {'deleted':>8} {'time (median)':>24} {'min..max s':>13} {'µs/row':>7} {'ratio':>8}"
        print(header)
        print("-" * len(header))
        for name in KEY_VARIANTS:
            outcome = outcomes[name]
            us = per_row_us(outcome)
            value = ratio(outcome.seconds, raw.seconds if raw.status == "ok" else None)
            print(f"{name:<47} {outcome.rows if outcome.rows is not None else '':>8} {seconds_text(outcome):>24} "
                  f"{spread_text(outcome):>13} {f'{us:.1f}' if us else '':>7} "
                  f"{ratio_text(value, outcome.status == 'cap'):>8}")
            if outcome.detail:
                print(f"    {outcome.detail}")
        print()

    if impact:
        print(f"Application impact at N={sessions[-1].n:,}: AuthFort-style refreshes (bench/refresh.pgbench),"
              f" pgbench -R {RATE} -c {CLIENTS}, --latency-limit {LATENCY_LIMIT_MS:.0f} ms,"
              f" lock_timeout {APP_LOCK_TIMEOUT};")
        print("latencies of the transactions that overlapped the cleanup, from pgbench --log"
              " (from scheduled start, so queueing counts)")
        header = (f"{'round':>5}  {'case':<42} {'cleanup':>9} {'rows':>8} {'txns':>6} {'p50 ms':>7} {'p99 ms':>7}"
                  f" {'max ms':>7} {'late':>5} {'skip':>5} {'errors':>6} {'lock t/o':>8}")
        print(header)
        print("-" * len(header))
        for round_, row in ((round_, row) for round_, rows in enumerate(impact, 1) for row in rows):
            cleanup = f"{row.cleanup_seconds:.2f} s" if row.cleanup_seconds is not None else "-"

            def ms(value):
                return f"{value:.2f}" if value is not None else "-"
            print(f"{round_:>5}  {row.case:<42} {cleanup:>9} {row.cleanup_rows if row.cleanup_rows is not None else '-':>8} "
                  f"{row.transactions:>6} {ms(row.p50_ms):>7} {ms(row.p99_ms):>7} {ms(row.max_ms):>7} "
                  f"{row.late:>5} {row.skipped:>5} {row.errors:>6} {row.lock_timeouts:>8}")
            if row.detail:
                print(f"    {row.detail}")
        print()

    print("Targets: T4 (issue #11), no regression on this 60%-deletable case")
    largest, smallest = sessions[-1], sessions[0]

    def time_ratio(name: str, baseline: str) -> float | None:
        outcome, base = largest.outcomes[name], largest.outcomes[baseline]
        return ratio(outcome.seconds, base.seconds) if outcome.status == base.status == "ok" else None

    value = time_ratio(OURS_FIXED, BASELINE)
    print(f"  T4 {OURS_FIXED} vs indexed raw DELETE at N={largest.n:,}: "
          f"{verdict(value, '<= 1.1x', value is not None and value <= 1.1)}")
    value = time_ratio(OURS_RUN, BATCHED_BASELINE)
    print(f"  T4 {OURS_RUN} vs the same batches by hand at N={largest.n:,}: "
          f"{verdict(value, '<= 1.1x', value is not None and value <= 1.1)}")
    value = time_ratio(BATCHED_BASELINE, BASELINE)
    print(f"    (for reference: committing in batches vs one DELETE, by hand: {ratio_text(value)})")
    if len(sessions) > 1:
        for name in (OURS_FIXED, OURS_RUN, BASELINE):
            value = ratio(per_row_us(largest.outcomes[name]), per_row_us(smallest.outcomes[name]))
            print(f"    (for reference: µs/row at N={largest.n:,} vs N={smallest.n:,}, {name}: {ratio_text(value)})")
    if keys:
        outcomes = keys[1]
        theirs, raw, ours = (outcomes[name] for name in KEY_VARIANTS)
        value = ratio(ours.seconds, raw.seconds) if ours.status == raw.status == "ok" else None
        print(f"  T4 keys: authfort_cleanup_keys() vs raw DELETE: "
              f"{verdict(value, '<= 1.1x', value is not None and value <= 1.1)}")
        value = ratio(theirs.seconds, ours.seconds) if ours.status == "ok" and theirs.status in ("ok", "cap") else None
        bound = ratio(theirs.seconds, raw.seconds) if theirs.status == raw.status == "ok" else None
        print(f"    (for reference: AuthFort's cleanup_expired_keys() / authfort_cleanup_keys(): {ratio_text(value)};"
              f" / the raw DELETE itself: {ratio_text(bound)})")
    if impact:
        ratios = [ratio(ours.p99_ms, loop.p99_ms) for _, _, ours, loop in impact]
        value = statistics.median(ratios) if None not in ratios else None
        errors = sum(ours.errors for _, _, ours, _ in impact)
        lock_timeouts = sum(ours.lock_timeouts for _, _, ours, _ in impact)
        print(f"  T4 refresh p99 during CALL authfort_cleanup_run() vs during a busy loop as long (the CPU floor),"
              f" median of {len(ratios)} rounds ({' '.join(ratio_text(each) for each in ratios)}): "
              f"{verdict(value, '<= 1.5x, no errors', value is not None and value <= 1.5 and errors == lock_timeouts == 0)};"
              f" errors {errors}, lock timeouts {lock_timeouts}")
        alone = [ratio(ours.p99_ms, alone.p99_ms) for alone, _, ours, _ in impact]
        print(f"    (for reference: refresh p99 during the run vs alone: {' '.join(ratio_text(each) for each in alone)})")


POSTGRES_VERSION = "?"


async def main(counts: list[int]) -> None:
    global POSTGRES_VERSION
    connection = await connect("postgres")
    try:
        POSTGRES_VERSION = await connection.fetchval("SHOW server_version")
    finally:
        await connection.close()
    if not ONLY_STEADY:
        over_cap: set[str] = set()
        counts = sorted(set(counts))
        sessions = [await bench_sessions(n, over_cap, keep_template=n == counts[-1] and PGBENCH_SECONDS > 0)
                    for n in counts]
        keys = await bench_keys() if KEYS > 0 else None
        impact = None
        if PGBENCH_SECONDS > 0:
            run_seconds = sessions[-1].outcomes[OURS_RUN].seconds
            impact = await bench_impact(sessions[-1].n, run_seconds)
        report(sessions, keys, impact)
        print()
    # Imported here: it builds on this module's helpers.
    import steady_state

    if steady_state.SIZES or steady_state.ONE_PERCENT_SIZES:
        tables, throughput = await steady_state.run()
        steady_state.report(tables, throughput)


if __name__ == "__main__":
    arguments = sys.argv[1:]
    if not arguments or not all(argument.isdigit() and int(argument) > 0 for argument in arguments):
        sys.exit(__doc__)
    asyncio.run(main([int(argument) for argument in arguments]))
