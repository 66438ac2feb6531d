"""AuthFort's own session cleanup and the extension's, running at the same time.

A user switching over (doc/migration-from-python.md) may keep AuthFort's
Python job, `await auth.cleanup_expired_sessions()`, for a while beside the
extension. That job is one `DELETE FROM authfort_refresh_tokens WHERE revoked
OR expires_at < now()` through SQLAlchemy, and it never takes the
extension's advisory locks, so the two can delete sessions at the same moment,
and two such statements can deadlock inside PostgreSQL's ON DELETE SET NULL
trigger on replaced_by. This runs them together and checks what matters:

1. Loops, for DURATION seconds. A writer (through parts 1 and 2) keeps the
   sessions table rotation-heavy (refreshes that revoke the old token and
   point its replaced_by at the new one, sign-ins, logouts, abandoned chains
   already expired, some links crossing chains, every round's rows in
   shuffled heap order, and every BURST_PAUSE a burst of abandoned chains so
   that the next statements are long). Meanwhile, each on its own connection:

     authfort   AuthFort 0.0.31's real cleanup_expired_sessions(), on its own engine
     procedure  CALL authfort_cleanup_run(batch_size => 200)   (autocommit)
     function   SELECT authfort_cleanup_sessions()

   A monitor samples pg_stat_activity meanwhile, so the test shows that the
   two sides really overlapped (both mid-statement at once, one waiting on a
   lock the other holds), not only that nothing went wrong.
2. The recipe that keeps them apart, for RECIPE_DURATION seconds: AuthFort's
   job holds the advisory lock of the extension's runs while it deletes
   (cleanup_sessions_apart()), beside the procedure's loop. They must meet
   at that lock and never in a lock wait.
3. Staged crossings: the interleaving the loops meet only now and then, made
   certain with an application's row lock (see stage_crossing()), once
   against each of the extension's two ways of deleting sessions.

Checks: the extension's side raises no error (or, from a one-shot function,
only a deadlock whose HINT says to retry it), nothing AuthFort's rule keeps
is lost, and one more cleanup at the end leaves nothing deletable. Errors on
AuthFort's side and the writer's are counted and printed, by SQLSTATE.

Expects PGHOST and PGPORT (tests/suites/side_by_side.sh exports them) and a
database (the first argument) with AuthFort's schema from AuthFort's own
migrations, the extension, and the replaced_by index. Prints one line per
check and `N passed, N failed` last; exits 1 on any failure. DURATION,
RECIPE_DURATION and SIDES (a comma-separated subset of the three sides of
part 1, to tell which pairing does what) may be set in the environment for a
longer measurement by hand.
"""

import asyncio
import os
import random
import re
import secrets
import sys
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import asyncpg
from authfort import AuthFort
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from results import Results

DURATION = float(os.environ.get("DURATION", "10"))  # seconds of loops; 2 busy cores
RECIPE_DURATION = float(os.environ.get("RECIPE_DURATION", "5"))  # seconds of the recipe's loops
DATABASE = sys.argv[1] if len(sys.argv) > 1 else "app"
PORT = int(os.environ["PGPORT"])
ALL_SIDES = ("authfort", "procedure", "function")
SIDES = [side for side in os.environ.get("SIDES", ",".join(ALL_SIDES)).split(",") if side]
BATCH_SIZE = 200

USERS = 300
SEED_SESSIONS_PER_USER = (1, 3)
SEED_ABANDONED_CHAINS = 1500
# One writer round, one transaction: this many refreshes, sign-ins and
# logouts, and abandoned chains (each 1 to MAX_CHAIN rows, all expired).
ROTATIONS, SIGN_INS, LOGOUTS, ABANDONED_CHAINS, MAX_CHAIN = 20, 6, 3, 8, 6
# Every BURST_PAUSE seconds a round adds BURST_CHAINS more abandoned chains
# (about 3.5 rows each): the next cleanup statements then delete hundreds of
# rows, and last long enough to meet each other mid-statement.
BURST_PAUSE, BURST_CHAINS = 1.0, 150
# A refreshed token points at another chain's new token instead of its own;
# an abandoned token at another abandoned chain's; a sign-in's fresh, live
# token at a token this round revokes (a rotation whose revoke was lost, as
# in tests/differential.py), so the SET NULL trigger must clear a survivor.
CROSS_SHARE, DANGLING_SHARE = 0.2, 0.15
# New tokens: this share expires during the run (fresh work for the expired
# arm), the rest outlives it. AuthFort refuses to refresh a token that has
# expired, so the writer only rotates tokens with ROTATE_MARGIN left.
SHORT_SHARE = 0.3
SHORT = (timedelta(seconds=1), timedelta(seconds=4))
LONG = (timedelta(minutes=10), timedelta(days=30))
ROTATE_MARGIN = timedelta(milliseconds=500)
# Pauses between calls (up to this long, at random): enough for the sides to
# interleave, no busy loop.
WRITER_PAUSE = 0.01
CLEANUP_PAUSE = 0.05
MONITOR_PAUSE = 0.01
# What AuthFort's job looks like in pg_stat_activity: SQLAlchemy's rendering
# of delete_expired_refresh_tokens(). Nothing else here deletes that way.
AUTHFORT_STATEMENT = "DELETE FROM authfort_refresh_tokens WHERE%"

