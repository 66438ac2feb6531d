"""Live traffic: AuthFort-shaped clients and the cleanup running side by side.

Eight client tasks, each on its own connection and its own slice of users, do
what AuthFort 0.0.31 does to its tables: sign-ins, refresh-token rotations,
logouts, password-reset requests and uses, and (one client) signing-key
rotation. A separate connection meanwhile loops over every way of running
the cleanup. The point is what no single-session test can show:

  * cleanup never deletes a row AuthFort still needs, even while it is being
    locked, rotated or revoked under it;
  * neither side ever errors: no deadlock (40P01), no lock timeout (55P03),
    no foreign-key or serialisation failure, on the clients or the cleanup;
  * once the traffic stops, one more cleanup leaves nothing AuthFort's rules
    would delete.

Each client knows which rows it created and has not revoked or used, and
when each expires. Expiry is recorded rather than "live" because a row that
was live when recorded may legitimately expire (and be cleaned) before the
end: only rows whose expiry is still in the future at verification must exist.

Expects PGHOST and PGPORT (tests/suites/traffic.sh exports them) and a
database (the first argument, `app` by default) with AuthFort's schema, the
extension, and the indexes authfort_cleanup_create_indexes() makes: the one
on replaced_by, and in a second run the time indexes, so that the cleanup
reads through them. Prints one line per check and
`N passed, N failed` last; exits 1 on any failure.
"""

import asyncio
import hashlib
import os
import random
import secrets
import sys
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import asyncpg

from results import Results

DURATION = 25.0  # seconds of traffic
CLIENTS = 8
USERS_PER_CLIENT = 40
DATABASE = sys.argv[1] if len(sys.argv) > 1 else "app"
CLEANUP_BATCH_SIZE = 200
# Clients sleep up to this long between operations, the cleanup loop between
# calls: enough to let the two interleave without a busy loop on 2 cores.
CLIENT_PAUSE = 0.01
CLEANUP_PAUSE = 0.05

# How long things AuthFort issues stay valid. SHORT rows expire during the
# run, so the cleanup keeps finding fresh work; LONG ones outlive it.
SHORT = (timedelta(seconds=1), timedelta(seconds=2))
LONG = (timedelta(minutes=5), timedelta(days=30))


def now() -> datetime:
    return datetime.now(UTC)


def lifetime(rng: random.Random, short_share: float) -> timedelta:
    low, high = SHORT if rng.random() < short_share else LONG
    return low + (high - low) * rng.random()


def new_hash() -> str:
    """Like AuthFort: only the SHA-256 of a random opaque token is stored."""
    return hashlib.sha256(secrets.token_urlsafe(64).encode()).hexdigest()


class Violation(Exception):
    """Something the cleanup must never cause, seen by a client mid-run."""


@dataclass
class Session:
    token_hash: str
    user_id: uuid.UUID
    session_id: uuid.UUID
    expires_at: datetime


@dataclass
class Token:
    id: uuid.UUID
    token_hash: str
    expires_at: datetime


