"""Differential test: authfort_cleanup's SQL functions against AuthFort itself.

For each seed, one database is migrated by AuthFort and filled with random
but deterministic data, then copied byte for byte (CREATE DATABASE ...
TEMPLATE). AuthFort's own cleanup methods run on the original, our SQL
functions on the copy, and the two must agree row for row: same counts, same
surviving ids, and the same replaced_by links on the surviving sessions
(which PostgreSQL's ON DELETE SET NULL rewrites). Comparing against the real
package, not a restatement of its rules, is the point: if AuthFort's rule
and ours ever drift apart, this is what notices.

Expects PGHOST and PGPORT (tests/suites/differential.sh exports them). Prints
one line per check and `N passed, N failed` last; exits 1 on any failure.
"""

import asyncio
import os
import random
import sys
import traceback
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import asyncpg
from authfort import AuthFort

from results import Results

PORT = int(os.environ["PGPORT"])

# Every expires_at stays at least this far from now(): AuthFort and the
# extension each take "now" at their own moment, minutes apart, and no row may
# change sides in between.
MARGIN = timedelta(hours=2)

AWKWARD_SCHEMA = 'Auth "Prod"'


@dataclass(frozen=True)
class Target:
    """One of AuthFort's three cleanups, as each side spells it."""

    name: str
    table: str
    authfort_method: str
    sql_function: str


TARGETS = [
    Target("keys", "authfort_signing_keys", "cleanup_expired_keys", "authfort_cleanup_keys"),
    Target("tokens", "authfort_verification_tokens", "cleanup_expired_tokens", "authfort_cleanup_tokens"),
    Target("sessions", "authfort_refresh_tokens", "cleanup_expired_sessions", "authfort_cleanup_sessions"),
]


@dataclass(frozen=True)
class Scenario:
    seed: int
    # None: AuthFort's tables in public. Otherwise the schema they are
    # migrated into, through the database's search_path.
    schema: str | None = None

    @property
    def qualified_schema(self) -> str:
        return quote_ident(self.schema or "public")

    @property
    def original(self) -> str:
        return f"diff_a_{self.seed}"

    @property
    def copy(self) -> str:
        return f"diff_b_{self.seed}"


SCENARIOS = [Scenario(seed) for seed in range(1, 7)] + [Scenario(7, AWKWARD_SCHEMA)]


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# ---------------------------------------------------------------- seeding


@dataclass
class Seed:
    """One seed's rows to insert, per table, in its *_COLUMNS order."""

    rng: random.Random
    now: datetime
    users: list[tuple] = field(default_factory=list)
    keys: list[tuple] = field(default_factory=list)
    tokens: list[tuple] = field(default_factory=list)
    sessions: list[tuple] = field(default_factory=list)

    def uuid(self) -> uuid.UUID:
        """Deterministic per seed, unlike uuid4()."""
        return uuid.UUID(int=self.rng.getrandbits(128), version=4)

    def token_hash(self) -> str:
        return f"{self.rng.getrandbits(256):064x}"

    def expiry(self, expired: bool) -> datetime:
        """An expires_at in the past or the future, never within MARGIN of now."""
        hours = self.rng.uniform(MARGIN / timedelta(hours=1), 24 * 60)
        return self.now + timedelta(hours=-hours if expired else hours)


USER_COLUMNS = ["id", "email", "created_at", "updated_at"]
KEY_COLUMNS = ["id", "kid", "private_key", "public_key", "algorithm", "is_current", "created_at", "expires_at"]
TOKEN_COLUMNS = ["id", "user_id", "token_hash", "type", "expires_at", "created_at"]
SESSION_COLUMNS = ["id", "user_id", "token_hash", "session_id", "expires_at", "created_at", "revoked", "replaced_by"]
TOKEN_TYPES = ["password_reset", "email_verify", "magic_link", "otp"]


def make_seed(seed: int) -> Seed:
    """Random data in the shapes AuthFort produces, with per-seed proportions."""
    rng = random.Random(seed)
    data = Seed(rng, datetime.now(UTC))
    created = data.now - timedelta(days=90)

    for i in range(rng.randint(20, 150)):
        data.users.append((data.uuid(), f"user{i}@seed{seed}.example", created, created))
    user_ids = [user[0] for user in data.users]

    # Key rotation: exactly one current key, which never expires; rotated-out
    # keys expire key_rotation_ttl after rotation (past or future), and a few
    # non-current keys have no expiry at all.
    expired_share, null_share = rng.uniform(0.2, 0.8), rng.uniform(0.0, 0.15)
    for i in range(rng.randint(100, 400)):
        if i == 0:
            is_current, expires_at = True, None
        elif rng.random() < null_share:
            is_current, expires_at = False, None
        else:
            is_current, expires_at = False, data.expiry(rng.random() < expired_share)
        data.keys.append((data.uuid(), f"kid-{seed}-{i}", f"private {i}", f"public {i}", "RS256",
                          is_current, created, expires_at))

    expired_share = rng.uniform(0.1, 0.9)
    type_weights = [rng.uniform(0.1, 1.0) for _ in TOKEN_TYPES]
    for _ in range(rng.randint(300, 2000)):
        data.tokens.append((data.uuid(), rng.choice(user_ids), data.token_hash(),
                            rng.choices(TOKEN_TYPES, type_weights)[0],
                            data.expiry(rng.random() < expired_share), created))

    add_sessions(data, user_ids, rng.randint(300, 2000))
    return data