DELETABLE = "SELECT count(*) FROM authfort_refresh_tokens WHERE revoked OR expires_at < now()"


def now() -> datetime:
    return datetime.now(UTC)


def token_hash() -> str:
    """What AuthFort stores: a SHA-256 hex digest (of a token nobody holds)."""
    return secrets.token_hex(32)


def database_error(error: BaseException) -> BaseException:
    """The driver's own exception under SQLAlchemy's wrappers, which carries
    the SQLSTATE and the HINT: SQLAlchemy's DBAPIError's .orig is the asyncpg
    adapter's error, whose __cause__ is asyncpg's exception."""
    pending, seen = [error], set()
    while pending:
        current = pending.pop(0)
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(getattr(current, "sqlstate", None), str):
            return current
        pending += [getattr(current, "orig", None), current.__cause__, current.__context__]
    return error


def sqlstate(error: BaseException) -> str:
    return getattr(database_error(error), "sqlstate", None) or f"none ({type(error).__name__})"


def says_retry(error: BaseException) -> bool:
    """A deadlock a one-shot function lost must say, in its HINT, that
    running the call again is the cure."""
    hint = getattr(database_error(error), "hint", None) or ""
    return sqlstate(error) == "40P01" and "retr" in hint.lower()


# ---------------------------------------------------------------- the writer


@dataclass
class Live:
    """A token the writer issued and has not revoked: AuthFort's rule keeps
    it until expires_at."""

    user_id: uuid.UUID
    session_id: uuid.UUID
    expires_at: datetime


class Vanished(Exception):
    def __init__(self, ids: set[uuid.UUID]) -> None:
        super().__init__(f"{len(ids)} live tokens vanished")
        self.ids = ids