@dataclass
class Client:
    """One client: its connection, its users, and the rows it still needs."""

    number: int
    users: list[uuid.UUID]
    rotates_keys: bool
    rng: random.Random
    connection: asyncpg.Connection | None = None
    # Refresh tokens this client issued and has not revoked, by id.
    sessions: dict[uuid.UUID, Session] = field(default_factory=dict)
    # The outstanding password-reset token per user, unused.
    tokens: dict[uuid.UUID, Token] = field(default_factory=dict)
    # Signing keys: id -> expires_at (None for the current key).
    keys: dict[uuid.UUID, datetime | None] = field(default_factory=dict)
    stats: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)

    # ------------------------------------------------------------ operations

    async def current_key(self) -> asyncpg.Record:
        """_issue_tokens signs with the current key; exactly one must exist."""
        keys = await self.connection.fetch("SELECT id, kid FROM authfort_signing_keys WHERE is_current")
        if len(keys) != 1:
            raise Violation(f"{len(keys)} current signing keys")
        return keys[0]

    async def issue(
        self, user_id: uuid.UUID, session_id: uuid.UUID | None, expires_at: datetime,
    ) -> tuple[uuid.UUID, Session]:
        """AuthFort's create_refresh_token: a new id, session_id defaulting to it."""
        token_id = uuid.uuid4()
        token_hash = new_hash()
        session_id = session_id or token_id
        await self.connection.execute(
            """INSERT INTO authfort_refresh_tokens
                   (id, user_id, token_hash, session_id, expires_at, created_at, revoked, user_agent, ip_address)
               VALUES ($1, $2, $3, $4, $5, now(), false, 'traffic.py', '127.0.0.1')""",
            token_id, user_id, token_hash, session_id, expires_at)
        return token_id, Session(token_hash, user_id, session_id, expires_at)

    def gone(self, what: str, expires_at: datetime) -> None:
        """A row this client needs is not there: fine once it has expired
        (the cleanup may take it), a violation before."""
        if expires_at >= now():
            raise Violation(f"{what} expiring {expires_at.isoformat()} disappeared before it expired")
        self.stats[f"{what} expired and cleaned"] += 1

    async def sign_in(self) -> None:
        user_id = self.rng.choice(self.users)
        async with self.connection.transaction():
            await self.current_key()
            token_id, session = await self.issue(user_id, None, now() + lifetime(self.rng, 0.3))
        self.sessions[token_id] = session
        self.stats["sign-ins"] += 1

    async def refresh(self) -> None:
        """AuthFort's refresh(): look the presented token up, issue the new
        one, then revoke the old one pointing replaced_by at the new. The
        lookup locks the row (FOR UPDATE), as a careful deployment would, so
        a cleanup run is certainly holding or waiting on it at times."""
        if not self.sessions:
            return await self.sign_in()
        old_id = self.rng.choice(list(self.sessions))
        old = self.sessions[old_id]
        async with self.connection.transaction():
            row = await self.connection.fetchrow(
                "SELECT id, user_id, session_id, revoked, expires_at FROM authfort_refresh_tokens"
                " WHERE token_hash = $1 FOR UPDATE", old.token_hash)
            if row is None:
                del self.sessions[old_id]
                return self.gone("session", old.expires_at)
            if row["revoked"]:
                raise Violation(f"session {old_id} is revoked, but only its own client revokes it")
            if row["expires_at"] < now():
                # AuthFort answers refresh_token_expired; the row stays for cleanup.
                del self.sessions[old_id]
                self.stats["refreshes refused (expired)"] += 1
                return
            await self.current_key()
            new_id, new = await self.issue(row["user_id"], row["session_id"] or row["id"],
                                           now() + lifetime(self.rng, 0.3))
            await self.connection.execute(
                "UPDATE authfort_refresh_tokens SET revoked = true, replaced_by = $2 WHERE id = $1", old_id, new_id)
        del self.sessions[old_id]
        self.sessions[new_id] = new
        self.stats["refreshes"] += 1

    async def logout(self) -> None:
        """AuthFort's logout(): revoke the presented token if it is not already."""
        if not self.sessions:
            return
        token_id = self.rng.choice(list(self.sessions))
        session = self.sessions.pop(token_id)
        async with self.connection.transaction():
            row = await self.connection.fetchrow(
                "SELECT id, revoked FROM authfort_refresh_tokens WHERE token_hash = $1", session.token_hash)
            if row is None:
                return self.gone("session", session.expires_at)
            if row["revoked"]:
                raise Violation(f"session {token_id} is revoked, but only its own client revokes it")
            await self.connection.execute("UPDATE authfort_refresh_tokens SET revoked = true WHERE id = $1", token_id)
        self.stats["logouts"] += 1

    async def request_reset(self) -> None:
        """create_password_reset_token(): delete the user's earlier reset
        tokens one by one (as the ORM does), insert a new one."""
        user_id = self.rng.choice(self.users)
        token = Token(uuid.uuid4(), new_hash(), now() + lifetime(self.rng, 0.3))
        async with self.connection.transaction():
            for row in await self.connection.fetch(
                    "SELECT id FROM authfort_verification_tokens WHERE user_id = $1 AND type = 'password_reset'",
                    user_id):
                await self.connection.execute("DELETE FROM authfort_verification_tokens WHERE id = $1", row["id"])
            await self.connection.execute(
                """INSERT INTO authfort_verification_tokens (id, user_id, token_hash, type, expires_at, created_at)
                   VALUES ($1, $2, $3, 'password_reset', $4, now())""",
                token.id, user_id, token.token_hash, token.expires_at)
        self.tokens[user_id] = token
        self.stats["password resets requested"] += 1

    async def use_reset(self) -> None:
        """reset_password(): look the token up; if valid, change the password,
        revoke all the user's sessions and delete the token."""
        if not self.tokens:
            return await self.request_reset()
        user_id = self.rng.choice(list(self.tokens))
        token = self.tokens.pop(user_id)
        async with self.connection.transaction():
            row = await self.connection.fetchrow(
                "SELECT id, expires_at FROM authfort_verification_tokens WHERE token_hash = $1", token.token_hash)
            if row is None:
                return self.gone("verification token", token.expires_at)
            await self.connection.execute("DELETE FROM authfort_verification_tokens WHERE id = $1", row["id"])
            if row["expires_at"] < now():
                # AuthFort deletes an expired token it is shown, and refuses.
                self.stats["password resets refused (expired)"] += 1
                return
            await self.connection.execute(
                "UPDATE authfort_users SET password_hash = $2, token_version = token_version + 1, updated_at = now()"
                " WHERE id = $1", user_id, new_hash())
            await self.connection.execute(
                "UPDATE authfort_refresh_tokens SET revoked = true WHERE user_id = $1 AND revoked = false", user_id)
        for token_id in [token_id for token_id, session in self.sessions.items() if session.user_id == user_id]:
            del self.sessions[token_id]
        self.stats["password resets used"] += 1

    async def abandoned(self) -> None:
        """Rows that are expired already: a session and a token whose owners
        never came back (as left by a server that was down, or a backfill)."""
        user_id = self.rng.choice(self.users)
        past = now() - timedelta(seconds=self.rng.uniform(1, 86400))
        async with self.connection.transaction():
            await self.issue(user_id, None, past)
            await self.connection.execute(
                """INSERT INTO authfort_verification_tokens (id, user_id, token_hash, type, expires_at, created_at)
                   VALUES ($1, $2, $3, 'email_verify', $4, now())""",
                uuid.uuid4(), user_id, new_hash(), past)
        self.stats["expired rows inserted"] += 2

    async def rotate_key(self) -> None:
        """AuthFort.rotate_key(): the current key gets expires_at = now +
        key_rotation_ttl; create_signing_key then un-currents every current
        key and inserts the new one, with no expiry."""
        ttl = lifetime(self.rng, 0.6)
        async with self.connection.transaction():
            old = await self.current_key()
            expires_at = now() + ttl
            await self.connection.execute(
                "UPDATE authfort_signing_keys SET expires_at = $2 WHERE id = $1", old["id"], expires_at)
            await self.connection.execute("UPDATE authfort_signing_keys SET is_current = false WHERE is_current")
            new_id = uuid.uuid4()
            await self.connection.execute(
                """INSERT INTO authfort_signing_keys (id, kid, private_key, public_key, algorithm, is_current, created_at)
                   VALUES ($1, $2, 'private', 'public', 'RS256', true, now())""",
                new_id, f"kid-{new_id.hex[:12]}")
        self.keys[old["id"]] = expires_at
        self.keys[new_id] = None
        self.stats["key rotations"] += 1

    # ------------------------------------------------------------ the loop

    OPERATIONS = [
        (sign_in, 30), (refresh, 30), (logout, 8), (request_reset, 10), (use_reset, 6), (abandoned, 4),
    ]

    async def run(self, until: float) -> None:
        loop = asyncio.get_running_loop()
        operations, weights = zip(*self.OPERATIONS)
        next_rotation = loop.time()
        while loop.time() < until:
            if self.rotates_keys and loop.time() >= next_rotation:
                operation = Client.rotate_key
                next_rotation = loop.time() + self.rng.uniform(0.3, 1.5)
            else:
                operation = self.rng.choices(operations, weights)[0]
            try:
                await operation(self)
            except Violation as violation:
                self.violations.append(f"client {self.number}: {violation}")
            except Exception as error:  # any database error is a failure
                code = getattr(error, "sqlstate", None)
                self.stats[f"errors {code}"] += 1
                self.errors.append(f"client {self.number} {operation.__name__}: {type(error).__name__} {code}: {error}")
            await asyncio.sleep(self.rng.uniform(0, CLIENT_PAUSE))


