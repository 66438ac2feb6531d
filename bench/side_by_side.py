"""AuthFort's own session cleanup and the extension's, running at the same time.

doc/migration-from-python.md says not to run AuthFort's Python job and the
extension at the same moment: the extension serialises its own deleters with
an advisory lock, but `await auth.cleanup_expired_sessions()` (one
`DELETE FROM authfort_refresh_tokens WHERE revoked OR expires_at < now()`,
through SQLAlchemy) never takes it, and two statements deleting sessions at
once can deadlock inside PostgreSQL's ON DELETE SET NULL trigger on
replaced_by. This measures what actually happens when they do overlap:

  * how often each side fails, by SQLSTATE (40P01, deadlock, above all);
  * whether any row AuthFort's rule keeps (not revoked, not yet expired) is
    lost;
  * whether one more authfort_cleanup_sessions() afterwards leaves nothing
    AuthFort's rule would delete.

For DURATION seconds a writer keeps the sessions table rotation-heavy: many
users refresh (the old token revoked, its replaced_by pointing at the new
one), sign in, log out, and leave abandoned chains that are expired already.
Some links cross chains, and every round's rows go into the heap in shuffled
order, so the deleters meet the two ends of a link in different orders.
Meanwhile, each on its own connection and looping with short pauses:

  authfort   AuthFort 0.0.31's real cleanup_expired_sessions()
  procedure  CALL authfort_cleanup_run(batch_size => 200)   (autocommit)
  function   SELECT authfort_cleanup_sessions()

SIDES (environment, comma-separated, default all three) picks which loops
run, to tell which pairing deadlocks; the writer always runs. DURATION and
CLEANUP_PAUSE (environment) override the run's length and the cleanups'
pause. Errors are counted, never raised: this is a measurement, not a test,
and it exits 0. The summary gives, per side, its calls, the rows it deleted,
how often it gave way to the extension's deleter lock, its time in calls and
slowest call, and its errors by SQLSTATE; then the live rows lost and the
deletable rows left after a final authfort_cleanup_sessions().

Expects PGHOST and PGPORT, and a database (the first argument, `app` by
default) with AuthFort's schema from AuthFort's migrations, the extension,
and `SELECT authfort_cleanup_create_indexes()` applied.
"""

import asyncio
import os
import random
import secrets
import sys
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import asyncpg
from authfort import AuthFort

DURATION = float(os.environ.get("DURATION", "20"))  # seconds; the machine has 2 busy cores
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
# interleave, no busy loop. A longer CLEANUP_PAUSE (environment) lets each
# call find a bigger backlog, so the statements that overlap are longer.
WRITER_PAUSE = 0.01
CLEANUP_PAUSE = float(os.environ.get("CLEANUP_PAUSE", "0.05"))

DELETABLE = "SELECT count(*) FROM authfort_refresh_tokens WHERE revoked OR expires_at < now()"


def now() -> datetime:
    return datetime.now(UTC)


def token_hash() -> str:
    """What AuthFort stores: a SHA-256 hex digest (of a token nobody holds)."""
    return secrets.token_hex(32)


def sqlstate(error: BaseException) -> str:
    """The SQLSTATE of a database error, wherever the driver put it.

    asyncpg's exceptions carry .sqlstate. SQLAlchemy wraps them twice: its
    DBAPIError's .orig is the asyncpg adapter's error (also with .sqlstate),
    whose __cause__ is asyncpg's own exception.
    """
    pending, seen = [error], set()
    while pending:
        current = pending.pop(0)
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        code = getattr(current, "sqlstate", None) or getattr(current, "pgcode", None)
        if isinstance(code, str) and code:
            return code
        pending += [getattr(current, "orig", None), current.__cause__, current.__context__]
    return f"none ({type(error).__name__})"


# ---------------------------------------------------------------- the writer