@dataclass
class Writer:
    connection: asyncpg.Connection
    rng: random.Random
    users: list[uuid.UUID]
    live: dict[uuid.UUID, Live] = field(default_factory=dict)
    stats: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    first_error: dict[str, str] = field(default_factory=dict)
    # Live tokens a rotation or logout found gone mid-run.
    vanished: list[uuid.UUID] = field(default_factory=list)

    def lifetime(self) -> timedelta:
        low, high = SHORT if self.rng.random() < SHORT_SHARE else LONG
        return low + (high - low) * self.rng.random()

    def abandoned(self, chains: int, at: datetime) -> list[tuple]:
        """Sessions whose owners never came back: chains of tokens, all
        expired, each older one revoked and pointing at the next (or, at
        CROSS_SHARE, at a later token of another chain). The links follow
        one age order across all the chains, so they never form a cycle."""
        tokens = []  # (id, chain) in age order, oldest first
        for chain in range(chains):
            tokens += [(uuid.uuid4(), chain) for _ in range(self.rng.randint(1, MAX_CHAIN))]
        rows = []
        for position, (token_id, chain) in enumerate(tokens):
            later = tokens[position + 1:position + 1 + 4 * MAX_CHAIN]
            own = [other for other, other_chain in later if other_chain == chain]
            foreign = [other for other, other_chain in later if other_chain != chain]
            if own and foreign and self.rng.random() < CROSS_SHARE:
                replaced_by = self.rng.choice(foreign)
                self.stats["crossing links"] += 1
            else:
                replaced_by = own[0] if own else None
            expires_at = at - timedelta(seconds=self.rng.uniform(1, 86400))
            # The newest token of a chain was never revoked, just left to expire.
            rows.append((token_id, self.rng.choice(self.users), token_hash(), token_id, expires_at,
                         bool(own), replaced_by))
        return rows

    async def insert(self, rows: list[tuple]) -> None:
        """One INSERT, rows in the order given: the heap order the deleters
        will scan. Links to rows later in the same statement are fine, since
        PostgreSQL checks the foreign key at the end of the statement."""
        columns = list(zip(*rows))
        await self.connection.execute(
            """INSERT INTO authfort_refresh_tokens
                   (id, user_id, token_hash, session_id, expires_at, created_at, revoked, replaced_by,
                    user_agent, ip_address)
               SELECT id, user_id, token_hash, session_id, expires_at, now(), revoked, replaced_by,
                      'side_by_side.py', '127.0.0.1'
                 FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::uuid[], $5::timestamptz[], $6::bool[],
                             $7::uuid[]) WITH ORDINALITY
                      AS r(id, user_id, token_hash, session_id, expires_at, revoked, replaced_by, n)
                ORDER BY n""",
            *[list(column) for column in columns])

    async def seed(self) -> None:
        """Users, their live sessions, and a backlog of abandoned chains, so
        the first cleanup calls are long statements that overlap."""
        at = now()
        await self.connection.copy_records_to_table(
            "authfort_users", columns=["id", "email", "created_at", "updated_at"],
            records=[(user, f"user-{user.hex}@side-by-side.example", at, at) for user in self.users])
        rows = self.abandoned(SEED_ABANDONED_CHAINS, at)
        for user in self.users:
            for _ in range(self.rng.randint(*SEED_SESSIONS_PER_USER)):
                token_id, expires_at = uuid.uuid4(), at + self.lifetime()
                rows.append((token_id, user, token_hash(), token_id, expires_at, False, None))
                self.live[token_id] = Live(user, token_id, expires_at)
        self.rng.shuffle(rows)
        await self.insert(rows)
        self.stats["rows seeded"] += len(rows)

    async def round(self, burst: bool) -> None:
        """One transaction: refreshes, sign-ins, logouts and abandoned chains,
        all inserted in shuffled order, then the revokes. The writer's view of
        what is live changes only once it has committed."""
        at = now()
        candidates = [token_id for token_id, live in self.live.items() if live.expires_at > at + ROTATE_MARGIN]
        chosen = self.rng.sample(candidates, min(len(candidates), ROTATIONS + LOGOUTS))
        rotating, logging_out = chosen[:ROTATIONS], chosen[ROTATIONS:]

        rows, issued = [], {}
        for old_id in rotating:
            old = self.live[old_id]
            new_id, expires_at = uuid.uuid4(), at + self.lifetime()
            rows.append((new_id, old.user_id, token_hash(), old.session_id, expires_at, False, None))
            issued[new_id] = Live(old.user_id, old.session_id, expires_at)
        new_ids = list(issued)
        revokes = []  # (id, replaced_by)
        for position, old_id in enumerate(rotating):
            replaced_by = new_ids[position]
            if len(new_ids) > 1 and self.rng.random() < CROSS_SHARE:
                replaced_by = self.rng.choice(new_ids[:position] + new_ids[position + 1:])
                self.stats["crossing links"] += 1
            revokes.append((old_id, replaced_by))
        revokes += [(old_id, None) for old_id in logging_out]
        for _ in range(SIGN_INS):
            user, token_id, expires_at = self.rng.choice(self.users), uuid.uuid4(), at + self.lifetime()
            replaced_by = None
            if revokes and self.rng.random() < DANGLING_SHARE:
                replaced_by = self.rng.choice(revokes)[0]
                self.stats["live tokens linked to a revoked one"] += 1
            rows.append((token_id, user, token_hash(), token_id, expires_at, False, replaced_by))
            issued[token_id] = Live(user, token_id, expires_at)
        rows += self.abandoned(ABANDONED_CHAINS + (BURST_CHAINS if burst else 0), at)
        self.rng.shuffle(rows)

        async with self.connection.transaction():
            await self.insert(rows)
            if revokes:
                found = await self.connection.fetch(
                    """UPDATE authfort_refresh_tokens AS t SET revoked = true, replaced_by = r.replaced_by
                         FROM unnest($1::uuid[], $2::uuid[]) AS r(id, replaced_by)
                        WHERE t.id = r.id RETURNING t.id""",
                    [old_id for old_id, _ in revokes], [replaced_by for _, replaced_by in revokes])
                if len(found) != len(revokes):
                    # A live token is gone: only a cleanup could have taken it.
                    # The transaction must not commit, or the new tokens would
                    # point at nothing; the token is counted as lost.
                    gone = {old_id for old_id, _ in revokes} - {row["id"] for row in found}
                    raise Vanished(gone)
        for old_id, _ in revokes:
            del self.live[old_id]
        self.live.update(issued)
        self.stats["rounds committed"] += 1
        self.stats["bursts"] += burst
        self.stats["rows inserted"] += len(rows)
        self.stats["rows revoked"] += len(revokes)

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        next_burst = loop.time()
        while not stop.is_set():
            burst = loop.time() >= next_burst
            try:
                await self.round(burst)
                if burst:
                    next_burst = loop.time() + BURST_PAUSE
            except Vanished as vanished:
                # Chosen with ROTATE_MARGIN left, but a round that waited on a
                # lock can outlast that: a token that has expired by now may
                # rightly have been cleaned. Only the others are lost.
                at = now()
                for token_id in vanished.ids:
                    if self.live.pop(token_id).expires_at > at:
                        self.vanished.append(token_id)
                    else:
                        self.stats["expired while a round waited, and cleaned"] += 1
            except Exception as error:  # the writer's errors are counted too
                code = sqlstate(error)
                self.errors[code] += 1
                self.first_error.setdefault(code, f"{type(error).__name__}: {error}".splitlines()[0])
            await asyncio.sleep(self.rng.uniform(0, WRITER_PAUSE))