# ---------------------------------------------------------------- cleanup


@dataclass
class Cleanup:
    connection: asyncpg.Connection
    cleaned: Counter = field(default_factory=Counter)
    calls: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def on_message(self, _connection, message) -> None:
        # NOTICEs (the procedure's progress lines) are expected; a WARNING
        # would mean a target was skipped (e.g. a missing index).
        if message.severity not in ("NOTICE", "DEBUG", "LOG", "INFO"):
            self.warnings.append(f"{message.severity}: {message.message}")

    async def once(self, form: str) -> None:
        if form in ("keys", "tokens", "sessions"):
            self.cleaned[form] += await self.connection.fetchval(f"SELECT authfort_cleanup_{form}()")
        elif form == "all":
            row = await self.connection.fetchrow("SELECT * FROM authfort_cleanup_all()")
            for target in ("keys", "tokens", "sessions"):
                self.cleaned[target] += row[target]
        else:
            # The procedure COMMITs per batch, so it needs autocommit: asyncpg
            # outside a transaction block is. Its counts are in the run log.
            await self.connection.execute(f"CALL authfort_cleanup_run(batch_size => {CLEANUP_BATCH_SIZE})")
            row = await self.connection.fetchrow(
                "SELECT keys, tokens, sessions, status, error FROM authfort_cleanup_runs ORDER BY id DESC LIMIT 1")
            if row["status"] != "ok":
                raise RuntimeError(f"authfort_cleanup_run logged {row['status']}: {row['error']}")
            for target in ("keys", "tokens", "sessions"):
                self.cleaned[target] += row[target]
        self.calls[form] += 1

    async def run(self, until: float) -> None:
        self.connection.add_log_listener(self.on_message)
        loop = asyncio.get_running_loop()
        forms = ["keys", "tokens", "sessions", "all", "run"]
        position = 0
        while loop.time() < until:
            form = forms[position % len(forms)]
            position += 1
            try:
                await self.once(form)
            except Exception as error:
                self.errors.append(f"cleanup {form}: {type(error).__name__} {getattr(error, 'sqlstate', None)}: {error}")
            await asyncio.sleep(random.uniform(0, CLEANUP_PAUSE))


