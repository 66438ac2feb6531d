"""The cleanup functions called through asyncpg, AuthFort's own driver.

usage: asyncpg_client.py DSN SEED_SQL

Reseeds the database with SEED_SQL before each group of checks and prints
one "  ok  ..." or "  FAIL ..." line per check, for tests/suites/clients.sh
to count. Exits non-zero if anything failed or the script itself broke.
"""

import asyncio
import json
import sys
from datetime import datetime, timedelta

import asyncpg

from checks import EXPECTED, HINT_SUBSTRINGS, LIVE, NOTICE_SUBSTRING, NOTIFY_TIMEOUT_SECONDS, SEEDED, Checks, is_int

TOTAL = {"keys": 4, "tokens": 5, "sessions": 6}  # all rows SEED_SQL inserts
NOTIFY_FIELDS = ["duration_ms", "keys", "sessions", "started_at", "status", "tokens"]
STATUS_COLUMNS = [
    "target", "table_name", "rows", "deletable", "oldest_expired_age", "supporting_index_present",
    "table_bytes", "last_run_at", "last_run_status", "last_run_deleted",
]

checks = Checks("asyncpg")
check = checks.check


async def rows_left(conn: asyncpg.Connection) -> str:
    return await conn.fetchval(
        "SELECT (SELECT count(*) FROM authfort_signing_keys) || '|' ||"
        "       (SELECT count(*) FROM authfort_verification_tokens) || '|' ||"
        "       (SELECT count(*) FROM authfort_refresh_tokens)"
    )


async def last_run(conn: asyncpg.Connection) -> str | None:
    return await conn.fetchval(
        "SELECT status || '|' || keys || '|' || tokens || '|' || sessions"
        "  FROM authfort_cleanup_runs ORDER BY id DESC LIMIT 1"
    )


async def next_payload(payloads: asyncio.Queue[str]) -> dict | None:
    """The next NOTIFY payload if it is a JSON object; None if none came in time or it is not one."""
    try:
        payload = json.loads(await asyncio.wait_for(payloads.get(), NOTIFY_TIMEOUT_SECONDS))
    except (TimeoutError, json.JSONDecodeError):
        return None
    return payload if isinstance(payload, dict) else None


