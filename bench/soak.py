"""Months of nightly cleanup in one run (issue #18): does the sessions table
stay the same size, does each night cost the same, does autovacuum keep up?

usage: soak.py      (bench/soak.sh starts its cluster; make bench-soak runs both)

Expects PGHOST/PGPORT/PGUSER for a throwaway cluster. Settings (environment):
  SOAK_NIGHTS         simulated nights (60)
  SOAK_LIVE           live sessions the traffic keeps (1000000); half as many users
  SOAK_NIGHT_SECONDS  wall seconds one night (one day) lasts (25)
  SOAK_ROTATE         share of live sessions refreshed each day (0.02)
  SOAK_LOGOUT         share of live sessions logged out each day (0.005)
  SOAK_RESET          share of users who ask for a password reset each day
                      (0.001); 70 % of them use it
  SOAK_JSON           where the nights go as JSON, for bench/charts.py
                      (make bench-soak: bench/results-<date>-soak-pg<major>.json)
A short run: SOAK_NIGHTS=10 SOAK_LIVE=100000 SOAK_NIGHT_SECONDS=12 takes
about 2.5 minutes here (the report needs at least 6 nights).

One database, two schemas with AuthFort's schema each, made by AuthFort's
own migrations: `cleaned`, cleaned each night by `CALL authfort_cleanup_run()`
(authfort_cleanup.schema = cleaned), and `baseline`, cleaned by the raw
DELETEs of AuthFort's rules (sessions: `revoked OR expires_at < now()`). Both
get the replaced_by index and the two time indexes
(`authfort_cleanup_create_indexes(time_indexes => true)`), the same seed and,
each night, the same traffic: the rows it touches are chosen once, then
written to both schemas, and the counts the two schemas report are compared.
Autovacuum runs at PostgreSQL's defaults.

Time is compressed as tests/traffic.py does it, with TTLs in seconds: one
night is SOAK_NIGHT_SECONDS wall seconds and stands for one day, and every
TTL AuthFort's config has is scaled by the same factor. At 25 s a night one
wall second is 58 minutes: a refresh token's 30 days last 750 s, a password
reset token's hour 1.04 s, an old signing key's 48 hours 50 s; 60 nights
take 25 minutes. What cannot be scaled is PostgreSQL's own clock:
autovacuum_naptime's minute is 2.4 nights, so autovacuum looks at each table
once every 2.4 nights instead of 1,440 times a day, and a vacuum's seconds
of work take a far larger share of a night than of a day. The soak is harder
on the tables than real time would be.

A night: the day's traffic (sign-ins, refresh rotations, logouts, password
resets, one signing-key rotation), in bulk SQL, written to both schemas at
once on two connections; then both cleanups, one after the other in an order
that alternates from night to night, each on a fresh connection as a pg_cron
job would be, timed by the client; then each table's sizes and
pg_stat_user_tables counters; then the rest of the night, idle but for
autovacuum. Sign-ins are as many as keep SOAK_LIVE sessions alive into the
next day. A night that overruns its time is reported; the next one starts
at once, and the schedule catches up when nights are shorter.
"""

import asyncio
import json
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

import asyncpg
from authfort import AuthFort
from authfort.config import AuthFortConfig

HOST = os.environ["PGHOST"]
PORT = int(os.environ["PGPORT"])
USER = os.environ.get("PGUSER", "postgres")