# ---------------------------------------------------------------- setup and checks


async def seed(connection: asyncpg.Connection, rng: random.Random) -> tuple[list[list[uuid.UUID]], uuid.UUID]:
    """Users for every client, one current key, and a backlog for the cleanup:
    expired and retired keys, expired tokens, rotated and abandoned sessions."""
    users = [[uuid.uuid4() for _ in range(USERS_PER_CLIENT)] for _ in range(CLIENTS)]
    flat = [user for group in users for user in group]
    start = now()
    await connection.copy_records_to_table(
        "authfort_users", columns=["id", "email", "created_at", "updated_at"],
        records=[(user, f"user-{user.hex}@traffic.example", start, start) for user in flat])
    current_key = uuid.uuid4()
    keys = [(current_key, "kid-initial", True, None)]
    keys += [(uuid.uuid4(), f"kid-old-{i}", False, start - timedelta(days=rng.uniform(1, 60))) for i in range(50)]
    await connection.copy_records_to_table(
        "authfort_signing_keys",
        columns=["id", "kid", "private_key", "public_key", "algorithm", "is_current", "created_at", "expires_at"],
        records=[(key_id, kid, "private", "public", "RS256", current, start, expires)
                 for key_id, kid, current, expires in keys])
    await connection.copy_records_to_table(
        "authfort_verification_tokens", columns=["id", "user_id", "token_hash", "type", "expires_at", "created_at"],
        records=[(uuid.uuid4(), rng.choice(flat), new_hash(), "email_verify",
                  start - timedelta(hours=rng.uniform(1, 100)), start) for _ in range(2000)])
    # Old rotation chains, revoked all along, some ending in an expired token.
    sessions = []
    for _ in range(600):
        chain = [uuid.uuid4() for _ in range(rng.randint(1, 5))]
        user = rng.choice(flat)
        for position, token_id in enumerate(chain):
            latest = position == len(chain) - 1
            sessions.append((token_id, user, new_hash(), chain[0], start - timedelta(hours=rng.uniform(1, 100)),
                             start, not latest, None if latest else chain[position + 1]))
    await connection.copy_records_to_table(
        "authfort_refresh_tokens",
        columns=["id", "user_id", "token_hash", "session_id", "expires_at", "created_at", "revoked", "replaced_by"],
        records=sessions)
    return users, current_key