def add_sessions(data: Seed, user_ids: list[uuid.UUID], target_rows: int) -> None:
    """Refresh tokens grouped into sessions, as AuthFort's rotation leaves them.

    Each refresh revokes the presented token and points its replaced_by at the
    new one, so a session is a chain of revoked tokens ending in its latest.
    The latest is revoked too if the user logged out. Expiry decides the rest:
    sessions are live, abandoned (latest expired, unrevoked) or logged out
    while still unexpired.

    AuthFort only sets replaced_by on tokens it revokes, so every token with
    a link is deleted and survivors never have one; the ON DELETE SET NULL
    comparison would then be vacuous. A few chains therefore have a live,
    unrevoked token whose replaced_by points at a doomed one (a rotation whose
    revoke was lost), so that PostgreSQL has survivors' links to clear.
    """
    rng = data.rng
    logout_share, expired_share = rng.uniform(0.05, 0.5), rng.uniform(0.1, 0.7)
    dangling_share = rng.uniform(0.02, 0.1)
    # At least 2, so every seed has rotation chains.
    max_chain = rng.randint(2, 8)
    while len(data.sessions) < target_rows:
        user_id = rng.choice(user_ids)
        ids = [data.uuid() for _ in range(rng.randint(1, max_chain))]
        latest_expired = rng.random() < expired_share
        logged_out = rng.random() < logout_share
        for position, token_id in enumerate(ids):
            latest = position == len(ids) - 1
            # Older tokens in a chain were issued earlier, so may have expired
            # while the latest has not.
            expired = latest_expired or (not latest and rng.random() < 0.3)
            revoked = not latest or logged_out
            replaced_by = None if latest else ids[position + 1]
            data.sessions.append((token_id, user_id, data.token_hash(), ids[0], data.expiry(expired),
                                  data.now - timedelta(days=30), revoked, replaced_by))
        if len(ids) > 1 and rng.random() < dangling_share:
            # ids[0] was rotated out, hence revoked and deleted by both sides.
            data.sessions.append((data.uuid(), user_id, data.token_hash(), ids[0], data.expiry(False),
                                  data.now, False, ids[0]))


async def seed_database(scenario: Scenario) -> None:
    data = make_seed(scenario.seed)
    connection = await asyncpg.connect(database=scenario.original, user="postgres")
    try:
        schema = scenario.schema or "public"
        for table, columns, records in [
            ("authfort_users", USER_COLUMNS, data.users),
            ("authfort_signing_keys", KEY_COLUMNS, data.keys),
            ("authfort_verification_tokens", TOKEN_COLUMNS, data.tokens),
            ("authfort_refresh_tokens", SESSION_COLUMNS, data.sessions),
        ]:
            await connection.copy_records_to_table(table, schema_name=schema, columns=columns, records=records)
    finally:
        await connection.close()


# ---------------------------------------------------------------- databases


async def admin(statement: str) -> None:
    connection = await asyncpg.connect(database="postgres", user="postgres")
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


def authfort_for(database: str) -> AuthFort:
    return AuthFort(database_url=f"postgresql+asyncpg://postgres@127.0.0.1:{PORT}/{database}")