@dataclass
class Live:
    """A token the writer issued and has not revoked: AuthFort's rule keeps
    it until expires_at."""

    user_id: uuid.UUID
    session_id: uuid.UUID
    expires_at: datetime


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
            later = tokens[position + 1:]
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

    async def round(self) -> None:
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
        rows += self.abandoned(ABANDONED_CHAINS, at)
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
        self.stats["rows inserted"] += len(rows)
        self.stats["rows revoked"] += len(revokes)
        self.stats["deletable when written"] += len(rows) - len(issued) + len(revokes)

    async def run(self, until: float) -> None:
        loop = asyncio.get_running_loop()
        while loop.time() < until:
            try:
                await self.round()
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
            except Exception as error:  # the writer's errors are measured too
                code = sqlstate(error)
                self.errors[code] += 1
                self.first_error.setdefault(code, f"{type(error).__name__}: {error}")
            await asyncio.sleep(self.rng.uniform(0, WRITER_PAUSE))


class Vanished(Exception):
    def __init__(self, ids: set[uuid.UUID]) -> None:
        super().__init__(f"{len(ids)} live tokens vanished")
        self.ids = ids


# ---------------------------------------------------------------- the cleanups


@dataclass
class Side:
    """One cleanup loop: what it called, what it deleted, how it failed."""

    name: str
    label: str
    calls: int = 0
    deleted: int = 0
    # The extension's NOTICE that another of its statements held the
    # sessions deleter lock, so this one deleted nothing: the guard at work.
    gave_way: int = 0
    # Seconds spent in calls, and the slowest: a call that waited on another
    # side's row locks shows up here even when it did not fail.
    busy: float = 0.0
    slowest: float = 0.0
    errors: Counter = field(default_factory=Counter)
    first_error: dict[str, str] = field(default_factory=dict)

    def on_message(self, _connection, message) -> None:
        if "another statement is deleting" in message.message or "another cleanup run" in message.message:
            self.gave_way += 1

    def failed(self, error: Exception) -> None:
        code = sqlstate(error)
        self.errors[code] += 1
        self.first_error.setdefault(code, f"{type(error).__name__}: {error}".splitlines()[0])


async def loop_calls(side: Side, call, until: float, rng: random.Random) -> None:
    """Calls `call` until `until`, counting what it deletes and every error,
    with a short random pause so the sides' statements interleave."""
    loop = asyncio.get_running_loop()
    while loop.time() < until:
        started = loop.time()
        try:
            side.deleted += await call()
        except Exception as error:
            side.failed(error)
        elapsed = loop.time() - started
        side.busy += elapsed
        side.slowest = max(side.slowest, elapsed)
        side.calls += 1
        await asyncio.sleep(rng.uniform(0, CLEANUP_PAUSE))


async def authfort_loop(side: Side, until: float, rng: random.Random) -> None:
    """AuthFort's real method, on its own engine and pool, as a cron job runs it."""
    auth = AuthFort(database_url=f"postgresql+asyncpg://postgres@127.0.0.1:{PORT}/{DATABASE}")
    try:
        await loop_calls(side, auth.cleanup_expired_sessions, until, rng)
    finally:
        await auth.dispose()


async def procedure_loop(side: Side, until: float, rng: random.Random) -> None:
    # The procedure COMMITs per batch, so it needs autocommit, which asyncpg
    # is outside a transaction block. It is the only caller here that logs
    # runs, so the newest log row is its own; a failed run raises instead.
    connection = await asyncpg.connect(database=DATABASE, user="postgres")
    connection.add_log_listener(side.on_message)

    async def call() -> int:
        await connection.execute(f"CALL authfort_cleanup_run(batch_size => {BATCH_SIZE})")
        return await connection.fetchval("SELECT sessions FROM authfort_cleanup_runs ORDER BY id DESC LIMIT 1")

    try:
        await loop_calls(side, call, until, rng)
    finally:
        await connection.close()


async def function_loop(side: Side, until: float, rng: random.Random) -> None:
    connection = await asyncpg.connect(database=DATABASE, user="postgres")
    connection.add_log_listener(side.on_message)
    try:
        await loop_calls(side, lambda: connection.fetchval("SELECT authfort_cleanup_sessions()"), until, rng)
    finally:
        await connection.close()