async def missing_rows(
    connection: asyncpg.Connection, clients: list[Client], at: datetime,
) -> tuple[dict[str, list], dict[str, int]]:
    """Rows the clients still need at time `at` that are gone (or, for
    sessions, revoked behind their back), and how many they need."""
    sessions = {token_id: s.expires_at for c in clients for token_id, s in c.sessions.items() if s.expires_at > at}
    tokens = {t.id: t.expires_at for c in clients for t in c.tokens.values() if t.expires_at > at}
    keys = {key_id: e for c in clients for key_id, e in c.keys.items() if e is None or e > at}
    present = {
        "sessions": {r["id"] for r in await connection.fetch(
            "SELECT id FROM authfort_refresh_tokens WHERE id = ANY($1) AND NOT revoked", list(sessions))},
        "tokens": {r["id"] for r in await connection.fetch(
            "SELECT id FROM authfort_verification_tokens WHERE id = ANY($1)", list(tokens))},
        "keys": {r["id"] for r in await connection.fetch(
            "SELECT id FROM authfort_signing_keys WHERE id = ANY($1)", list(keys))},
    }
    needed = {"sessions": sessions, "tokens": tokens, "keys": keys}
    return {name: sorted(set(needed[name]) - present[name]) for name in needed}, {n: len(v) for n, v in needed.items()}


DELETABLE_BY_AUTHFORT = """
SELECT (SELECT count(*) FROM authfort_signing_keys WHERE expires_at < now() AND NOT is_current) AS keys,
       (SELECT count(*) FROM authfort_verification_tokens WHERE expires_at < now()) AS tokens,
       (SELECT count(*) FROM authfort_refresh_tokens WHERE revoked OR expires_at < now()) AS sessions
"""


