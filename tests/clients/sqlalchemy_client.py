"""The cleanup functions called through SQLAlchemy 2's asyncio engine over
asyncpg, the stack AuthFort itself runs on (postgresql+asyncpg://).

usage: sqlalchemy_client.py DSN SEED_SQL

Reseeds the database with SEED_SQL before each group of checks and prints
one "  ok  ..." or "  FAIL ..." line per check, for tests/suites/clients.sh
to count. Exits non-zero if anything failed or the script itself broke.

SQLAlchemy opens a transaction before the first statement of every
connection, and authfort_cleanup_run() COMMITs, so the CALL needs a
connection with isolation_level="AUTOCOMMIT"; engine.begin() and an
AsyncSession are the wrong ways, and must fail with 2D000.
"""

import asyncio
import json
import sys

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, create_async_engine

from checks import EXPECTED, HINT_SUBSTRINGS, LIVE, NOTICE_SUBSTRING, NOTIFY_TIMEOUT_SECONDS, SEEDED, Checks, is_int

checks = Checks("sqlalchemy")
check, check_contains = checks.check, checks.check_contains


def asyncpg_url(dsn: str) -> str:
    """postgresql://... -> postgresql+asyncpg://..., the form AuthFort takes."""
    scheme, rest = dsn.split("://", 1)
    return f"{scheme.split('+', 1)[0]}+asyncpg://{rest}"


async def driver_connection(conn: AsyncConnection):
    """The asyncpg connection under a SQLAlchemy one, for what SQLAlchemy
    does not wrap: multi-statement scripts, server notices and LISTEN."""
    return (await conn.get_raw_connection()).driver_connection


async def reseed(autocommit: AsyncEngine, seed_sql: str) -> None:
    # SQLAlchemy's asyncpg adapter prepares every statement, and a prepared
    # statement holds one command: the script goes through asyncpg's
    # execute(), which sends it as one simple query.
    async with autocommit.connect() as conn:
        await (await driver_connection(conn)).execute(seed_sql)


async def scalar(autocommit: AsyncEngine, sql: str) -> object:
    async with autocommit.connect() as conn:
        return (await conn.execute(text(sql))).scalar_one_or_none()


async def rows_left(autocommit: AsyncEngine) -> object:
    return await scalar(
        autocommit,
        "SELECT (SELECT count(*) FROM authfort_signing_keys) || '|' ||"
        "       (SELECT count(*) FROM authfort_verification_tokens) || '|' ||"
        "       (SELECT count(*) FROM authfort_refresh_tokens)",
    )


async def last_run(autocommit: AsyncEngine) -> object:
    return await scalar(
        autocommit,
        "SELECT status || '|' || keys || '|' || tokens || '|' || sessions"
        "  FROM authfort_cleanup_runs ORDER BY id DESC LIMIT 1",
    )


def refusal(error: DBAPIError) -> tuple[str | None, str | None]:
    """The SQLSTATE and HINT of the server's error. SQLAlchemy wraps the
    asyncpg exception twice: error.orig is the adapter's DBAPI error, which
    copies the SQLSTATE, and its driver_exception is asyncpg's own, which
    alone has the HINT."""
    return error.orig.sqlstate, getattr(error.orig.driver_exception, "hint", None)