NIGHTS = int(os.environ.get("SOAK_NIGHTS", "60"))
LIVE = int(os.environ.get("SOAK_LIVE", "1000000"))
NIGHT_SECONDS = float(os.environ.get("SOAK_NIGHT_SECONDS", "25"))
ROTATE = float(os.environ.get("SOAK_ROTATE", "0.02"))
LOGOUT = float(os.environ.get("SOAK_LOGOUT", "0.005"))
RESET = float(os.environ.get("SOAK_RESET", "0.001"))
RESET_USED = 0.7
JSON_PATH = os.environ.get("SOAK_JSON", "")
USERS = max(10, LIVE // 2)

DATABASE = "soak"
CLEANED, BASELINE = "cleaned", "baseline"
SCHEMAS = (CLEANED, BASELINE)
SESSIONS = "authfort_refresh_tokens"

# AuthFort's own TTLs (its defaults), one day scaled to one night.
_config = AuthFortConfig(database_url="postgresql+asyncpg://unused")
SCALE = NIGHT_SECONDS / 86400
REFRESH_TTL = _config.refresh_token_expire_seconds * SCALE
RESET_TTL = _config.password_reset_ttl_seconds * SCALE
KEY_TTL = _config.key_rotation_ttl_seconds * SCALE

USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"
# The settings the report quotes, so a reader sees what the cluster ran with.
# autovacuum_vacuum_max_threshold is 18's; a setting the server lacks is left out.
SETTINGS = ("autovacuum", "autovacuum_naptime", "autovacuum_max_workers", "autovacuum_vacuum_threshold",
            "autovacuum_vacuum_scale_factor", "autovacuum_vacuum_max_threshold",
            "autovacuum_vacuum_insert_scale_factor", "autovacuum_vacuum_cost_delay", "autovacuum_vacuum_cost_limit",
            "vacuum_cost_limit", "maintenance_work_mem", "shared_buffers", "max_wal_size", "checkpoint_timeout",
            "fsync")


def log(message: str) -> None:
    """Progress, on stderr, so stdout is only the results."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def connect(database: str = DATABASE, **settings: str) -> asyncpg.Connection:
    return await asyncpg.connect(host=HOST, port=PORT, user=USER, database=database, server_settings=settings)


# ---------------------------------------------------------------- setup

# Once: the users and sessions both schemas start with, in the schema
# `soak` that holds what the two writers share (unlogged: it is scratch).
# Every user has two sessions; every session is the first of its chain (a
# sign-in), issued over the last 30 days, so expiries are spread evenly over
# the next 30 nights, as in a table that has been cleaned every night.
SEED = f"""
CREATE SCHEMA soak;
CREATE UNLOGGED TABLE soak.users AS
SELECT u AS k, gen_random_uuid() AS id, format('user%s@soak.example', u) AS email,
       encode(sha256(int8send(u)), 'hex') AS password_hash
  FROM generate_series(1, {USERS}) AS u;
ALTER TABLE soak.users ADD PRIMARY KEY (k);
CREATE UNLOGGED TABLE soak.seed AS
SELECT gen_random_uuid() AS id, u.id AS user_id, s.expires_at
  FROM (SELECT i, now() + make_interval(secs => {REFRESH_TTL} * random()) AS expires_at
          FROM generate_series(1, {LIVE}) AS i) AS s
  JOIN soak.users u ON u.k = 1 + s.i % {USERS};
ANALYZE soak.users, soak.seed;
"""

# Per schema. AuthFort's secondary indexes are dropped for the load and built
# again from their own definitions (much faster than a million inserts into
# each); FK triggers are off, the rows being consistent by construction.
SEED_SCHEMA = """
SET session_replication_role = replica;
CREATE TEMP TABLE soak_indexes AS
SELECT indexrelid::regclass::text AS name, pg_get_indexdef(indexrelid) AS definition
  FROM pg_index i
 WHERE indrelid = '{s}.authfort_refresh_tokens'::regclass
   AND NOT EXISTS (SELECT FROM pg_constraint c WHERE c.conindid = i.indexrelid);
DO $$
DECLARE index_name text;
BEGIN
    FOR index_name IN SELECT name FROM soak_indexes LOOP
        EXECUTE 'DROP INDEX ' || index_name;
    END LOOP;
END $$;
INSERT INTO {s}.authfort_users (id, email, email_verified, password_hash, created_at, updated_at)
SELECT id, email, true, password_hash, now() - interval '1 year', now() - interval '1 year' FROM soak.users;
INSERT INTO {s}.authfort_refresh_tokens
       (id, user_id, token_hash, session_id, expires_at, created_at, revoked, replaced_by, user_agent, ip_address)
SELECT id, user_id, encode(sha256(uuid_send(id)), 'hex'), id, expires_at,
       expires_at - make_interval(secs => {refresh_ttl}), false, NULL, '{user_agent}', '10.0.0.1'
  FROM soak.seed ORDER BY expires_at;  -- heap order: the order the application wrote them
INSERT INTO {s}.authfort_signing_keys (id, kid, private_key, public_key, algorithm, is_current, created_at)
VALUES ('00000000-0000-0000-0000-000000000001', 'key-soak-0', repeat('k', 1704), repeat('p', 451), 'RS256', true, now());
DO $$
DECLARE definition text;
BEGIN
    FOR definition IN SELECT d.definition FROM soak_indexes d LOOP
        EXECUTE definition;
    END LOOP;
END $$;
DROP TABLE soak_indexes;
RESET session_replication_role;
"""


async def migrate(schema: str) -> None:
    """AuthFort's own migrations, into `schema`: they create their tables in
    the first schema of the search_path, so the database's is set for them."""
    admin = await connect()
    try:
        await admin.execute(f"CREATE SCHEMA {quote_ident(schema)}")
        await admin.execute(f"ALTER DATABASE {DATABASE} SET search_path = {quote_ident(schema)}")
    finally:
        await admin.close()
    auth = AuthFort(database_url=f"postgresql+asyncpg://{USER}@127.0.0.1:{PORT}/{DATABASE}")
    try:
        await auth.migrate()
    finally:
        await auth.dispose()
    admin = await connect()
    try:
        await admin.execute(f"ALTER DATABASE {DATABASE} RESET search_path")
        if await admin.fetchval("SELECT to_regclass($1)", f"{schema}.{SESSIONS}") is None:
            raise RuntimeError(f"AuthFort's migrations did not create {schema}.{SESSIONS}")
    finally:
        await admin.close()


# ---------------------------------------------------------------- traffic

# The day's requests, chosen once (from the cleaned schema: both hold the
# same live rows) and written to both schemas. Every new row gets its id, hash
# and times here, so both schemas get the same bytes. A request came at a
# moment of the past day; what it issues lives a TTL from then.
PLAN = f"""
DROP TABLE IF EXISTS soak.picked, soak.resets, soak.new_key;
CREATE UNLOGGED TABLE soak.picked AS
SELECT id, user_id, coalesce(session_id, id) AS session_id,
       CASE WHEN u < {ROTATE} THEN 'rotate' ELSE 'logout' END AS action,
       gen_random_uuid() AS new_id, encode(sha256(uuid_send(gen_random_uuid())), 'hex') AS new_hash, at,
       at + make_interval(secs => {REFRESH_TTL}) AS new_expires_at
  FROM (SELECT id, user_id, session_id, random() AS u, now() - make_interval(secs => {NIGHT_SECONDS} * random()) AS at
          FROM {CLEANED}.{SESSIONS} WHERE NOT revoked AND expires_at > now()) AS live
 WHERE u < {ROTATE + LOGOUT};
CREATE UNLOGGED TABLE soak.resets AS
SELECT id AS user_id, gen_random_uuid() AS token_id, encode(sha256(uuid_send(gen_random_uuid())), 'hex') AS token_hash,
       encode(sha256(uuid_send(gen_random_uuid())), 'hex') AS password_hash, random() < {RESET_USED} AS used, at,
       at + make_interval(secs => {RESET_TTL}) AS expires_at
  FROM (SELECT id, now() - make_interval(secs => {NIGHT_SECONDS} * random()) AS at
          FROM {CLEANED}.authfort_users WHERE random() < {RESET}) AS u;
CREATE UNLOGGED TABLE soak.new_key AS
SELECT gen_random_uuid() AS id, 'key-soak-' || md5(random()::text) AS kid, now() AS at,
       now() + make_interval(secs => {KEY_TTL}) AS old_expires_at;
ANALYZE soak.picked, soak.resets;
"""

# AuthFort's writes, request by request, as bulk statements; each is named
# so the two schemas' row counts can be compared. Those marked may differ:
# they also touch expired rows, which one schema may have cleaned already.
APPLY = [
    # refresh(): the replacement is issued (session_id carried over), then
    # the presented token is revoked, replaced_by pointing at it.
    ("rotate: insert", """
INSERT INTO {s}.authfort_refresh_tokens
       (id, user_id, token_hash, session_id, expires_at, created_at, revoked, replaced_by, user_agent, ip_address)
SELECT new_id, user_id, new_hash, session_id, new_expires_at, at, false, NULL, '{user_agent}', '10.0.0.2'
  FROM soak.picked WHERE action = 'rotate'"""),
    ("rotate: revoke", """
UPDATE {s}.authfort_refresh_tokens t SET revoked = true, replaced_by = p.new_id
  FROM soak.picked p WHERE t.id = p.id AND p.action = 'rotate'"""),
    # logout(): revoke the presented token.
    ("logout", """
UPDATE {s}.authfort_refresh_tokens t SET revoked = true FROM soak.picked p WHERE t.id = p.id AND p.action = 'logout'"""),
    # create_password_reset_token(): the user's earlier reset tokens go, a new one comes.
    ("reset: earlier tokens*", """
DELETE FROM {s}.authfort_verification_tokens v USING soak.resets r WHERE v.user_id = r.user_id AND v.type = 'password_reset'"""),
    ("reset: request", """
INSERT INTO {s}.authfort_verification_tokens (id, user_id, token_hash, type, expires_at, created_at)
SELECT token_id, user_id, token_hash, 'password_reset', expires_at, at FROM soak.resets"""),
    # reset_password(): new password, token_version bumped, every session of
    # the user revoked, the token deleted. The others' tokens expire unused.
    ("reset: password", """
UPDATE {s}.authfort_users u SET password_hash = r.password_hash, token_version = u.token_version + 1, updated_at = r.at
  FROM soak.resets r WHERE u.id = r.user_id AND r.used"""),
    ("reset: revoke sessions*", """
UPDATE {s}.authfort_refresh_tokens t SET revoked = true
  FROM soak.resets r WHERE t.user_id = r.user_id AND r.used AND NOT t.revoked"""),
    ("reset: use", """
DELETE FROM {s}.authfort_verification_tokens v USING soak.resets r WHERE v.id = r.token_id AND r.used"""),
    # rotate_key(): the current key expires a key_rotation_ttl from now and
    # stops being current; a new current key comes.
    ("key: retire", """
UPDATE {s}.authfort_signing_keys SET expires_at = k.old_expires_at, is_current = false FROM soak.new_key k WHERE is_current"""),
    ("key: new", """
INSERT INTO {s}.authfort_signing_keys (id, kid, private_key, public_key, algorithm, is_current, created_at)
SELECT id, kid, repeat('k', 1704), repeat('p', 451), 'RS256', true, at FROM soak.new_key"""),
]

# login(): new sessions, each its own session_id; as many as keep LIVE
# sessions alive into the next day.
SIGN_INS = f"""
DROP TABLE IF EXISTS soak.sign_ins;
CREATE UNLOGGED TABLE soak.sign_ins AS
WITH g AS MATERIALIZED (
    SELECT 1 + floor(random() * {USERS})::bigint AS k, now() - make_interval(secs => {NIGHT_SECONDS} * random()) AS at
      FROM generate_series(1, {{count}}))
SELECT gen_random_uuid() AS id, u.id AS user_id, encode(sha256(uuid_send(gen_random_uuid())), 'hex') AS token_hash, g.at,
       g.at + make_interval(secs => {REFRESH_TTL}) AS expires_at
  FROM g JOIN soak.users u USING (k)
"""
APPLY_SIGN_INS = ("sign-in", """
INSERT INTO {s}.authfort_refresh_tokens
       (id, user_id, token_hash, session_id, expires_at, created_at, revoked, replaced_by, user_agent, ip_address)
SELECT id, user_id, token_hash, id, expires_at, at, false, NULL, '{user_agent}', '10.0.0.3' FROM soak.sign_ins""")
ALIVE_TOMORROW = f"""
SELECT count(*) FROM {CLEANED}.{SESSIONS} WHERE NOT revoked AND expires_at > now() + make_interval(secs => {NIGHT_SECONDS})"""


def affected(tag: str) -> int:
    return int(tag.split()[-1])


async def apply(writers: dict[str, asyncpg.Connection], statements: list[tuple[str, str]]) -> dict[str, int]:
    """Writes `statements` to both schemas at once, each in one transaction
    on its own connection, and returns the cleaned schema's counts; a count
    the two schemas must agree on and do not is a bug in the traffic."""

    async def one(schema: str) -> dict[str, int]:
        connection = writers[schema]
        async with connection.transaction():
            return {name: affected(await connection.execute(sql.format(s=quote_ident(schema), user_agent=USER_AGENT)))
                    for name, sql in statements}

    cleaned, baseline = await asyncio.gather(one(CLEANED), one(BASELINE))
    for name in cleaned:
        if not name.endswith("*") and cleaned[name] != baseline[name]:
            raise RuntimeError(f"traffic differs between the schemas: {name} wrote {cleaned[name]}"
                               f" rows in {CLEANED}, {baseline[name]} in {BASELINE}")
    return cleaned


@dataclass
class Traffic:
    sign_ins: int
    rotations: int
    logouts: int
    reset_requests: int
    resets_used: int
    sessions_revoked_by_resets: int
    alive_tomorrow: int
    seconds: float


async def day(writers: dict[str, asyncpg.Connection]) -> Traffic:
    started = time.perf_counter()
    planner = writers[CLEANED]
    await planner.execute(PLAN)
    counts = await apply(writers, APPLY)
    alive = await planner.fetchval(ALIVE_TOMORROW)
    sign_ins = max(0, LIVE - alive)
    await planner.execute(SIGN_INS.format(count=sign_ins))
    counts |= await apply(writers, [APPLY_SIGN_INS])
    # Make the writers' table counters visible to the stats read below now.
    for connection in writers.values():
        await connection.execute("SELECT pg_stat_force_next_flush()")
    return Traffic(sign_ins=counts["sign-in"], rotations=counts["rotate: insert"], logouts=counts["logout"],
                   reset_requests=counts["reset: request"], resets_used=counts["reset: password"],
                   sessions_revoked_by_resets=counts["reset: revoke sessions*"],
                   alive_tomorrow=alive + counts["sign-in"], seconds=time.perf_counter() - started)


# ---------------------------------------------------------------- cleanups


@dataclass
class Cleanup:
    seconds: float
    sessions: int
    tokens: int
    keys: int
    # Heap and index blocks of the sessions table the cleanup read or hit
    # (pg_statio_user_tables): its work, whatever else the machine is doing.
    buffers: int = 0


async def clean_with_run() -> Cleanup:
    """CALL authfort_cleanup_run(), as a pg_cron job runs it: a fresh session
    whose authfort_cleanup.schema names the table."""
    connection = await connect(**{"authfort_cleanup.schema": CLEANED})
    try:
        started = time.perf_counter()
        await connection.execute("CALL authfort_cleanup_run()")
        seconds = time.perf_counter() - started
        row = await connection.fetchrow(
            "SELECT keys, tokens, sessions, status, error FROM authfort_cleanup_runs ORDER BY id DESC LIMIT 1")
        if row["status"] != "ok":
            raise RuntimeError(f"CALL authfort_cleanup_run() logged {row['status']}: {row['error']}")
        await connection.execute("SELECT pg_stat_force_next_flush()")
        return Cleanup(seconds, row["sessions"], row["tokens"], row["keys"])
    finally:
        await connection.close()


async def clean_with_delete() -> Cleanup:
    """AuthFort's three rules as raw DELETEs, each in its own transaction."""
    s = quote_ident(BASELINE)
    connection = await connect()
    try:
        started = time.perf_counter()
        sessions = affected(await connection.execute(
            f"DELETE FROM {s}.authfort_refresh_tokens WHERE revoked OR expires_at < now()"))
        tokens = affected(await connection.execute(
            f"DELETE FROM {s}.authfort_verification_tokens WHERE expires_at < now()"))
        keys = affected(await connection.execute(
            f"DELETE FROM {s}.authfort_signing_keys WHERE expires_at IS NOT NULL AND expires_at < now()"))
        seconds = time.perf_counter() - started
        await connection.execute("SELECT pg_stat_force_next_flush()")
        return Cleanup(seconds, sessions, tokens, keys)
    finally:
        await connection.close()


# ---------------------------------------------------------------- measurements


@dataclass
class TableNight:
    heap_bytes: int
    index_bytes: int
    total_bytes: int
    n_live_tup: int
    n_dead_tup: int
    autovacuum_count: int
    autoanalyze_count: int
    vacuum_running: bool
    sessions_deleted: int
    tokens_deleted: int
    keys_deleted: int
    seconds: float
    buffers: int


@dataclass
class Night:
    night: int
    traffic: Traffic
    first: str  # the schema cleaned first that night
    tables: dict[str, TableNight] = field(default_factory=dict)
    overrun_seconds: float = 0.0


STATS = f"""
SELECT pg_relation_size(c.oid) AS heap_bytes, pg_indexes_size(c.oid) AS index_bytes,
       pg_total_relation_size(c.oid) AS total_bytes, s.n_live_tup, s.n_dead_tup, s.autovacuum_count,
       s.autoanalyze_count, EXISTS (SELECT FROM pg_stat_progress_vacuum v WHERE v.relid = c.oid) AS vacuum_running
  FROM pg_class c JOIN pg_stat_user_tables s ON s.relid = c.oid
 WHERE c.oid = to_regclass(quote_ident($1) || '.{SESSIONS}')
"""


async def measure(connection: asyncpg.Connection, schema: str, cleanup: Cleanup) -> TableNight:
    row = await connection.fetchrow(STATS, schema)
    return TableNight(**dict(row), sessions_deleted=cleanup.sessions, tokens_deleted=cleanup.tokens,
                      keys_deleted=cleanup.keys, seconds=cleanup.seconds, buffers=cleanup.buffers)


# ---------------------------------------------------------------- report

MB = 1048576


def header() -> None:
    print(f"{'':>5} {'':>9}   {'cleaned: CALL authfort_cleanup_run()':<58}   {'baseline: raw DELETE':<58}")
    columns = f"{'deleted':>8} {'time s':>7} {'µs/row':>6} {'heap MB':>7} {'idx MB':>7} {'n_dead':>8} {'av':>3} {'':>4}"
    print(f"{'night':>5} {'live':>9}   {columns}   {columns}")
    print("-" * (19 + 2 * len(columns) + 3))


def row(night: Night) -> None:
    cells = []
    for schema in SCHEMAS:
        t = night.tables[schema]
        per_row = f"{t.seconds / t.sessions_deleted * 1e6:.1f}" if t.sessions_deleted else "-"
        cells.append(f"{t.sessions_deleted:>8} {t.seconds:>7.3f} {per_row:>6} {t.heap_bytes / MB:>7.0f}"
                     f" {t.index_bytes / MB:>7.0f} {t.n_dead_tup:>8} {t.autovacuum_count:>3}"
                     f" {'vac' if t.vacuum_running else '':>4}")
    late = f"  (night overran by {night.overrun_seconds:.1f} s)" if night.overrun_seconds > 0 else ""
    print(f"{night.night:>5} {night.traffic.alive_tomorrow:>9}   {cells[0]}   {cells[1]}{late}", flush=True)


def window(nights: list[Night], first: int, last: int) -> list[Night]:
    """Nights first..last, numbered from 1."""
    return [n for n in nights if first <= n.night <= last]


def figures(nights: list[Night], schema: str) -> dict:
    """The report's figures for one table: the mean total size of the last
    w nights against the w before (w = 20 of 60, a third of shorter runs),
    and the time per deleted session row, first third of the nights against
    the last."""
    count = len(nights)
    w = min(20, count // 3)
    third = count // 3
    late, before = window(nights, count - w + 1, count), window(nights, count - 2 * w + 1, count - w)
    first_third, last_third = window(nights, 1, third), window(nights, count - third + 1, count)

    def mean_total(selected):
        return statistics.mean(n.tables[schema].total_bytes for n in selected)

    def per_row(selected):
        rows = sum(n.tables[schema].sessions_deleted for n in selected)
        return sum(n.tables[schema].seconds for n in selected) / rows * 1e6 if rows else None

    def buffers_per_row(selected):
        return statistics.median(n.tables[schema].buffers / n.tables[schema].sessions_deleted
                                 for n in selected if n.tables[schema].sessions_deleted)

    size_late, size_before = mean_total(late), mean_total(before)
    early_us, late_us = per_row(first_third), per_row(last_third)
    return {
        "size_window": w, "size_nights_late": [late[0].night, late[-1].night],
        "size_nights_before": [before[0].night, before[-1].night],
        "mean_total_bytes_late": size_late, "mean_total_bytes_before": size_before,
        "size_ratio": size_late / size_before,
        "max_total_bytes": max(n.tables[schema].total_bytes for n in nights),
        "third": third, "us_per_row_first_third": early_us, "us_per_row_last_third": late_us,
        "per_row_ratio": late_us / early_us if early_us and late_us else None,
        "buffers_per_row_first_third": buffers_per_row(first_third),
        "buffers_per_row_last_third": buffers_per_row(last_third),
        # The cluster is new, and the seed's VACUUM is not autovacuum's.
        "autovacuums": nights[-1].tables[schema].autovacuum_count,
    }


async def free_space(connection: asyncpg.Connection) -> dict[str, float] | None:
    """pgstattuple's exact count of free space and dead tuples, heap and
    indexes, as a share of each sessions table's size; None without pgstattuple."""
    try:
        await connection.execute("CREATE EXTENSION IF NOT EXISTS pgstattuple")
    except asyncpg.PostgresError:
        return None
    shares = {}
    for schema in SCHEMAS:
        table = f"{quote_ident(schema)}.{SESSIONS}"
        shares[schema] = float(await connection.fetchval(
            f"""SELECT sum(free_space + dead_tuple_len)::float8 / pg_total_relation_size('{table}'::regclass)
                  FROM (SELECT '{table}'::regclass AS rel
                        UNION ALL SELECT indexrelid::regclass FROM pg_index WHERE indrelid = '{table}'::regclass) r,
                       LATERAL pgstattuple(rel)"""))
    await connection.execute("DROP EXTENSION pgstattuple")
    return shares


def report(nights: list[Night], settings: dict[str, str], results: dict, findings: list[dict],
           shares: dict[str, float] | None, duration: float) -> None:
    print()
    print("Settings: " + ", ".join(f"{name}={value}" for name, value in settings.items()))
    overruns = [n for n in nights if n.overrun_seconds > 0]
    print(f"Nights: {len(nights)} of {NIGHT_SECONDS:g} s; {len(overruns)} overran their time"
          + (f" (by {max(n.overrun_seconds for n in overruns):.1f} s at most)" if overruns else "")
          + f"; the whole run took {duration / 60:.1f} min")
    traffic = [n.traffic for n in nights]
    print(f"Traffic per night, mean: {statistics.mean(t.sign_ins for t in traffic):,.0f} sign-ins,"
          f" {statistics.mean(t.rotations for t in traffic):,.0f} refresh rotations,"
          f" {statistics.mean(t.logouts for t in traffic):,.0f} logouts,"
          f" {statistics.mean(t.reset_requests for t in traffic):,.0f} password-reset requests"
          f" ({statistics.mean(t.resets_used for t in traffic):,.0f} used, revoking"
          f" {statistics.mean(t.sessions_revoked_by_resets for t in traffic):,.0f} sessions),"
          f" 1 signing-key rotation; {statistics.mean(t.seconds for t in traffic):.1f} s to write it to both schemas")
    print()
    print("Targets (issue #18)")
    names = {CLEANED: "cleaned by CALL authfort_cleanup_run()", BASELINE: "baseline, raw DELETE"}
    for schema in SCHEMAS:
        f = results[schema]
        met = "met" if f["size_ratio"] <= 1.05 else "NOT met"
        label = "" if schema == CLEANED else "  [baseline: for comparison]"
        print(f"  soak {names[schema]}: pg_total_relation_size, mean of nights {f['size_nights_late'][0]}-"
              f"{f['size_nights_late'][1]} vs {f['size_nights_before'][0]}-{f['size_nights_before'][1]}:"
              f" {f['mean_total_bytes_late'] / MB:.0f} MB vs {f['mean_total_bytes_before'] / MB:.0f} MB,"
              f" {f['size_ratio']:.3f}x  (plateau: <= 1.05x: {met}){label}")
    for schema in SCHEMAS:
        f = results[schema]
        ratio = f"{f['per_row_ratio']:.2f}x" if f["per_row_ratio"] is not None else "n/a"
        early = f"{f['us_per_row_first_third']:.2f}" if f["us_per_row_first_third"] else "-"
        late = f"{f['us_per_row_last_third']:.2f}" if f["us_per_row_last_third"] else "-"
        print(f"  soak {names[schema]}: µs per deleted session, last {f['third']} nights vs first {f['third']}:"
              f" {late} vs {early}, {ratio}")
        print(f"    (the same work counted in blocks, whatever the machine's load: heap and index blocks read or hit"
              f" per deleted session, median of the last {f['third']} nights vs the first:"
              f" {f['buffers_per_row_last_third']:.1f} vs {f['buffers_per_row_first_third']:.1f},"
              f" {f['buffers_per_row_last_third'] / f['buffers_per_row_first_third']:.2f}x)")
    ours, base = results[CLEANED], results[BASELINE]
    if ours["us_per_row_last_third"] and base["us_per_row_last_third"]:
        print(f"    (for reference: cleaned vs baseline, µs per deleted session over the last {ours['third']} nights:"
              f" {ours['us_per_row_last_third'] / base['us_per_row_last_third']:.2f}x; autovacuums of each table:"
              f" {ours['autovacuums']} and {base['autovacuums']})")
    space = [f for f in findings if f["target"] == "sessions" and "free space" in (f["problem"] or "")]
    print(f"  check() on the cleaned table after the soak: {len(findings)} finding(s); the free-space finding:"
          f" {'none (quiet, as required)' if not space else 'REPORTED'}")
    for f in findings:
        print(f"    {f['level']}: {f['problem']}")
    if shares:
        print(f"    (for reference: pgstattuple counts free space and dead tuples at {100 * shares[CLEANED]:.0f} % of"
              f" the cleaned table's size and {100 * shares[BASELINE]:.0f} % of the baseline's, heap and indexes;"
              f" check() reports at 50 % and 64 MB)")


def write_json(nights: list[Night], settings: dict[str, str], results: dict | None, meta: dict) -> None:
    if not JSON_PATH:
        return
    data = {**meta, "settings": settings, "results": results, "nights": [asdict(n) for n in nights]}
    with open(JSON_PATH, "w") as output:
        json.dump(data, output, indent=None, separators=(",", ":"))
        output.write("\n")


# ---------------------------------------------------------------- main


async def seed(writers: dict[str, asyncpg.Connection]) -> None:
    """The shared seed, then each schema's copy of it, both at once."""
    started = time.perf_counter()
    await writers[CLEANED].execute("CREATE EXTENSION authfort_cleanup")
    await writers[CLEANED].execute(SEED)

    async def one(schema: str) -> None:
        connection = writers[schema]
        await connection.execute(SEED_SCHEMA.format(s=quote_ident(schema), refresh_ttl=REFRESH_TTL,
                                                    user_agent=USER_AGENT))
        # The fixes check() names for a mostly live table: the replaced_by
        # index and both time indexes, the same on the baseline.
        await connection.execute("SELECT set_config('authfort_cleanup.schema', $1, false)", schema)
        await connection.execute("SELECT count(*) FROM authfort_cleanup_create_indexes(time_indexes => true)")
        await connection.execute("RESET authfort_cleanup.schema")
        await connection.execute(f"VACUUM ANALYZE {quote_ident(schema)}.{SESSIONS}, {quote_ident(schema)}.authfort_users")

    await asyncio.gather(*(one(schema) for schema in SCHEMAS))
    await writers[CLEANED].execute("DROP TABLE soak.seed")
    log(f"seeded {LIVE:,} sessions of {USERS:,} users in each schema in {time.perf_counter() - started:.0f} s")


# Blocks of a sessions table and its indexes read or found in shared buffers
# so far. Each cleanup flushes its counters before it returns; an autovacuum
# running at the same time may add its own, hence medians in the report.
BUFFERS = f"""
SELECT coalesce(heap_blks_read, 0) + coalesce(heap_blks_hit, 0) + coalesce(idx_blks_read, 0) + coalesce(idx_blks_hit, 0)
  FROM pg_statio_user_tables WHERE relid = to_regclass(quote_ident($1) || '.{SESSIONS}')
"""


async def clean_both(first: str, observer: asyncpg.Connection) -> dict[str, Cleanup]:
    """Both cleanups, one after the other (never at once: each is timed),
    `first` first."""
    cleanups = {}
    for schema in (first, BASELINE if first == CLEANED else CLEANED):
        before = await observer.fetchval(BUFFERS, schema)
        cleanups[schema] = await (clean_with_run() if schema == CLEANED else clean_with_delete())
        cleanups[schema].buffers = await observer.fetchval(BUFFERS, schema) - before
    return cleanups


async def main() -> None:
    if NIGHTS < 6:
        sys.exit("SOAK_NIGHTS must be at least 6: the report compares thirds of the run")
    run_started = time.perf_counter()
    admin = await connect("postgres")
    try:
        settings = {name: value for name in SETTINGS
                    if (value := await admin.fetchval("SELECT current_setting($1, true)", name)) is not None}
        server = await admin.fetchval("SHOW server_version")
        naptime = await admin.fetchval("SELECT setting::int FROM pg_settings WHERE name = 'autovacuum_naptime'")
        await admin.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        await admin.execute(f"CREATE DATABASE {DATABASE}")
    finally:
        await admin.close()
    log(f"PostgreSQL {server}: {NIGHTS} nights of {NIGHT_SECONDS:g} s, {LIVE:,} live sessions;"
        f" autovacuum_naptime {naptime} s = {naptime / NIGHT_SECONDS:.1f} nights")
    for schema in SCHEMAS:
        await migrate(schema)
    meta = {"postgres": server, "nights_planned": NIGHTS, "live": LIVE, "users": USERS,
            "night_seconds": NIGHT_SECONDS, "rotate": ROTATE, "logout": LOGOUT, "reset": RESET,
            "reset_used": RESET_USED, "naptime_nights": naptime / NIGHT_SECONDS,
            "started": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")}
    writers = {schema: await connect() for schema in SCHEMAS}
    try:
        meta["authfort_cleanup"] = await writers[CLEANED].fetchval(
            "SELECT default_version FROM pg_available_extensions WHERE name = 'authfort_cleanup'")
        await seed(writers)
        # What expired while the seed was written and indexed: cleaned now,
        # so night 1 starts like any other.
        warmup = await clean_both(CLEANED, writers[CLEANED])
        meta["warmup_deleted"] = {schema: cleanup.sessions for schema, cleanup in warmup.items()}
        print(f"PostgreSQL {server}; {NIGHTS} nights of {NIGHT_SECONDS:g} s (one day each: a wall second is"
              f" {86400 / NIGHT_SECONDS / 60:.0f} min); {LIVE:,} live sessions of {USERS:,} users;"
              f" TTLs scaled: refresh token {REFRESH_TTL:.0f} s, password reset {RESET_TTL:.2f} s,"
              f" old signing key {KEY_TTL:.0f} s; autovacuum_naptime {naptime} s = {naptime / NIGHT_SECONDS:.1f} nights")
        print(f"Per day: {100 * ROTATE:g} % of live sessions refreshed, {100 * LOGOUT:g} % logged out,"
              f" {100 * RESET:g} % of users reset their password ({100 * RESET_USED:g} % of them use the token);"
              f" sign-ins keep {LIVE:,} sessions alive into the next day. Before night 1, a first cleanup took"
              f" the {warmup[CLEANED].sessions:,} sessions that expired while the seed was written.")
        print("live: sessions alive into the next day; deleted: sessions deleted by the night's cleanup (its time"
              " includes keys and tokens); n_dead, av: pg_stat_user_tables' n_dead_tup and autovacuum_count"
              " after it; vac: autovacuum was working on the table")
        header()
        nights: list[Night] = []
        clock = time.monotonic()
        for number in range(1, NIGHTS + 1):
            day_traffic = await day(writers)
            first = CLEANED if number % 2 else BASELINE
            cleanups = await clean_both(first, writers[CLEANED])
            night = Night(number, day_traffic, first)
            for schema in SCHEMAS:
                night.tables[schema] = await measure(writers[CLEANED], schema, cleanups[schema])
            end = clock + number * NIGHT_SECONDS
            night.overrun_seconds = max(0.0, time.monotonic() - end)
            nights.append(night)
            log(f"night {number}: traffic {day_traffic.seconds:.1f} s, cleanups"
                f" {cleanups[CLEANED].seconds:.1f} s and {cleanups[BASELINE].seconds:.1f} s")
            row(night)
            write_json(nights, settings, None, meta)
            if night.overrun_seconds == 0:
                await asyncio.sleep(end - time.monotonic())
        checker = writers[CLEANED]
        await checker.execute("SELECT set_config('authfort_cleanup.schema', $1, false)", CLEANED)
        findings = [dict(r) for r in await checker.fetch("SELECT level, target, problem, fix FROM authfort_cleanup_check()")]
        await checker.execute("RESET authfort_cleanup.schema")
        shares = await free_space(checker)
    finally:
        for connection in writers.values():
            await connection.close()
    results = {schema: figures(nights, schema) for schema in SCHEMAS}
    results["check_findings"] = findings
    results["free_space_share"] = shares
    duration = time.perf_counter() - run_started
    meta["duration_seconds"] = duration
    report(nights, settings, results, findings, shares, duration)
    write_json(nights, settings, results, meta)
    if JSON_PATH:
        log(f"nights written to {JSON_PATH}")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        sys.exit(__doc__)
    asyncio.run(main())