async def main() -> int:
    rng = random.Random(int(os.environ.get("TRAFFIC_SEED", "0")) or None)
    admin = await asyncpg.connect(database=DATABASE, user="postgres")
    users, current_key = await seed(admin, rng)
    backlog = await admin.fetchrow(DELETABLE_BY_AUTHFORT)

    clients = [Client(number, users[number], number == 0, random.Random(rng.random())) for number in range(CLIENTS)]
    clients[0].keys[current_key] = None
    for client in clients:
        client.connection = await asyncpg.connect(database=DATABASE, user="postgres")
    cleanup = Cleanup(await asyncpg.connect(database=DATABASE, user="postgres"))

    until = asyncio.get_running_loop().time() + DURATION
    await asyncio.gather(cleanup.run(until), *(client.run(until) for client in clients))

    # The last word: one more cleanup, then AuthFort's rules counted and the
    # clients' rows looked for, all in one transaction, so now() is the same
    # instant for the deletion, the count and the "still needed" cut-off.
    async with admin.transaction():
        final = await admin.fetchrow(
            "SELECT authfort_cleanup_keys() AS keys, authfort_cleanup_tokens() AS tokens,"
            " authfort_cleanup_sessions() AS sessions, now() AS at")
        left = await admin.fetchrow(DELETABLE_BY_AUTHFORT)
        missing, needed = await missing_rows(admin, clients, final["at"])
    for target in ("keys", "tokens", "sessions"):
        cleanup.cleaned[target] += final[target]

    for client in clients + [cleanup]:
        await client.connection.close()
    await admin.close()

    stats = sum((client.stats for client in clients), Counter())
    errors = [error for client in clients for error in client.errors]
    violations = [violation for client in clients for violation in client.violations]
    results = Results()
    print(f"  # traffic: {DURATION:.0f} s, {CLIENTS} clients; " + ", ".join(
        f"{name} {count}" for name, count in sorted(stats.items())))
    print(f"  # cleanup: calls {dict(cleanup.calls)}; backlog at start {dict(backlog)};"
          f" rows cleaned {dict(cleanup.cleaned)} (final call {final['keys']}/{final['tokens']}/{final['sessions']})")
    for problem in errors[:10] + violations[:10] + cleanup.errors[:10]:
        print(f"  # {problem}")

    results.check("traffic happened", stats["sign-ins"] > 100 and stats["refreshes"] > 100
                  and stats["password resets used"] > 10 and stats["key rotations"] > 5,
                  f"{stats['sign-ins']} sign-ins, {stats['refreshes']} refreshes, "
                  f"{stats['password resets used']} resets, {stats['key rotations']} key rotations")
    results.check("clients: no errors", not errors, f"{len(errors)} errors")
    deadlocks = stats["errors 40P01"] + sum("40P01" in error for error in cleanup.errors)
    results.check("no deadlocks", deadlocks == 0, f"{deadlocks} deadlocks (40P01)")
    results.check("clients: no needed row vanished mid-run", not violations, f"{len(violations)} violations")
    results.check("cleanup: ran every form", len(cleanup.calls) == 5 and min(cleanup.calls.values()) >= 3,
                  str(dict(cleanup.calls)))
    results.check("cleanup: no errors", not cleanup.errors, f"{len(cleanup.errors)} errors")
    results.check("cleanup: no warnings", not cleanup.warnings, "; ".join(cleanup.warnings[:3]) or "none")
    # Every backlog row is deletable from the start, so all of it must go;
    # on top of that, rows issued short-lived during the run expire and go.
    results.check("cleanup: cleaned the backlog and rows that expired during the run",
                  all(cleanup.cleaned[target] >= backlog[target] for target in ("keys", "tokens", "sessions"))
                  and sum(cleanup.cleaned.values()) > sum(backlog),
                  f"cleaned {dict(cleanup.cleaned)} vs backlog {dict(backlog)}")
    for target in ("sessions", "tokens", "keys"):
        results.check(f"no needed {target} missing", not missing[target],
                      f"{len(missing[target])} of {needed[target]} still-valid {target} missing"
                      + (f", e.g. {missing[target][:3]}" if missing[target] else ""))
    results.check("nothing deletable left after the final cleanup", tuple(left) == (0, 0, 0),
                  f"keys/tokens/sessions deletable by AuthFort's rules: {tuple(left)}")
    return results.summary()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
