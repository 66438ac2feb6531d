"""Cleanup triggered from the application on a schedule, for users who keep
AuthFort's cleanup in the app instead of moving it to pg_cron: an asyncio
task started by a FastAPI-style lifespan, on AuthFort's own stack
(SQLAlchemy's asyncio engine over asyncpg, a postgresql+asyncpg:// URL).

usage: background_task.py DSN SEED_SQL

The first part is the example doc/clients.md and doc/migration-from-python.md
show, trimmed; the rest tests it and prints one "  ok  ..." or "  FAIL ..."
line per check, for tests/suites/clients.sh to count. Exits non-zero if
anything failed or the script itself broke.

Why `SELECT * FROM authfort_cleanup_all()` and not the procedure: it returns
the counts the log line needs, and it runs in the ordinary transaction of
`engine.begin()`, as AuthFort's own cleanup methods do. The procedure needs
an AUTOCOMMIT connection and returns nothing, so its counts would have to
be read back from the run log; its batches are worth that for a large
backlog (the first cleanup after years of AuthFort's job not running), not
for a task that runs every hour. A run that finds another in progress
returns zeros and writes a `skipped` row to the run log in the same
transaction; currval() of the run log's sequence is that row's id (the
session's own last nextval, so another session's rows cannot get in the
way), which is how the task tells "skipped" from "nothing to delete".
"""

import asyncio
import contextlib
import logging
import sys

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from checks import LIVE, SEEDED, Checks

# ---------------------------------------------------------------- the example

logger = logging.getLogger("app.cleanup")

CLEANUP = text("SELECT * FROM authfort_cleanup_all()")
# The run-log row this transaction's authfort_cleanup_all() wrote.
THIS_RUN = text("SELECT status FROM authfort_cleanup_runs"
                " WHERE id = currval(pg_get_serial_sequence('authfort_cleanup_runs', 'id'))")


