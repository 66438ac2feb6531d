"""An application whose own Alembic migrations install authfort_cleanup
(tests/alembic_app), beside AuthFort's migrations in the same database.

usage: alembic_test.py DSN

DSN (postgresql://user@host:port/db) names an empty database. Runs
AuthFort's migrate(), then the application's upgrade, downgrade and upgrade
again, then migrate() once more, and checks that neither tool disturbs the
other. Prints one "  ok  ..." or "  FAIL ..." line per check, for
tests/suites/clients.sh to count. Exits non-zero if anything failed or the
script itself broke.
"""

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path

import authfort
import psycopg
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from authfort.alembic_helper import AUTHFORT_TABLES

from authfort_migrate import migrate
from results import Results

CLIENT = "alembic"
APP_INI = Path(__file__).parent / "alembic_app" / "alembic.ini"
AUTHFORT_VERSION_TABLE = "authfort_alembic_version"  # authfort/migrations/env.py
REPLACED_BY_INDEX = "ix_authfort_refresh_tokens_replaced_by"
USER_ID = "00000000-0000-0000-0000-000000000001"

results = Results()


def check(name: str, expected: object, actual: object) -> None:
    results.expect(f"{CLIENT}: {name}", expected, actual)


def error_of(action: Callable[[], object]) -> str | None:
    """None if action runs, else its error: a step that fails is a failed
    check, and the checks after it still run."""
    try:
        action()
    except Exception as error:
        return f"{type(error).__name__}: {error}"
    return None


def asyncpg_url(dsn: str) -> str:
    """postgresql://... -> postgresql+asyncpg://..., the form AuthFort takes."""
    scheme, rest = dsn.split("://", 1)
    return f"{scheme.split('+', 1)[0]}+asyncpg://{rest}"


class Database:
    """Reads the catalog and the version tables on one autocommit connection,
    which holds no transaction that CREATE or DROP INDEX CONCURRENTLY would
    wait for."""

    def __init__(self, dsn: str) -> None:
        self.conn = psycopg.connect(dsn, autocommit=True)

    def rows(self, sql: str, *params: object) -> list[tuple]:
        return self.conn.execute(sql, params).fetchall()

    def value(self, sql: str, *params: object) -> object:
        rows = self.rows(sql, *params)
        return rows[0][0] if rows else None

    def version(self, table: str) -> list[str] | None:
        """None when the table is missing."""
        if self.value("SELECT to_regclass(%s)", table) is None:
            return None
        # Identifiers from this file and alembic.ini, never from input.
        return [row[0] for row in self.rows(f"SELECT version_num FROM {table}")]

    def extension_installed(self) -> bool:
        return self.value("SELECT EXISTS (SELECT FROM pg_extension WHERE extname = 'authfort_cleanup')")

    def index_valid(self) -> bool | None:
        """None when the index is missing."""
        return self.value(
            "SELECT indisvalid AND indisready FROM pg_index WHERE indexrelid = to_regclass(%s)", REPLACED_BY_INDEX
        )

    def authfort_schema(self) -> set[str]:
        """AuthFort's tables, as their columns, indexes and constraints."""
        tables = sorted(AUTHFORT_TABLES)
        return {row[0] for row in self.rows(
            "SELECT table_name || '.' || column_name || ' ' || data_type || ' ' || is_nullable"
            "       || ' ' || coalesce(column_default, '')"
            "  FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = ANY(%s)"
            " UNION ALL SELECT indexdef FROM pg_indexes"
            "  WHERE schemaname = current_schema() AND tablename = ANY(%s)"
            " UNION ALL SELECT conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid)"
            "  FROM pg_constraint WHERE conrelid IN"
            "       (SELECT oid FROM pg_class WHERE relnamespace = current_schema()::regnamespace"
            "           AND relname = ANY(%s))",
            tables, tables, tables,
        )}


def main(dsn: str) -> None:
    url = asyncpg_url(dsn)
    app = Config(str(APP_INI))
    # Config interpolates %(name)s, so a literal % in the URL is written %%.
    app.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    app_version_table = app.get_main_option("version_table")
    app_head = ScriptDirectory.from_config(app).get_current_head()
    authfort_head = ScriptDirectory(str(Path(authfort.__file__).parent / "migrations")).get_current_head()
    check("the two trees keep their revisions in different tables", True, app_version_table != AUTHFORT_VERSION_TABLE)

    db = Database(dsn)
    try:
        check("the database starts without tables", 0,
              db.value("SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()"))

        check("AuthFort's migrate() runs", None, error_of(lambda: asyncio.run(migrate(url))))
        check("AuthFort's version table is at its head", [authfort_head], db.version(AUTHFORT_VERSION_TABLE))
        authfort_schema = db.authfort_schema()

        check("the app's alembic upgrade head runs", None, error_of(lambda: command.upgrade(app, "head")))
        check("the app's version table is at its head", [app_head], db.version(app_version_table))
        check("AuthFort's version table is untouched by the app's upgrade", [authfort_head],
              db.version(AUTHFORT_VERSION_TABLE))
        check("the extension is installed", True, db.extension_installed())
        check("the replaced_by index is valid", True, db.index_valid())
        check("authfort_cleanup_create_indexes() finds nothing to create", [],
              db.rows("SELECT * FROM authfort_cleanup_create_indexes()"))

        db.conn.execute(
            "INSERT INTO authfort_users (id, email, created_at, updated_at)"
            " VALUES (%s, 'ada@example.com', now(), now())", (USER_ID,))
        db.conn.execute(
            "INSERT INTO authfort_refresh_tokens (id, user_id, token_hash, expires_at, created_at, revoked) VALUES"
            " ('30000000-0000-0000-0000-000000000001', %(user)s, 'live', now() + interval '30 days', now(), false),"
            " ('30000000-0000-0000-0000-000000000002', %(user)s, 'expired', now() - interval '1 day', now(), false)",
            {"user": USER_ID},
        )
        check("authfort_cleanup_sessions() deletes the expired session", 1,
              db.value("SELECT authfort_cleanup_sessions()"))

        check("the app's alembic downgrade base runs", None, error_of(lambda: command.downgrade(app, "base")))
        check("the app's version table is empty", [], db.version(app_version_table))
        check("the extension is dropped", False, db.extension_installed())
        check("the replaced_by index is dropped", None, db.index_valid())
        check("AuthFort's schema is as migrate() left it (differences)", set(),
              authfort_schema ^ db.authfort_schema())
        check("AuthFort's version table is untouched by the app's downgrade", [authfort_head],
              db.version(AUTHFORT_VERSION_TABLE))
        check("AuthFort's rows are kept", ["live"], [row[0] for row in db.rows(
            "SELECT token_hash FROM authfort_refresh_tokens")])

        check("the app's alembic upgrade head runs again", None, error_of(lambda: command.upgrade(app, "head")))
        check("AuthFort's migrate() runs again", None, error_of(lambda: asyncio.run(migrate(url))))
        check("AuthFort's version table is still at its head", [authfort_head], db.version(AUTHFORT_VERSION_TABLE))
        check("the app's version table is still at its head", [app_head], db.version(app_version_table))
        check("the extension is still installed", True, db.extension_installed())
        check("the replaced_by index is still valid", True, db.index_valid())
    finally:
        db.conn.close()


if __name__ == "__main__":
    main(sys.argv[1])
    sys.exit(1 if results.failed else 0)