# ---------------------------------------------------------------- the cleanups


@dataclass
class Side:
    """One cleanup loop: what it called, what it deleted, how it failed."""

    name: str
    label: str
    calls: int = 0
    deleted: int = 0
    # The extension's NOTICE that another of its own statements held the
    # sessions deleter lock, so this one deleted nothing: its guard at work.
    # AuthFort's job never takes that lock.
    gave_way: int = 0
    # (start, end) of every call, on the event loop's clock.
    spans: list[tuple[float, float]] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)
    # The run log's notes of the procedure's runs (a retried batch says so there).
    notes: Counter = field(default_factory=Counter)
    # Backend pids, for the monitor; AuthFort's pool is matched by its statement.
    pids: set[int] = field(default_factory=set)

    def on_message(self, _connection, message) -> None:
        if "another statement is deleting" in message.message or "another cleanup run" in message.message:
            self.gave_way += 1

    def errors_by_sqlstate(self) -> Counter:
        return Counter(sqlstate(error) for error in self.errors)


async def loop_calls(side: Side, call, until: float, rng: random.Random) -> None:
    """Calls `call` until `until`, counting what it deletes and every error,
    with a short random pause so the sides' statements interleave."""
    loop = asyncio.get_running_loop()
    while loop.time() < until:
        started = loop.time()
        try:
            side.deleted += await call()
        except Exception as error:
            side.errors.append(error)
        side.spans.append((started, loop.time()))
        side.calls += 1
        await asyncio.sleep(rng.uniform(0, CLEANUP_PAUSE))


def authfort_url() -> str:
    return f"postgresql+asyncpg://postgres@127.0.0.1:{PORT}/{DATABASE}"


async def authfort_loop(side: Side, until: float, rng: random.Random) -> None:
    """AuthFort's real method, on its own engine and pool, as a cron job runs it."""
    auth = AuthFort(database_url=authfort_url())
    try:
        await loop_calls(side, auth.cleanup_expired_sessions, until, rng)
    finally:
        await auth.dispose()


async def extension_connection(side: Side) -> asyncpg.Connection:
    connection = await asyncpg.connect(database=DATABASE, user="postgres")
    connection.add_log_listener(side.on_message)
    side.pids.add(connection.get_server_pid())
    return connection


async def run_procedure(connection: asyncpg.Connection, side: Side) -> int:
    """The procedure COMMITs per batch, so it needs autocommit, which asyncpg
    is outside a transaction block. It is the only caller here that logs
    runs, so the newest log row is its own; a failed run raises instead."""
    await connection.execute(f"CALL authfort_cleanup_run(batch_size => {BATCH_SIZE})")
    row = await connection.fetchrow("SELECT sessions, notes FROM authfort_cleanup_runs ORDER BY id DESC LIMIT 1")
    if row["notes"]:
        side.notes[row["notes"]] += 1
    return row["sessions"]


async def procedure_loop(side: Side, until: float, rng: random.Random) -> None:
    connection = await extension_connection(side)
    try:
        await loop_calls(side, lambda: run_procedure(connection, side), until, rng)
    finally:
        await connection.close()


async def function_loop(side: Side, until: float, rng: random.Random) -> None:
    connection = await extension_connection(side)
    try:
        await loop_calls(side, lambda: connection.fetchval("SELECT authfort_cleanup_sessions()"), until, rng)
    finally:
        await connection.close()


async def cleanup_sessions_apart(auth: AuthFort, engine: AsyncEngine) -> int | None:
    """The recipe in doc/migration-from-python.md: AuthFort's job holds the
    advisory lock the extension's runs take (CALL authfort_cleanup_run() and
    authfort_cleanup_all(), so also a pg_cron job), or does not run: None
    when a run of the extension's is in progress. A run that starts while
    the job holds it returns at once, logged as skipped; one already going
    stops before its next batch. On an autocommit connection, so that no
    transaction stays open while the job runs."""
    async with engine.execution_options(isolation_level="AUTOCOMMIT").connect() as conn:
        if not (await conn.execute(text("SELECT pg_try_advisory_lock(authfort_cleanup_lock_key())"))).scalar_one():
            return None
        try:
            return await auth.cleanup_expired_sessions()
        finally:
            await conn.execute(text("SELECT pg_advisory_unlock(authfort_cleanup_lock_key())"))