async def cleanup_once(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        run = (await conn.execute(CLEANUP)).mappings().one()
        status = (await conn.execute(THIS_RUN)).scalar_one()
    if status == "skipped":
        logger.info("Cleanup skipped: another cleanup run is in progress")
    else:
        logger.info("Cleaned up %d keys, %d tokens, %d sessions", run["keys"], run["tokens"], run["sessions"])


async def cleanup_every(engine: AsyncEngine, seconds: float) -> None:
    while True:
        try:
            await cleanup_once(engine)
        except Exception:  # one failed run must not end the schedule; the next one retries
            logger.exception("Cleanup failed")
        await asyncio.sleep(seconds)


def cleanup_lifespan(engine: AsyncEngine, seconds: float):
    """A FastAPI lifespan: FastAPI(lifespan=cleanup_lifespan(engine, 3600))."""
    @contextlib.asynccontextmanager
    async def lifespan(_app):
        task = asyncio.create_task(cleanup_every(engine, seconds))
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return lifespan


# ---------------------------------------------------------------- the test

checks = Checks("background task")
check = checks.check
EVERY = 0.2  # seconds between runs in the test; an application would use an hour
WAIT = 10.0  # seconds to wait for a log line before calling it missing
CLEANED = "Cleaned up 2 keys, 3 tokens, 4 sessions"  # what tests/clients/seed.sql makes deletable
SKIPPED = "Cleanup skipped: another cleanup run is in progress"


class Captured(logging.Handler):
    """Every record the example logs, with the SQLSTATE of a failure's cause."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def lines(self, level: int = logging.INFO) -> list[str]:
        return [record.getMessage() for record in self.records if record.levelno == level]

    def failures(self) -> list[str]:
        """The SQLSTATE of each logged failure (SQLAlchemy's error wraps the
        asyncpg adapter's, which copies it)."""
        return [getattr(getattr(record.exc_info[1], "orig", None), "sqlstate", repr(record.exc_info[1]))
                for record in self.records if record.levelno == logging.ERROR and record.exc_info]

    async def wait_for(self, what: str, probe) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT
        while not probe():
            if loop.time() > deadline:
                print(f"  # gave up after {WAIT} s waiting for {what}")
                return False
            await asyncio.sleep(0.02)
        return True


def failures_then(records: list[logging.LogRecord], line: str) -> list[str]:
    """What the task logged from its first failure to the first `line`, each
    stretch of failures as one "failed": ["failed", line] when the schedule
    went on and the next run got through. (A run that started before the
    failure staged may have logged before it.)"""
    outcomes = ["failed" if record.levelno == logging.ERROR else record.getMessage() for record in records]
    if "failed" in outcomes:
        outcomes = outcomes[outcomes.index("failed"):]
    if line in outcomes:
        outcomes = outcomes[:outcomes.index(line) + 1]
    return [outcome for i, outcome in enumerate(outcomes) if i == 0 or outcome != outcomes[i - 1]]


async def scalar(engine: AsyncEngine, sql: str) -> object:
    async with engine.connect() as conn:
        return (await conn.execute(text(sql))).scalar_one_or_none()


async def reseed(engine: AsyncEngine, seed_sql: str) -> None:
    # One simple query, one transaction: a run of the task sees the tables
    # before the seed or after it, never half-seeded.
    async with engine.connect() as conn:
        await (await conn.get_raw_connection()).driver_connection.execute(seed_sql)


async def state(engine: AsyncEngine) -> tuple[object, object]:
    """Rows left (keys|tokens|sessions) and the newest run-log row."""
    return (await scalar(engine, "SELECT (SELECT count(*) FROM authfort_signing_keys) || '|' ||"
                                 " (SELECT count(*) FROM authfort_verification_tokens) || '|' ||"
                                 " (SELECT count(*) FROM authfort_refresh_tokens)"),
            await scalar(engine, "SELECT status || '|' || keys || '|' || tokens || '|' || sessions"
                                 " FROM authfort_cleanup_runs ORDER BY id DESC LIMIT 1"))


async def main(dsn: str, seed_sql: str) -> None:
    url = dsn.replace("postgresql://", "postgresql+asyncpg://", 1)
    # The task's engine, as an application makes it; its cleanup gives up on
    # a lock after 0.5 s instead of 5, so that the failure below is quick.
    engine = create_async_engine(url, connect_args={"server_settings": {"authfort_cleanup.lock_timeout": "500ms"}})
    other = create_async_engine(url)  # the test's own connections: the seed, the checks, the locks
    captured = Captured()
    logger.addHandler(captured)
    logger.setLevel(logging.INFO)
    try:
        await reseed(other, seed_sql)
        # Another run in progress: its advisory lock held from another
        # connection, as a run of pg_cron's or another app instance's holds it.
        async with other.connect() as holder:
            await holder.execute(text("SELECT pg_advisory_lock(authfort_cleanup_lock_key())"))
            lifespan = cleanup_lifespan(engine, EVERY)
            async with lifespan(None):
                await captured.wait_for("a skipped run", lambda: SKIPPED in captured.lines())
                check("another run in progress: the task logs that it skipped", SKIPPED,
                      SKIPPED if SKIPPED in captured.lines() else captured.lines()[-3:])
                check("another run in progress: nothing deleted, the run logged as skipped",
                      (SEEDED, "skipped|0|0|0"), await state(other))
                check("another run in progress: no failure logged", [], captured.failures())

                await holder.execute(text("SELECT pg_advisory_unlock(authfort_cleanup_lock_key())"))
                await captured.wait_for("a cleanup", lambda: any(line.startswith("Cleaned up")
                                                                 for line in captured.lines()))
                cleaned = [line for line in captured.lines() if line.startswith("Cleaned up")]
                check("the next run logs AuthFort's line with the seeded counts", [CLEANED], cleaned[:1])
                check("the rows left and the run log agree with it", (LIVE, "ok|2|3|4"), await state(other))

                # A failed run: the task logs it and the schedule goes on.
                # The tables are locked longer than the cleanup's
                # lock_timeout, and reseeded under the lock, so no run sees
                # the new rows before one has failed.
                captured.records.clear()
                async with other.begin() as blocker:
                    await blocker.execute(text("LOCK TABLE authfort_signing_keys, authfort_verification_tokens,"
                                               " authfort_refresh_tokens IN ACCESS EXCLUSIVE MODE"))
                    await (await blocker.get_raw_connection()).driver_connection.execute(seed_sql)
                    await captured.wait_for("a failed run", captured.failures)
                await captured.wait_for("a cleanup after the failure", lambda: CLEANED in captured.lines())
                check("a run that fails is logged with its SQLSTATE", "55P03",
                      captured.failures()[0] if captured.failures() else None)
                check("the schedule goes on: failures, then the next run cleans", ["failed", CLEANED],
                      failures_then(captured.records, CLEANED))
                check("after the failure: rows left and the run log", (LIVE, "ok|2|3|4"), await state(other))
        quiet = len(captured.records)
        await asyncio.sleep(3 * EVERY)
        check("leaving the lifespan stops the task: nothing logged afterwards", quiet, len(captured.records))
    finally:
        logger.removeHandler(captured)
        await engine.dispose()
        await other.dispose()


if __name__ == "__main__":
    with open(sys.argv[2], encoding="utf-8") as seed:
        asyncio.run(main(sys.argv[1], seed.read()))
    sys.exit(1 if checks.failures else 0)