SIDE_LOOPS = {
    "authfort": ("AuthFort cleanup_expired_sessions()", authfort_loop),
    "procedure": (f"CALL authfort_cleanup_run(batch_size => {BATCH_SIZE})", procedure_loop),
    "function": ("SELECT authfort_cleanup_sessions()", function_loop),
}


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


def print_summary(writer: Writer, sides: list[Side], end: dict | None, end_error: str | None, version: str) -> None:
    print(f"== side_by_side: {DURATION:.0f} s on PostgreSQL {version}; sides: {', '.join(SIDES) or 'none'}"
          f" (and the writer); cleanup pause up to {CLEANUP_PAUSE:g} s")
    stats = writer.stats
    print(f"writer: {stats['rounds committed']} rounds committed, {stats['rows seeded']} rows seeded,"
          f" {stats['rows inserted']} inserted and {stats['rows revoked']} revoked during the run"
          f" ({stats['deletable when written']} deletable when written), {stats['crossing links']} crossing links,"
          f" {stats['live tokens linked to a revoked one']} live tokens linked to a revoked one;"
          f" errors: {errors_text(writer.errors)}")
    width = max(len(side.label) for side in sides) if sides else 10
    print(f"  {'side':<{width}}  {'calls':>6}  {'deleted':>8}  {'gave way':>8}  {'busy s':>6}  {'slowest s':>9}"
          "  errors by SQLSTATE")
    for side in sides:
        print(f"  {side.label:<{width}}  {side.calls:>6}  {side.deleted:>8}  {side.gave_way:>8}  {side.busy:>6.1f}"
              f"  {side.slowest:>9.3f}  {errors_text(side.errors)}")
    print("  (gave way: NOTICEs that another of the extension's statements held its sessions deleter lock, so this"
          " one deleted nothing; AuthFort's job never takes that lock)")
    deadlocks = {side.name: side.errors["40P01"] for side in sides} | {"writer": writer.errors["40P01"]}
    print(f"deadlocks (40P01): {sum(deadlocks.values())} in all ("
          + ", ".join(f"{name} {count}" for name, count in deadlocks.items()) + ")")
    if end is None:
        print(f"final check FAILED to run: {end_error}")
    else:
        print(f"live rows lost: {len(end['lost']) + len(writer.vanished)} of {end['must_survive']} still unexpired"
              f" at the end ({len(end['lost'])} missing at the end, {len(writer.vanished)} seen gone by the writer"
              f" mid-run; the final cleanup took {end['lost_to_final']} more)")
        print(f"deletable rows left after the final SELECT authfort_cleanup_sessions(): {end['left']}"
              f" (that call deleted {end['final_deleted']})")
        for token_id in (end["lost"] + writer.vanished)[:5]:
            print(f"  lost: {token_id}")
    for name, first_error in [("writer", writer.first_error)] + [(side.name, side.first_error) for side in sides]:
        for code, message in sorted(first_error.items()):
            print(f"  first {code} on {name}: {message}")


async def main() -> int:
    unknown = [side for side in SIDES if side not in SIDE_LOOPS]
    if unknown:
        print(f"unknown SIDES {unknown}; choose among {', '.join(ALL_SIDES)}")
        return 0
    rng = random.Random(int(os.environ.get("SIDE_BY_SIDE_SEED", "0")) or None)
    admin = await asyncpg.connect(database=DATABASE, user="postgres")
    version = await admin.fetchval("SHOW server_version")
    writer = Writer(await asyncpg.connect(database=DATABASE, user="postgres"), random.Random(rng.random()),
                    [uuid.uuid4() for _ in range(USERS)])
    await writer.seed()

    sides = [Side(name, SIDE_LOOPS[name][0]) for name in SIDES]
    until = asyncio.get_running_loop().time() + DURATION
    await asyncio.gather(writer.run(until), *(
        SIDE_LOOPS[side.name][1](side, until, random.Random(rng.random())) for side in sides))
    await writer.connection.close()

    end, end_error = None, None
    try:
        end = await final_check(admin, writer)
    except Exception as error:
        end_error = f"{sqlstate(error)} {type(error).__name__}: {error}"
    await admin.close()
    print_summary(writer, sides, end, end_error, version)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