async def authfort_apart_loop(side: Side, until: float, rng: random.Random) -> None:
    auth = AuthFort(database_url=authfort_url())
    engine = create_async_engine(authfort_url())

    async def call() -> int:
        deleted = await cleanup_sessions_apart(auth, engine)
        side.gave_way += deleted is None
        return deleted or 0

    try:
        await loop_calls(side, call, until, rng)
    finally:
        await engine.dispose()
        await auth.dispose()


SIDE_LOOPS = {
    "authfort": ("AuthFort cleanup_expired_sessions()", authfort_loop),
    "procedure": (f"CALL authfort_cleanup_run(batch_size => {BATCH_SIZE})", procedure_loop),
    "function": ("SELECT authfort_cleanup_sessions()", function_loop),
}


# ---------------------------------------------------------------- the overlap


@dataclass
class Monitor:
    """Samples pg_stat_activity: how often AuthFort's DELETE and one of the
    extension's statements were running at the same instant, and how often
    one of them was waiting on a lock the other held. These are what make
    the loops a test of the overlap, not only of each side alone."""

    connection: asyncpg.Connection
    sides: dict[str, Side]
    samples: int = 0
    together: Counter = field(default_factory=Counter)  # extension side -> samples
    blocked: Counter = field(default_factory=Counter)   # (waiter, holder) -> samples

    async def sample(self) -> None:
        rows = await self.connection.fetch(
            """SELECT pid, query LIKE $1 AS authfort, pg_blocking_pids(pid) AS holders
                 FROM pg_stat_activity
                WHERE datname = current_database() AND state = 'active' AND pid <> pg_backend_pid()""",
            AUTHFORT_STATEMENT)
        who = {}
        for row in rows:
            if row["authfort"]:
                who[row["pid"]] = "authfort"
            for name, side in self.sides.items():
                if row["pid"] in side.pids:
                    who[row["pid"]] = name
        active = set(who.values())
        for name in ("procedure", "function"):
            if {"authfort", name} <= active:
                self.together[name] += 1
        for row in rows:
            waiter = who.get(row["pid"])
            for holder in {who.get(pid) for pid in row["holders"]} - {None, waiter}:
                if waiter:
                    self.blocked[(waiter, holder)] += 1
        self.samples += 1

    async def run(self, until: float) -> None:
        loop = asyncio.get_running_loop()
        while loop.time() < until:
            await self.sample()
            await asyncio.sleep(MONITOR_PAUSE)


def calls_during(side: Side, other: Side) -> int:
    """How many of `side`'s calls were in flight while one of `other`'s was."""
    return sum(any(start < other_end and other_start < end for other_start, other_end in other.spans)
               for start, end in side.spans)


# ---------------------------------------------------------------- the staged crossing


STAGED_IDS = {name: uuid.UUID(f"eeeeeeee-0000-0000-0000-00000000000{n}") for n, name in enumerate("YWX", 1)}


async def waits_on(watcher: asyncpg.Connection, pids: set[int], holders: set[int]) -> bool:
    """Some backend of `pids` waits on a lock some backend of `holders` holds."""
    return await watcher.fetchval(
        "SELECT EXISTS (SELECT FROM unnest($1::int[]) AS w(pid) WHERE pg_blocking_pids(w.pid) && $2::int[])",
        list(pids), list(holders))


async def authfort_pids(watcher: asyncpg.Connection) -> set[int]:
    return {row["pid"] for row in await watcher.fetch(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND state = 'active' AND query LIKE $1",
        AUTHFORT_STATEMENT)}