async def main(dsn: str, seed_sql: str) -> None:
    conn = await asyncpg.connect(dsn)
    # LISTEN on a second connection, as an application would: the NOTIFY
    # must reach other sessions, not only the one that ran the cleanup.
    listener = await asyncpg.connect(dsn)
    try:
        # preview and status on fresh data, then the three functions.
        await conn.execute(seed_sql)

        preview = await conn.fetch("SELECT * FROM authfort_cleanup_preview()")
        check("preview returns 3 rows", 3, len(preview))
        check("preview columns", ["target", "deletable", "oldest_expiry"], list(preview[0].keys()) if preview else None)
        check("preview deletable per target, as int", EXPECTED,
              {r["target"]: r["deletable"] for r in preview if is_int(r["deletable"])})
        check("preview oldest_expiry is an aware datetime", [True] * 3,
              [isinstance(r["oldest_expiry"], datetime) and r["oldest_expiry"].tzinfo is not None for r in preview])

        status = await conn.fetch("SELECT * FROM authfort_cleanup_status")
        check("status returns 3 rows", 3, len(status))
        check("status columns", STATUS_COLUMNS, list(status[0].keys()) if status else None)
        check("status rows per target, as int", TOTAL, {r["target"]: r["rows"] for r in status if is_int(r["rows"])})
        check("status deletable per target, as int", EXPECTED,
              {r["target"]: r["deletable"] for r in status if is_int(r["deletable"])})
        check("status oldest_expired_age is a positive timedelta", [True] * 3,
              [isinstance(r["oldest_expired_age"], timedelta) and r["oldest_expired_age"] > timedelta(0) for r in status])
        check("status supporting_index_present is True", [True] * 3, [r["supporting_index_present"] for r in status])
        check("status table_bytes is an int > 0", [True] * 3,
              [is_int(r["table_bytes"]) and r["table_bytes"] > 0 for r in status])

        row = await conn.fetchrow(
            "SELECT authfort_cleanup_keys(), authfort_cleanup_tokens(), authfort_cleanup_sessions()"
        )
        values = list(row.values())
        check("keys(), tokens(), sessions() are Python ints", ["int"] * 3, [type(v).__name__ for v in values])
        check("keys(), tokens(), sessions() counts", list(EXPECTED.values()), values)
        check("rows left after the three functions", LIVE, await rows_left(conn))

        # authfort_cleanup_all(): one row of three ints.
        await conn.execute(seed_sql)
        rows = await conn.fetch("SELECT * FROM authfort_cleanup_all()")
        check("cleanup_all() returns one row", 1, len(rows))
        check("cleanup_all() row, as ints", EXPECTED,
              {k: v for k, v in rows[0].items() if is_int(v)} if rows else None)
        check("rows left after cleanup_all()", LIVE, await rows_left(conn))

        # CALL in autocommit: a plain execute() outside any transaction,
        # watched through its NOTICEs and, on the listener, its NOTIFY.
        await conn.execute(seed_sql)
        payloads: asyncio.Queue[str] = asyncio.Queue()
        notices: list[str] = []

        def keep_payload(_conn: asyncpg.Connection, _pid: int, _channel: str, payload: str) -> None:
            payloads.put_nowait(payload)

        def keep_notice(_conn: asyncpg.Connection, message: asyncpg.PostgresLogMessage) -> None:
            notices.append(message.message)

        await listener.add_listener("authfort_cleanup", keep_payload)  # returns once LISTEN is in force
        conn.add_log_listener(keep_notice)
        check("CALL authfort_cleanup_run() in autocommit", "CALL", await conn.execute("CALL authfort_cleanup_run()"))
        conn.remove_log_listener(keep_notice)
        check("rows left after CALL", LIVE, await rows_left(conn))
        check("run log after CALL: status|keys|tokens|sessions", "ok|2|3|4", await last_run(conn))
        status = await conn.fetch("SELECT target, last_run_status, last_run_deleted FROM authfort_cleanup_status")
        check("status shows the last run", {t: ("ok", n) for t, n in EXPECTED.items()},
              {r["target"]: (r["last_run_status"], r["last_run_deleted"]) for r in status})
        check("CALL reports progress in NOTICEs", True,
              any(NOTICE_SUBSTRING in notice for notice in notices))
        payload = await next_payload(payloads)
        check(f"NOTIFY authfort_cleanup received within {NOTIFY_TIMEOUT_SECONDS} s as a JSON object", True,
              payload is not None)
        payload = payload or {}  # so that the checks below fail rather than raise
        check("NOTIFY payload fields", NOTIFY_FIELDS, sorted(payload))
        check("NOTIFY payload status", "ok", payload.get("status"))
        check("NOTIFY payload counts, as JSON integers", EXPECTED,
              {k: payload[k] for k in EXPECTED if is_int(payload.get(k))})
        await listener.remove_listener("authfort_cleanup", keep_payload)

        # With a bound parameter asyncpg uses the extended protocol; batch_size
        # 1 makes the procedure COMMIT after every row.
        await conn.execute(seed_sql)
        check("CALL with a bound parameter (extended protocol)", "CALL",
              await conn.execute("CALL authfort_cleanup_run(batch_size => $1)", 1))
        check("rows left after the parameterized CALL", LIVE, await rows_left(conn))
        check("run log after the parameterized CALL", "ok|2|3|4", await last_run(conn))

        # Inside a transaction the procedure cannot COMMIT: 2D000, nothing deleted.
        await conn.execute(seed_sql)
        sqlstate = hint = None
        try:
            async with conn.transaction():
                await conn.execute("CALL authfort_cleanup_run()")
        except asyncpg.PostgresError as error:
            sqlstate, hint = error.sqlstate, error.hint
        check("CALL inside conn.transaction() fails with 2D000", "2D000", sqlstate)
        check("the 2D000 HINT names autocommit and authfort_cleanup_all()", HINT_SUBSTRINGS,
              [word for word in HINT_SUBSTRINGS if word in (hint or "")])
        check("nothing deleted by the refused CALL", SEEDED, await rows_left(conn))
    finally:
        await listener.close()
        await conn.close()


if __name__ == "__main__":
    with open(sys.argv[2], encoding="utf-8") as seed:
        asyncio.run(main(sys.argv[1], seed.read()))
    sys.exit(1 if checks.failures else 0)
