"""The cleanup functions called through psycopg 3.

usage: psycopg_client.py DSN SEED_SQL

Reseeds the database with SEED_SQL before each group of checks and prints
one "  ok  ..." or "  FAIL ..." line per check, for tests/suites/clients.sh
to count. Exits non-zero if anything failed or the script itself broke.

psycopg opens a transaction before the first statement unless the
connection is in autocommit, and authfort_cleanup_run() COMMITs, so the CALL
needs autocommit=True; the default connection and conn.transaction() are the
wrong ways, and must fail with 2D000.
"""

import json
import sys

import psycopg
from psycopg.rows import dict_row

from checks import EXPECTED, HINT_SUBSTRINGS, LIVE, NOTICE_SUBSTRING, NOTIFY_TIMEOUT_SECONDS, SEEDED, Checks, is_int

checks = Checks("psycopg")
check, check_contains = checks.check, checks.check_contains


def rows_left(conn: psycopg.Connection) -> object:
    return conn.execute(
        "SELECT (SELECT count(*) FROM authfort_signing_keys) || '|' ||"
        "       (SELECT count(*) FROM authfort_verification_tokens) || '|' ||"
        "       (SELECT count(*) FROM authfort_refresh_tokens)"
    ).fetchone()[0]


def last_run(conn: psycopg.Connection) -> object:
    row = conn.execute(
        "SELECT status || '|' || keys || '|' || tokens || '|' || sessions"
        "  FROM authfort_cleanup_runs ORDER BY id DESC LIMIT 1"
    ).fetchone()
    return row[0] if row else None


def call_in_autocommit(conn: psycopg.Connection, dsn: str, seed_sql: str) -> None:
    conn.execute(seed_sql)
    notices: list[str] = []
    conn.add_notice_handler(lambda diagnostic: notices.append(diagnostic.message_primary))
    # LISTEN on its own connection, as a monitor would. In autocommit the
    # LISTEN takes effect at once, and notifications arrive between queries.
    with psycopg.connect(dsn, autocommit=True) as listener:
        listener.execute("LISTEN authfort_cleanup")
        conn.execute("CALL authfort_cleanup_run()")
        check("CALL authfort_cleanup_run() with autocommit=True", "ok|2|3|4", last_run(conn))
        check("rows left after CALL", LIVE, rows_left(conn))
        sent = any(NOTICE_SUBSTRING in notice for notice in notices)
        check("CALL sends a progress NOTICE", NOTICE_SUBSTRING, NOTICE_SUBSTRING if sent else notices)
        received = list(listener.notifies(timeout=NOTIFY_TIMEOUT_SECONDS, stop_after=1))
    payload = json.loads(received[0].payload) if received else f"no notification within {NOTIFY_TIMEOUT_SECONDS} s"
    check("NOTIFY payload after CALL: status and int counts", {"status": "ok", **EXPECTED},
          {k: v for k, v in payload.items() if k == "status" or (k in EXPECTED and is_int(v))}
          if isinstance(payload, dict) else payload)


def refused_call(conn: psycopg.Connection) -> tuple[str | None, str | None]:
    """Runs the CALL where it must fail; the SQLSTATE and HINT it fails with."""
    try:
        conn.execute("CALL authfort_cleanup_run()")
    except psycopg.Error as error:
        return error.sqlstate, error.diag.message_hint
    return None, None


def main(dsn: str, seed_sql: str) -> None:
    # Without parameters psycopg sends a query as one simple query, so the
    # multi-statement SEED_SQL runs through execute() as it is.
    with psycopg.connect(dsn, autocommit=True) as conn:
        # The three functions in one SELECT.
        conn.execute(seed_sql)
        row = conn.execute(
            "SELECT authfort_cleanup_keys(), authfort_cleanup_tokens(), authfort_cleanup_sessions()"
        ).fetchone()
        check("keys(), tokens(), sessions() are Python ints", ["int"] * 3, [type(v).__name__ for v in row])
        check("keys(), tokens(), sessions() counts", list(EXPECTED.values()), list(row))
        check("rows left after the three functions", LIVE, rows_left(conn))

        # authfort_cleanup_all() in one transaction, read by column name, and
        # committed when the block ends.
        conn.execute(seed_sql)
        with conn.transaction():
            rows = conn.cursor(row_factory=dict_row).execute("SELECT * FROM authfort_cleanup_all()").fetchall()
        check("cleanup_all() returns one row", 1, len(rows))
        check("cleanup_all() row by column name, as ints", EXPECTED,
              {k: rows[0][k] for k in EXPECTED if is_int(rows[0][k])} if rows else None)
        check("rows left after cleanup_all() in conn.transaction()", LIVE, rows_left(conn))

        call_in_autocommit(conn, dsn, seed_sql)

        # The wrong ways. First conn.transaction(): the error is caught inside
        # it, so force_rollback ends it with the ROLLBACK.
        conn.execute(seed_sql)
        with conn.transaction(force_rollback=True):
            sqlstate, hint = refused_call(conn)
        check("CALL inside conn.transaction() fails with 2D000", "2D000", sqlstate)
        check_contains("its HINT in conn.transaction() names autocommit and cleanup_all()", HINT_SUBSTRINGS, hint)
        check("nothing deleted by the CALL refused in conn.transaction()", SEEDED, rows_left(conn))

        # Then psycopg's default connection, which BEGINs implicitly.
        conn.execute(seed_sql)
        with psycopg.connect(dsn) as implicit:
            sqlstate, hint = refused_call(implicit)
            implicit.rollback()
        check("CALL on a default (not autocommit) connection fails with 2D000", "2D000", sqlstate)
        check_contains("its HINT on a default connection names autocommit and cleanup_all()", HINT_SUBSTRINGS, hint)
        check("nothing deleted by the CALL refused on a default connection", SEEDED, rows_left(conn))


if __name__ == "__main__":
    with open(sys.argv[2], encoding="utf-8") as seed:
        main(sys.argv[1], seed.read())
    sys.exit(1 if checks.failures else 0)