async def until_true(probe, timeout: float = 10.0) -> bool:
    """Polls `probe` until it holds; False if it never did (a staging that
    did not happen is a failed check, not a hang)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await probe():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def stage_crossing(admin: asyncpg.Connection, statement: str) -> tuple[str | None, object, object]:
    """The crossing the loops meet only now and then, made certain.

    Three deletable sessions, in heap order Y, W, X, with Y.replaced_by = X.
    An application transaction holds W. AuthFort's job starts: its DELETE
    takes Y and waits for W. The extension's `statement` starts: it skips Y
    and W (held), takes X, and its ON DELETE SET NULL trigger must clear Y's
    link to X, so it waits for AuthFort, which holds Y. The application lets
    W go: AuthFort takes W and reaches X, held by the extension. Each now
    waits for the other, and PostgreSQL's deadlock detector ends one of them
    (the one that has waited deadlock_timeout first: the extension's).

    Returns what did not happen as staged (None when all did), then the
    outcome of AuthFort's call and of the extension's: a result or an error.
    """
    application = await asyncpg.connect(database=DATABASE, user="postgres")
    extension = await asyncpg.connect(database=DATABASE, user="postgres")
    auth = AuthFort(database_url=authfort_url())
    tasks = []
    try:
        async with application.transaction():
            await application.execute("SELECT FROM authfort_refresh_tokens WHERE id = $1 FOR UPDATE",
                                      STAGED_IDS["W"])
            tasks.append(asyncio.create_task(auth.cleanup_expired_sessions()))
            authfort = set()

            async def authfort_waits_for_application() -> bool:
                authfort.update(await authfort_pids(admin))
                return bool(authfort) and await waits_on(admin, authfort, {application.get_server_pid()})

            if not await until_true(authfort_waits_for_application):
                return "AuthFort's DELETE did not wait for the application's row", None, None
            tasks.append(asyncio.create_task(extension.execute(statement)))

            # The extension's first, plain DELETE gives up on Y within 1 ms;
            # only a wait seen twice, 100 ms apart, is its trigger's wait.
            async def extension_waits_for_authfort() -> bool:
                if tasks[1].done() or not await waits_on(admin, {extension.get_server_pid()}, authfort):
                    return False
                await asyncio.sleep(0.1)
                return await waits_on(admin, {extension.get_server_pid()}, authfort)

            if not await until_true(extension_waits_for_authfort):
                return "the extension's call did not wait for AuthFort's", None, None
        # The application's transaction has ended: W is free.
        authfort_outcome, extension_outcome = await asyncio.gather(*tasks, return_exceptions=True)
        return None, authfort_outcome, extension_outcome
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await auth.dispose()
        await application.close()
        await extension.close()


def describe(outcome: object) -> str:
    if isinstance(outcome, BaseException):
        return (f"{sqlstate(outcome)}: {str(outcome).splitlines()[0]}"
                f" (HINT: {getattr(database_error(outcome), 'hint', None)})")
    return f"ok, {outcome}"


async def staged_crossing(admin: asyncpg.Connection, user: uuid.UUID, form: str, results: Results) -> None:
    """stage_crossing() against the one-shot function or the procedure, and
    what each must do when it loses: the function may fail, saying to retry;
    the procedure retries the batch itself and notes it in the run log."""
    label = f"staged crossing, {form}"
    await admin.execute("DELETE FROM authfort_refresh_tokens")
    await admin.execute(
        """INSERT INTO authfort_refresh_tokens (id, user_id, token_hash, session_id, expires_at, created_at, revoked,
                                                replaced_by)
           SELECT id, $2, md5(id::text), id, now() + interval '1 day', now(), true, replaced_by
             FROM unnest($1::uuid[], $3::uuid[]) WITH ORDINALITY AS r(id, replaced_by, n) ORDER BY n""",
        [STAGED_IDS[name] for name in "YWX"], user, [STAGED_IDS["X"], None, None])
    runs_before = await admin.fetchval("SELECT coalesce(max(id), 0) FROM authfort_cleanup_runs")
    statement = ("SELECT authfort_cleanup_sessions()" if form == "function"
                 else f"CALL authfort_cleanup_run(batch_size => {BATCH_SIZE})")
    broken, authfort_outcome, extension_outcome = await stage_crossing(admin, statement)
    results.check(f"{label}: staged (AuthFort waits for the application, the extension for AuthFort)",
                  broken is None, broken or "in place")
    if broken:
        return
    print(f"  # {label}: AuthFort -> {describe(authfort_outcome)}; extension -> {describe(extension_outcome)}")
    left = await admin.fetchval("SELECT count(*) FROM authfort_refresh_tokens WHERE id = ANY($1)",
                                list(STAGED_IDS.values()))
    results.check(f"{label}: the three sessions are gone", left == 0, f"{left} of 3 left")
    if form == "function":
        # A one-shot call is the caller's statement: it may lose a deadlock,
        # as any statement may, but must then say to run it again.
        results.check(f"{label}: the function succeeds, or loses the deadlock with a HINT to retry",
                      not isinstance(extension_outcome, BaseException) or says_retry(extension_outcome),
                      describe(extension_outcome))
        return
    run = await admin.fetchrow("SELECT status, error, notes FROM authfort_cleanup_runs WHERE id > $1"
                               " ORDER BY id DESC LIMIT 1", runs_before)
    results.check(f"{label}: the CALL succeeds (a batch that lost a deadlock is retried)",
                  not isinstance(extension_outcome, BaseException), describe(extension_outcome))
    results.check(f"{label}: the run is logged ok, its notes counting the retry",
                  run is not None and run["status"] == "ok"
                  and re.search(r"\b1\b.*retr", run["notes"] or "") is not None,
                  f"run log: {dict(run) if run else None}")


# ---------------------------------------------------------------- the end


async def final_check(admin: asyncpg.Connection, writer: Writer) -> dict:
    """All in one transaction, so now() is one instant for the "still live"
    cut-off, the final cleanup and the count of what it left. A live token
    counts only if it expires after that instant: one that was live when
    written may legitimately have expired and been cleaned since."""
    async with admin.transaction():
        at = await admin.fetchval("SELECT now()")
        must_survive = [token_id for token_id, live in writer.live.items() if live.expires_at > at]

        async def missing() -> list[uuid.UUID]:
            present = {row["id"] for row in await admin.fetch(
                "SELECT id FROM authfort_refresh_tokens WHERE id = ANY($1)", must_survive)}
            return [token_id for token_id in must_survive if token_id not in present]

        lost = await missing()
        final_deleted = await admin.fetchval("SELECT authfort_cleanup_sessions()")
        left = await admin.fetchval(DELETABLE)
        lost_to_final = len(await missing()) - len(lost)
    return {"must_survive": len(must_survive), "lost": lost, "final_deleted": final_deleted, "left": left,
            "lost_to_final": lost_to_final}


def errors_text(errors: Counter) -> str:
    return ", ".join(f"{code} x{count}" for code, count in sorted(errors.items())) or "none"


def print_sides(title: str, sides: list[Side], monitor: Monitor) -> None:
    print(f"  # {title}")
    for side in sides:
        print(f"  #   {side.label}: {side.calls} calls, {side.deleted} rows deleted, gave way {side.gave_way} times;"
              f" errors: {errors_text(side.errors_by_sqlstate())}")
        for code, message in sorted({sqlstate(e): str(e).splitlines()[0] for e in reversed(side.errors)}.items()):
            print(f"  #     first {code}: {message}")
        for notes, count in side.notes.items():
            print(f"  #     run-log notes x{count}: {notes}")
    by_name = {side.name: side for side in sides}
    for name in ("procedure", "function"):
        if "authfort" in by_name and name in by_name:
            print(f"  #   overlap with the {name}: {calls_during(by_name['authfort'], by_name[name])} of AuthFort's"
                  f" calls ran while one of its calls did, {calls_during(by_name[name], by_name['authfort'])} of"
                  f" its calls while AuthFort's did; {monitor.together[name]} of {monitor.samples} samples"
                  f" caught both statements running; waits seen: AuthFort on it"
                  f" {monitor.blocked[('authfort', name)]}, it on AuthFort {monitor.blocked[(name, 'authfort')]}")


async def run_loops(sides: list[Side], loops: dict, seconds: float, rng: random.Random) -> Monitor:
    """Each side's loop and a monitor, for `seconds`."""
    monitor = Monitor(await asyncpg.connect(database=DATABASE, user="postgres"), {s.name: s for s in sides})
    until = asyncio.get_running_loop().time() + seconds
    try:
        await asyncio.gather(monitor.run(until), *(
            loops[side.name](side, until, random.Random(rng.random())) for side in sides))
    finally:
        await monitor.connection.close()
    return monitor


def check_overlapping(results: Results, sides: list[Side], monitor: Monitor) -> None:
    """Phase 1: the sides ran, really overlapped, and the extension's side
    raised nothing but what it may."""
    for side in sides:
        results.check(f"{side.name}: called and deleted rows", side.calls >= 3 and side.deleted > 0,
                      f"{side.calls} calls, {side.deleted} rows")
    by_name = {side.name: side for side in sides}
    for name in ("procedure", "function"):
        if "authfort" in by_name and name in by_name:
            results.check(f"AuthFort's DELETE and the {name} ran at the same instant", monitor.together[name] > 0,
                          f"{monitor.together[name]} of {monitor.samples} samples")
    if "procedure" in by_name:
        results.check("procedure: no error", not by_name["procedure"].errors,
                      errors_text(by_name["procedure"].errors_by_sqlstate()))
    if "function" in by_name:
        function = by_name["function"]
        unexplained = [error for error in function.errors if not says_retry(error)]
        results.check("function: no error but a deadlock whose HINT says to retry", not unexplained,
                      f"{errors_text(function.errors_by_sqlstate())}; without a retry HINT: {len(unexplained)}")


def check_apart(results: Results, authfort: Side, procedure: Side, monitor: Monitor) -> None:
    """Phase 2, the recipe: both still clean, they met at the lock, and
    their deletes never met: no lock wait either way, no error."""
    ran = authfort.calls - authfort.gave_way
    results.check("recipe: AuthFort's job, holding the runs' lock, ran and deleted rows",
                  ran >= 3 and authfort.deleted > 0, f"{ran} runs, {authfort.deleted} rows")
    results.check("recipe: the procedure ran and deleted rows", procedure.calls >= 3 and procedure.deleted > 0,
                  f"{procedure.calls} calls, {procedure.deleted} rows")
    stopped = sum(count for notes, count in procedure.notes.items() if "another run took over" in notes)
    met = authfort.gave_way + procedure.gave_way + stopped
    results.check("recipe: the two met at the lock", met > 0,
                  f"AuthFort's job gave way {authfort.gave_way} times; the procedure skipped {procedure.gave_way}"
                  f" runs and stopped {stopped} between batches")
    waits = (monitor.blocked[("authfort", "procedure")], monitor.blocked[("procedure", "authfort")])
    results.check("recipe: no lock wait between AuthFort's DELETE and the procedure", waits == (0, 0),
                  f"AuthFort waited on it in {waits[0]}, it on AuthFort in {waits[1]} of {monitor.samples} samples")
    errors = authfort.errors_by_sqlstate() + procedure.errors_by_sqlstate()
    results.check("recipe: no error on either side", not errors, errors_text(errors))


async def main() -> int:
    unknown = [side for side in SIDES if side not in SIDE_LOOPS]
    if unknown:
        print(f"unknown SIDES {unknown}; choose among {', '.join(ALL_SIDES)}")
        return 2
    rng = random.Random(int(os.environ.get("SIDE_BY_SIDE_SEED", "0")) or None)
    admin = await asyncpg.connect(database=DATABASE, user="postgres")
    version = await admin.fetchval("SHOW server_version")
    writer = Writer(await asyncpg.connect(database=DATABASE, user="postgres"), random.Random(rng.random()),
                    [uuid.uuid4() for _ in range(USERS)])
    await writer.seed()
    stop_writing = asyncio.Event()
    writing = asyncio.create_task(writer.run(stop_writing))

    # Phase 1: the sides as a switch-over leaves them, overlapping at will.
    sides = [Side(name, SIDE_LOOPS[name][0]) for name in SIDES]
    overlapping = await run_loops(sides, {name: loop for name, (_, loop) in SIDE_LOOPS.items()}, DURATION, rng)
    # Phase 2: the recipe, AuthFort's job kept apart from the procedure's runs.
    apart = [Side("authfort", "AuthFort cleanup_expired_sessions() holding the runs' lock"),
             Side("procedure", SIDE_LOOPS["procedure"][0])]
    apart_monitor = await run_loops(apart, {"authfort": authfort_apart_loop, "procedure": procedure_loop},
                                    RECIPE_DURATION, rng)
    stop_writing.set()
    await writing
    await writer.connection.close()
    end = await final_check(admin, writer)

    stats = writer.stats
    print(f"  # PostgreSQL {version}; the writer: {stats['rounds committed']} rounds committed"
          f" ({stats['bursts']} with a burst), {stats['rows seeded']} rows seeded, {stats['rows inserted']} inserted"
          f" and {stats['rows revoked']} revoked, {stats['crossing links']} crossing links,"
          f" {stats['live tokens linked to a revoked one']} live tokens linked to a revoked one;"
          f" errors: {errors_text(writer.errors)}")
    for code, message in sorted(writer.first_error.items()):
        print(f"  #   first {code} on the writer: {message}")
    print_sides(f"overlapping, {DURATION:g} s", sides, overlapping)
    print_sides(f"apart (the recipe), {RECIPE_DURATION:g} s", apart, apart_monitor)

    results = Results()
    results.check("the writer kept the table rotation-heavy",
                  stats["rounds committed"] >= 10 and stats["crossing links"] > 0 and stats["bursts"] >= 2,
                  f"{stats['rounds committed']} rounds, {stats['bursts']} bursts, {stats['crossing links']} crossing links")
    check_overlapping(results, sides, overlapping)
    check_apart(results, *apart, apart_monitor)
    lost = len(end["lost"]) + len(writer.vanished)
    results.check("no session AuthFort's rule keeps was lost", lost == 0,
                  f"{lost} of {end['must_survive']} still-live sessions missing"
                  f" ({len(writer.vanished)} seen gone by the writer mid-run)"
                  + (f", e.g. {(end['lost'] + writer.vanished)[:3]}" if lost else ""))
    results.check("the final cleanup lost none either", end["lost_to_final"] == 0, f"{end['lost_to_final']} lost")
    results.check("nothing deletable left after one final cleanup", end["left"] == 0,
                  f"{end['left']} left (the final authfort_cleanup_sessions() deleted {end['final_deleted']})")

    if set(ALL_SIDES) <= set(SIDES):
        for form in ("function", "procedure"):
            await staged_crossing(admin, writer.users[0], form, results)
    await admin.close()
    return results.summary()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