async def call_in_autocommit(autocommit: AsyncEngine, seed_sql: str) -> None:
    await reseed(autocommit, seed_sql)
    notifications: asyncio.Queue[str] = asyncio.Queue()
    notices: list[str] = []
    def on_notify(_conn, _pid, _channel, payload: str) -> None:
        notifications.put_nowait(payload)

    def on_notice(_conn, message) -> None:
        notices.append(message.message)

    async with autocommit.connect() as listener, autocommit.connect() as conn:
        # LISTEN on its own connection, as a monitor would; asyncpg runs the
        # LISTEN itself and hands each NOTIFY payload to the callback.
        raw_listener, raw_conn = await driver_connection(listener), await driver_connection(conn)
        await raw_listener.add_listener("authfort_cleanup", on_notify)
        raw_conn.add_log_listener(on_notice)
        await conn.execute(text("CALL authfort_cleanup_run()"))
        check("CALL authfort_cleanup_run() on an AUTOCOMMIT connection", "ok|2|3|4", await last_run(autocommit))
        check("rows left after CALL", LIVE, await rows_left(autocommit))
        sent = any(NOTICE_SUBSTRING in notice for notice in notices)
        check("CALL sends a progress NOTICE", NOTICE_SUBSTRING, NOTICE_SUBSTRING if sent else notices)
        try:
            payload = json.loads(await asyncio.wait_for(notifications.get(), NOTIFY_TIMEOUT_SECONDS))
        except TimeoutError:
            payload = f"no notification within {NOTIFY_TIMEOUT_SECONDS} s"
        check("NOTIFY payload after CALL: status and int counts", {"status": "ok", **EXPECTED},
              {k: v for k, v in payload.items() if k == "status" or (k in EXPECTED and is_int(v))}
              if isinstance(payload, dict) else payload)
        # Both connections go back to the pool: leave them as they came.
        await raw_listener.remove_listener("authfort_cleanup", on_notify)
        raw_conn.remove_log_listener(on_notice)


async def main(dsn: str, seed_sql: str) -> None:
    engine = create_async_engine(asyncpg_url(dsn))
    # A copy of the engine sharing its pool, whose connections never BEGIN.
    autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
    try:
        # The three functions in one SELECT, in an ordinary AsyncSession, as
        # an application calls them; committed when the block ends.
        await reseed(autocommit, seed_sql)
        async with AsyncSession(engine) as session, session.begin():
            row = (await session.execute(text(
                "SELECT authfort_cleanup_keys(), authfort_cleanup_tokens(), authfort_cleanup_sessions()"
            ))).one()
        check("keys(), tokens(), sessions() are Python ints", ["int"] * 3, [type(v).__name__ for v in row])
        check("keys(), tokens(), sessions() counts", list(EXPECTED.values()), list(row))
        check("rows left after the three functions", LIVE, await rows_left(autocommit))

        # authfort_cleanup_all() in SQLAlchemy's usual transaction, read by
        # column name, and committed when the block ends.
        await reseed(autocommit, seed_sql)
        async with engine.begin() as conn:
            rows = (await conn.execute(text("SELECT * FROM authfort_cleanup_all()"))).mappings().all()
        check("cleanup_all() returns one row", 1, len(rows))
        check("cleanup_all() row by column name, as ints", EXPECTED,
              {k: rows[0][k] for k in EXPECTED if is_int(rows[0][k])} if rows else None)
        check("rows left after cleanup_all() in engine.begin()", LIVE, await rows_left(autocommit))

        await call_in_autocommit(autocommit, seed_sql)

        # The wrong ways: the CALL inside the transaction SQLAlchemy opens.
        # Both blocks roll back as the error leaves them.
        async def in_engine_begin() -> None:
            async with engine.begin() as conn:
                await conn.execute(text("CALL authfort_cleanup_run()"))

        async def in_async_session() -> None:
            async with AsyncSession(engine) as session, session.begin():
                await session.execute(text("CALL authfort_cleanup_run()"))

        for where, short, call in [("inside engine.begin()", "in engine.begin()", in_engine_begin),
                                   ("in an AsyncSession", "in an AsyncSession", in_async_session)]:
            await reseed(autocommit, seed_sql)
            sqlstate = hint = None
            try:
                await call()
            except DBAPIError as error:
                sqlstate, hint = refusal(error)
            check(f"CALL {where} fails with 2D000", "2D000", sqlstate)
            check_contains(f"its HINT {short} names autocommit and cleanup_all()", HINT_SUBSTRINGS, hint)
            check(f"nothing deleted by the CALL refused {short}", SEEDED, await rows_left(autocommit))
    finally:
        await engine.dispose()


if __name__ == "__main__":
    with open(sys.argv[2], encoding="utf-8") as seed:
        asyncio.run(main(sys.argv[1], seed.read()))
    sys.exit(1 if checks.failures else 0)