async def create_original(scenario: Scenario) -> None:
    """AuthFort's schema by AuthFort's migrations, then the extension.

    For a custom schema the database's search_path points at it before
    migrating: AuthFort has no schema option and creates its tables in the
    first schema of the search_path. The extension itself goes to public: a
    schema whose name contains a double quote is refused as an extension
    schema by PostgreSQL (its install script uses @extschema@).
    """
    database = quote_ident(scenario.original)
    await admin(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
    await admin(f"CREATE DATABASE {database}")
    if scenario.schema:
        connection = await asyncpg.connect(database=scenario.original, user="postgres")
        try:
            await connection.execute(f"CREATE SCHEMA {scenario.qualified_schema}")
            await connection.execute(f"ALTER DATABASE {database} SET search_path = {scenario.qualified_schema}")
        finally:
            await connection.close()
    auth = authfort_for(scenario.original)
    try:
        await auth.migrate()
    finally:
        await auth.dispose()
    connection = await asyncpg.connect(database=scenario.original, user="postgres")
    try:
        await connection.execute("CREATE EXTENSION authfort_cleanup SCHEMA public")
    finally:
        await connection.close()


async def clean_with_authfort(scenario: Scenario) -> dict[str, int]:
    auth = authfort_for(scenario.original)
    try:
        return {target.name: await getattr(auth, target.authfort_method)() for target in TARGETS}
    finally:
        await auth.dispose()


async def clean_with_extension(scenario: Scenario) -> dict[str, int]:
    """Our functions on the copy, finding the tables only through the setting.

    The copy does not inherit the original's ALTER DATABASE search_path, so a
    custom schema is reachable only through authfort_cleanup.schema.
    """
    connection = await asyncpg.connect(database=scenario.copy, user="postgres")
    try:
        if scenario.schema:
            await connection.execute("SELECT set_config('authfort_cleanup.schema', $1, false)", scenario.schema)
        return {target.name: await connection.fetchval(f"SELECT public.{target.sql_function}()")
                for target in TARGETS}
    finally:
        await connection.close()


async def snapshot(scenario: Scenario, database: str) -> dict[str, dict[uuid.UUID, uuid.UUID | None]]:
    """Per target, its rows as id -> replaced_by (None outside sessions)."""
    connection = await asyncpg.connect(database=database, user="postgres")
    try:
        snapshots = {}
        for target in TARGETS:
            link = "replaced_by" if target.name == "sessions" else "NULL::uuid"
            rows = await connection.fetch(f"SELECT id, {link} FROM {scenario.qualified_schema}.{target.table}")
            snapshots[target.name] = {row[0]: row[1] for row in rows}
        return snapshots
    finally:
        await connection.close()


async def tables_only_in_schema(scenario: Scenario) -> bool:
    """For the custom-schema case: the migrations really put the tables there."""
    connection = await asyncpg.connect(database=scenario.original, user="postgres")
    try:
        return await connection.fetchval(
            "SELECT bool_and(to_regclass(format('%I.%I', $1::text, t)) IS NOT NULL"
            "            AND to_regclass(format('public.%I', t)) IS NULL)"
            "  FROM unnest($2::text[]) AS t",
            scenario.schema, [target.table for target in TARGETS])
    finally:
        await connection.close()


# ---------------------------------------------------------------- the test


async def run_scenario(scenario: Scenario, results: Results) -> None:
    label = f"seed {scenario.seed}"
    await create_original(scenario)
    if scenario.schema:
        results.check(f"{label} schema", await tables_only_in_schema(scenario),
                      f"AuthFort migrated its tables into {scenario.qualified_schema}, none into public")
    await seed_database(scenario)
    before = await snapshot(scenario, scenario.original)
    await admin(f"DROP DATABASE IF EXISTS {quote_ident(scenario.copy)} WITH (FORCE)")
    await admin(f"CREATE DATABASE {quote_ident(scenario.copy)} TEMPLATE {quote_ident(scenario.original)}")

    authfort_deleted = await clean_with_authfort(scenario)
    extension_deleted = await clean_with_extension(scenario)
    authfort_left = await snapshot(scenario, scenario.original)
    extension_left = await snapshot(scenario, scenario.copy)

    for target in TARGETS:
        name = f"{label} {target.name}"
        theirs, ours = authfort_deleted[target.name], extension_deleted[target.name]
        results.check(name, theirs == ours, f"counts {theirs} {'=' if theirs == ours else '!='} {ours}")
        kept_a, kept_b = authfort_left[target.name], extension_left[target.name]
        same_ids = kept_a.keys() == kept_b.keys()
        results.check(name, same_ids,
                      f"surviving ids identical ({len(kept_a)})" if same_ids else
                      f"surviving ids differ: {len(kept_a.keys() - kept_b.keys())} only after AuthFort, "
                      f"{len(kept_b.keys() - kept_a.keys())} only after authfort_cleanup")
        total = len(before[target.name])
        results.check(name, 0 < theirs < total and len(kept_a) == total - theirs,
                      f"deleted {theirs} of {total}, kept {len(kept_a)}")

    sessions_before = before["sessions"]
    kept_a, kept_b = authfort_left["sessions"], extension_left["sessions"]
    differing = [token for token in kept_a.keys() & kept_b.keys() if kept_a[token] != kept_b[token]]
    results.check(f"{label} sessions", not differing,
                  "replaced_by identical on survivors" if not differing else
                  f"replaced_by differs on {len(differing)} survivors")
    cleared = sum(1 for token, link in kept_a.items() if link is None and sessions_before[token] is not None)
    results.check(f"{label} sessions", cleared > 0, f"ON DELETE SET NULL cleared replaced_by on {cleared} survivors")


async def drop_databases(scenario: Scenario) -> None:
    for database in (scenario.original, scenario.copy):
        await admin(f"DROP DATABASE IF EXISTS {quote_ident(database)} WITH (FORCE)")


async def main() -> int:
    results = Results()
    try:
        for scenario in SCENARIOS:
            where = f" (tables in schema {scenario.qualified_schema})" if scenario.schema else ""
            print(f"seed {scenario.seed}{where}")
            try:
                await run_scenario(scenario, results)
            except Exception as error:
                # One broken seed must not hide the others' results.
                traceback.print_exc()
                results.check(f"seed {scenario.seed}", False, f"{type(error).__name__}: {error}")
            finally:
                await drop_databases(scenario)
    finally:
        status = results.summary()
    return status


if __name__ == "__main__":
    # Line-buffered, so check lines and any traceback on stderr interleave
    # in the order they happened.
    sys.stdout.reconfigure(line_buffering=True)
    sys.exit(asyncio.run(main()))
