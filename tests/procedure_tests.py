"""The batched procedure and the one-shot functions under real concurrency.

Every check runs real client sessions (asyncpg connections in autocommit)
against the suite's cluster: one session runs the cleanup, others watch it,
lock rows or tables under it, kill it, or crash the server beneath it.

To stop a run at a known point without relying on timing, tests use two
gates, both plain client locks:

* LockstepGate (test 1, the four concurrent calls): a session holding
  LOCK TABLE ... IN SHARE MODE. Every batch's DELETE needs ROW EXCLUSIVE, so
  it waits until the gate lets go.
* RowGate (the run-stopping tests): a live session row whose replaced_by
  points at a doomed row in the middle of the heap, held FOR UPDATE by another
  session. Deleting the doomed row makes PostgreSQL's ON DELETE SET NULL
  trigger update the live row, so the batch holding it stops there, its own
  deletions done but uncommitted, the batches before it committed.

Most checks run twice: once on AuthFort's schema with the replaced_by index
(batches walk heap block ranges), once with the time indexes too (batches
walk the expires_at indexes); the second round's labels start with
"[time indexes]".

Expects PGHOST, PGPORT, CLUSTER_DIR (tests/suites/procedure.sh exports them)
and the name of a database with AuthFort's schema and the extension, cloned
for every test. Prints one line per check and `N passed, N failed` last;
exits 1 on any failure.
"""

import asyncio
import getpass
import os
import subprocess
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from results import Results

REPO = Path(__file__).resolve().parent.parent
TEMPLATE = sys.argv[1] if len(sys.argv) > 1 else "procedure_template"
USER_ID = "00000000-0000-0000-0000-000000000001"

# Safety nets, never assertions: how long a test may wait for something that
# should happen within milliseconds before it is declared a failure.
WAIT_LIMIT_S = 30
SCENARIO_LIMIT_S = 120

# The deletable/live split of AuthFort's rules, written independently of the
# extension, so counts are checked against an oracle and not the code under test.
SESSION_DELETABLE = "(revoked OR expires_at < now())"


# ---------------------------------------------------------------- reporting


results = Results()


@dataclass
class Round:
    """Which indexes the tests' tables get: the replaced_by index always, the
    time indexes in the second round."""

    time_indexes: bool = False


ROUND = Round()


def check(label: str, expected, actual) -> None:
    results.expect(("[time indexes] " if ROUND.time_indexes else "") + label, expected, actual)


async def supporting_indexes(session: "Session") -> None:
    """What authfort_cleanup_check() tells an operator to create, in this round."""
    await session.execute("SELECT authfort_cleanup_create_indexes(time_indexes => $1)", ROUND.time_indexes)


# ---------------------------------------------------------------- sessions


class Session:
    """One client session that keeps the NOTICEs and WARNINGs it receives."""

    def __init__(self, connection: asyncpg.Connection):
        self.connection = connection
        self.messages: list = []
        connection.add_log_listener(lambda _connection, message: self.messages.append(message))

    @property
    def pid(self) -> int:
        return self.connection.get_server_pid()

    async def execute(self, statement: str, *args):
        return await self.connection.execute(statement, *args)

    async def value(self, query: str, *args):
        return await self.connection.fetchval(query, *args)

    async def rows(self, query: str, *args):
        return await self.connection.fetch(query, *args)

    async def settled_messages(self) -> list:
        """The messages so far: asyncpg hands them over on later loop turns."""
        for _ in range(10):
            await asyncio.sleep(0)
        return self.messages


class Clients:
    """The sessions one test opens; all are closed (or dropped) when it ends."""

    def __init__(self, database: str):
        self.database = database
        self.sessions: list[Session] = []

    async def open(self, **settings: str) -> Session:
        connection = await asyncpg.connect(database=self.database, user="postgres", server_settings=settings)
        session = Session(connection)
        self.sessions.append(session)
        return session

    async def __aenter__(self) -> "Clients":
        return self

    async def __aexit__(self, *_exc) -> None:
        for session in self.sessions:
            # terminate(): some of these connections are dead, killed or
            # stuck in a transaction on purpose.
            session.connection.terminate()


async def admin(statement: str) -> None:
    connection = await asyncpg.connect(database="postgres", user="postgres")
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


async def fresh_database(name: str) -> str:
    """A copy of the template: AuthFort's schema, the extension, no rows."""
    await admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE}"')
    return name


async def wait_until(description: str, condition) -> bool:
    """Polls an async condition until it holds; False (a failed check) if it
    never does within WAIT_LIMIT_S."""
    for _ in range(WAIT_LIMIT_S * 50):
        if await condition():
            return True
        await asyncio.sleep(0.02)
    print(f"  (gave up waiting: {description})")
    return False


async def waiting_for_lock(watcher: Session, pid: int) -> bool:
    return bool(await watcher.value(
        "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1", pid))


async def outcome(task: asyncio.Task) -> str:
    """How a CALL/SELECT task ended: 'ok' or the SQLSTATE (or error class)."""
    try:
        await task
        return "ok"
    except asyncpg.PostgresError as error:
        return error.sqlstate
    except (asyncpg.InterfaceError, OSError, ConnectionError) as error:
        return type(error).__name__


# ---------------------------------------------------------------- seeding


@dataclass
class Seeded:
    deletable: int
    live: int


async def seed_user(session: Session) -> None:
    await session.execute(
        "INSERT INTO authfort_users (id, email, created_at, updated_at)"
        " VALUES ($1, 'procedure@example.com', now(), now()) ON CONFLICT DO NOTHING", USER_ID)


async def seed_sessions(session: Session, tag: str, chains: int, length: int, abandoned: bool = False) -> Seeded:
    """Refresh tokens as AuthFort's rotation leaves them: each chain is one
    login, every refresh revoking the old token and pointing its replaced_by
    at the new one. Rotated-out tokens are revoked (a third also expired);
    the latest is live, or for an abandoned session unrevoked but expired.

    Rows go in in time order (all first tokens, then all second ones, ...),
    so a token's predecessor sits earlier in the heap, as in real tables.
    Expiries spread over ten minutes, a few dozen rows sharing each second:
    batches through the time indexes each delete a range of expiries, and
    never split the rows of one.
    """
    latest_expiry = "now() - interval '1 day'" if abandoned else "now() + interval '30 days'"
    await session.execute(f"""
        INSERT INTO authfort_refresh_tokens
               (id, user_id, token_hash, session_id, expires_at, created_at, revoked, replaced_by)
        SELECT md5(format('%s-%s-%s', $1::text, c, p))::uuid, $2::uuid,
               md5(format('hash-%s-%s-%s', $1::text, c, p)),
               md5(format('%s-%s-1', $1::text, c))::uuid,
               CASE WHEN p = $4 THEN {latest_expiry}
                    WHEN (c + p) % 3 = 0 THEN now() - interval '2 days' - interval '1 second' * ((c * 7 + p) % 600)
                    ELSE now() + interval '30 days' + interval '1 second' * ((c * 7 + p) % 600) END,
               now() - interval '40 days',
               p < $4,
               CASE WHEN p < $4 THEN md5(format('%s-%s-%s', $1::text, c, p + 1))::uuid END
          FROM generate_series(1, $4::int) AS p, generate_series(1, $3::int) AS c
         ORDER BY p, c""", tag, USER_ID, chains, length)
    if abandoned:
        return Seeded(deletable=chains * length, live=0)
    return Seeded(deletable=chains * (length - 1), live=chains)


async def seed_tokens(session: Session, expired: int, live: int) -> Seeded:
    await session.execute("""
        INSERT INTO authfort_verification_tokens (id, user_id, token_hash, type, expires_at, created_at)
        SELECT md5('token-' || n)::uuid, $1::uuid, md5('token-hash-' || n),
               (ARRAY['password_reset', 'email_verify', 'magic_link', 'otp'])[1 + n % 4],
               now() + CASE WHEN n <= $2 THEN interval '-3 days' ELSE interval '3 days' END,
               now() - interval '10 days'
          FROM generate_series(1, $2::int + $3::int) AS n""", USER_ID, expired, live)
    return Seeded(deletable=expired, live=live)


async def seed_keys(session: Session, expired: int, live: int) -> Seeded:
    """Rotated-out signing keys, expired or not, and the current key, which
    has no expiry and is never deleted."""
    await session.execute("""
        INSERT INTO authfort_signing_keys (id, kid, private_key, public_key, algorithm, is_current, created_at, expires_at)
        SELECT md5('key-' || n)::uuid, 'kid-' || n, 'private ' || n, 'public ' || n, 'RS256', n = 0,
               now() - interval '60 days',
               CASE WHEN n = 0 THEN NULL
                    WHEN n <= $1 THEN now() - interval '5 days' ELSE now() + interval '5 days' END
          FROM generate_series(0, $1::int + $2::int) AS n""", expired, live)
    return Seeded(deletable=expired, live=live + 1)


async def standard_backlog(session: Session) -> Seeded:
    """30,000 deletable and 5,000 live refresh tokens in 5,000 seven-token
    chains, and the index on replaced_by that keeps deleting them linear."""
    await seed_user(session)
    seeded = await seed_sessions(session, "chain", chains=5000, length=7)
    await supporting_indexes(session)
    await session.execute("ANALYZE authfort_refresh_tokens")
    return seeded


async def sessions_total(session: Session) -> int:
    return await session.value("SELECT count(*) FROM authfort_refresh_tokens")


async def sessions_live(session: Session) -> int:
    return await session.value(f"SELECT count(*) FROM authfort_refresh_tokens WHERE NOT {SESSION_DELETABLE}")


async def sessions_deletable(session: Session) -> int:
    return await session.value(f"SELECT count(*) FROM authfort_refresh_tokens WHERE {SESSION_DELETABLE}")


async def run_log(session: Session) -> list:
    return await session.rows(
        "SELECT status, keys, tokens, sessions, error, notes FROM authfort_cleanup_runs ORDER BY id")


# ---------------------------------------------------------------- gates


class LockstepGate:
    """A session holding SHARE locks on tables: every cleanup DELETE on them
    (ROW EXCLUSIVE) waits until it lets go."""

    def __init__(self, session: Session, *tables: str):
        self.session, self.tables = session, ", ".join(tables)
        self.transaction = None

    async def close(self) -> None:
        self.transaction = self.session.connection.transaction()
        await self.transaction.start()
        await self.session.execute(f"LOCK TABLE {self.tables} IN SHARE MODE")

    async def open(self) -> None:
        await self.transaction.commit()


# The live refresh token a RowGate holds (a rotation whose revoke was lost).
GATE_ROW_ID = "99999999-0000-0000-0000-000000000001"


async def install_gate_row(seeder: Session, after_deletable_rows: int) -> None:
    """Adds the gate's live row (one more live session), pointing at the
    deletable row that comes after `after_deletable_rows` others in the order
    the batches walk them: heap order, or through the time indexes, the
    expired rows by expiry, then the revoked ones (ties in heap order, as a
    btree keeps them)."""
    walk_order = "expires_at >= now(), expires_at, ctid" if ROUND.time_indexes else "ctid"
    doomed = await seeder.value(
        f"SELECT id FROM authfort_refresh_tokens WHERE {SESSION_DELETABLE} ORDER BY {walk_order} OFFSET $1 LIMIT 1",
        after_deletable_rows)
    await seeder.execute(
        "INSERT INTO authfort_refresh_tokens (id, user_id, token_hash, expires_at, created_at, revoked, replaced_by)"
        " VALUES ($1, $2, 'gate', now() + interval '30 days', now(), false, $3)",
        GATE_ROW_ID, USER_ID, doomed)


async def gate_link_cleared(session: Session) -> bool:
    """ON DELETE SET NULL ran: the gate's live row no longer points anywhere."""
    return await session.value("SELECT replaced_by IS NULL FROM authfort_refresh_tokens WHERE id = $1", GATE_ROW_ID)


class RowGate:
    """A session holding the gate row FOR UPDATE: the batch that deletes the
    row it points at stops in PostgreSQL's ON DELETE SET NULL trigger, its
    deletions done but uncommitted, until the gate opens."""

    def __init__(self, session: Session):
        self.session = session
        self.transaction = None

    async def close(self) -> None:
        self.transaction = self.session.connection.transaction()
        await self.transaction.start()
        await self.session.execute("SELECT FROM authfort_refresh_tokens WHERE id = $1 FOR UPDATE", GATE_ROW_ID)

    async def open(self) -> None:
        await self.transaction.rollback()


async def start_gated_run(clients: Clients, watcher: Session, call: str, setup: str | None = None):
    """Starts `call` in a new session (after `setup` there) with a closed
    RowGate in its way (the gate row must already be installed) and waits
    until the run is stopped at it. Returns (runner session, gate, task,
    whether it stopped)."""
    gate = RowGate(await clients.open())
    await gate.close()
    runner = await clients.open()
    # The gate must outlast the extension's own lock wait (5 s by default).
    await runner.execute("SET authfort_cleanup.lock_timeout = '10min'")
    if setup:
        await runner.execute(setup)
    task = asyncio.create_task(runner.execute(call))

    async def stopped_or_ended() -> bool:
        return task.done() or await waiting_for_lock(watcher, runner.pid)

    await wait_until("the run to stop at the gate", stopped_or_ended)
    return runner, gate, task, not task.done()


# ---------------------------------------------------------------- 1. batches commit


async def test_batches_commit() -> None:
    """A watcher sees the row count fall in steps while the CALL runs."""
    db = await fresh_database("proc_batches")
    async with Clients(db) as clients:
        seeder = await clients.open()
        seeded = await standard_backlog(seeder)
        start = await sessions_total(seeder)

        runner = await clients.open()
        watcher = await clients.open()
        task = asyncio.create_task(runner.execute("CALL authfort_cleanup_run(batch_size => 1000)"))
        seen = await watch_in_lockstep(watcher, task)

        check("1 batches: the CALL succeeds", "ok", await outcome(task))
        end = await sessions_total(seeder)
        check("1 batches: every deletable session deleted, every live one kept", seeded.live, end)
        between = sorted({count for count in seen if end < count < start}, reverse=True)
        print(f"      counts seen from a second session: {start} > {between[:5]}... > {end} "
              f"({len(between)} distinct intermediate counts)")
        check("1 batches: a second session saw >= 2 distinct counts strictly between start and end",
              True, len(between) >= 2)
        progress = [int(message.message.split()[1]) for message in await runner.settled_messages()
                    if "rows of sessions deleted so far" in message.message]
        steps = [later - earlier for earlier, later in zip([0] + progress, progress)]
        check("1 batches: no batch deleted more than batch_size rows", True, bool(steps) and max(steps) <= 1000)
        log = await run_log(seeder)
        check("1 batches: one run-log row, ok, counting every deleted session",
              [("ok", seeded.deletable)], [(row["status"], row["sessions"]) for row in log])
        if ROUND.time_indexes:
            await runner.execute("SELECT pg_stat_force_next_flush()")

            async def both_indexes_read() -> bool:
                await seeder.execute("SELECT pg_stat_clear_snapshot()")
                return await seeder.value(
                    "SELECT count(*) = 2 AND bool_and(idx_scan > 0) FROM pg_stat_user_indexes WHERE indexrelname IN"
                    " ('ix_authfort_refresh_tokens_expires_at', 'ix_authfort_refresh_tokens_expires_at_revoked')")

            check("1 batches: they read through both time indexes", True,
                  await wait_until("the time indexes' scan counts", both_indexes_read))


async def watch_in_lockstep(watcher: Session, task: asyncio.Task) -> list[int]:
    """Counts refresh tokens again and again until `task` ends. Each count
    holds a SHARE lock, so it waits for the batch in progress to commit and
    the next batch waits for the count: at most one batch between counts,
    however fast or slow the machine is."""
    gate = LockstepGate(watcher, "authfort_refresh_tokens")
    seen = []
    while not task.done():
        await gate.close()
        seen.append(await watcher.value("SELECT count(*) FROM authfort_refresh_tokens"))
        await gate.open()
    return seen


# ---------------------------------------------------------------- 2. max_runtime


async def test_max_runtime() -> None:
    """A run past max_runtime stops after its batch, logs why, and the next
    run finishes the job."""
    db = await fresh_database("proc_max_runtime")
    async with Clients(db) as clients:
        seeder = await clients.open()
        seeded = await standard_backlog(seeder)
        await install_gate_row(seeder, after_deletable_rows=seeded.deletable // 2)
        watcher = await clients.open()

        # Either max_runtime stops the run before it reaches the gate, or the
        # gate holds it until it has certainly run longer than max_runtime:
        # both ways it stops with the gate row's half of the table left.
        runner, gate, task, _ = await start_gated_run(
            clients, watcher, "CALL authfort_cleanup_run(batch_size => 500, max_runtime => '200 milliseconds')")

        async def past_max_runtime() -> bool:
            return task.done() or await watcher.value(
                "SELECT clock_timestamp() - query_start > interval '250 milliseconds'"
                "  FROM pg_stat_activity WHERE pid = $1", runner.pid)

        await wait_until("the run to pass max_runtime", past_max_runtime)
        await gate.open()
        check("2 max_runtime: the CALL returns without error", "ok", await outcome(task))

        left = await sessions_deletable(seeder)
        check("2 max_runtime: deletable rows are left over", True, 0 < left < seeded.deletable)
        first = (await run_log(seeder))[-1]
        check("2 max_runtime: its run-log row says ok", "ok", first["status"])
        check("2 max_runtime: its notes mention max_runtime", True, "max_runtime" in (first["notes"] or ""))
        check("2 max_runtime: its count is what is gone", seeded.deletable - left, first["sessions"])

        await seeder.execute("CALL authfort_cleanup_run()")
        second = (await run_log(seeder))[-1]
        check("2 max_runtime: a second CALL finishes the job", (0, "ok"), (await sessions_deletable(seeder), second["status"]))
        check("2 max_runtime: the two run-log rows add up to every deletable row",
              seeded.deletable, first["sessions"] + second["sessions"])
        check("2 max_runtime: no live session lost", seeded.live + 1, await sessions_live(seeder))


# ---------------------------------------------------------------- 3. and 4. interrupted runs


async def test_terminated() -> None:
    """pg_terminate_backend mid-batch."""

    async def kill(watcher: Session, runner: Session) -> None:
        await watcher.execute("SELECT pg_terminate_backend($1)", runner.pid)

    await interrupted_run("3 terminated", "proc_terminated", kill)


async def test_crashed() -> None:
    """pg_ctl stop -m immediate mid-batch, then a restart (crash recovery)."""

    async def crash(_watcher: Session, _runner: Session) -> None:
        await asyncio.to_thread(stop_immediately_and_restart)

    await interrupted_run("4 immediate stop", "proc_crashed", crash)


def stop_immediately_and_restart() -> None:
    bindir = subprocess.run(["pg_config", "--bindir"], check=True, capture_output=True, text=True).stdout.strip()
    as_postgres = [] if getpass.getuser() == "postgres" else ["sudo", "-u", "postgres"]
    data = Path(os.environ["CLUSTER_DIR"]) / "data"
    subprocess.run([*as_postgres, f"{bindir}/pg_ctl", "-D", str(data), "stop", "-m", "immediate"],
                   check=True, stdout=subprocess.DEVNULL)
    subprocess.run([str(REPO / "scripts" / "cluster.sh"), "start"], check=True)


async def interrupted_run(label: str, name: str, interrupt) -> None:
    """Stops a run inside a batch whose deletions are done but uncommitted,
    interrupts it there, and checks what survived: the committed batches
    stay deleted, the interrupted one is rolled back, no live row is lost,
    and a rerun deletes exactly the rest."""
    db = await fresh_database(name)
    async with Clients(db) as clients:
        seeder = await clients.open()
        seeded = await standard_backlog(seeder)
        await install_gate_row(seeder, after_deletable_rows=seeded.deletable // 2)
        start = await sessions_total(seeder)
        watcher = await clients.open()

        runner, gate, task, stopped = await start_gated_run(
            clients, watcher, "CALL authfort_cleanup_run(batch_size => 1000)")
        check(f"{label}: the run stopped mid-batch at the gate", True, stopped)
        at_interrupt = await sessions_total(watcher)
        check(f"{label}: some batches were committed before the interruption", True, at_interrupt < start)

        await interrupt(watcher, runner)
        check(f"{label}: the CALL was cut off", True, await outcome(task) != "ok")

    # Fresh sessions: after an immediate stop every old one is gone.
    async with Clients(db) as clients:
        session = await clients.open()
        after = await sessions_total(session)
        check(f"{label}: committed batches stay deleted, the interrupted batch rolled back", at_interrupt, after)
        committed = start - after
        check(f"{label}: no live session lost", seeded.live + 1, await sessions_live(session))
        check(f"{label}: deletable rows were left for the rerun", True, 0 < await sessions_deletable(session))

        await session.execute("CALL authfort_cleanup_run(batch_size => 1000)")
        rerun = (await run_log(session))[-1]
        check(f"{label}: the rerun is not skipped (the killed run's lock is gone)", "ok", rerun["status"])
        check(f"{label}: committed + rerun = every deletable row", seeded.deletable, committed + rerun["sessions"])
        check(f"{label}: afterwards only live sessions remain", seeded.live + 1, await sessions_total(session))
        check(f"{label}: ON DELETE SET NULL cleared the live row's link", True, await gate_link_cleared(session))


# ---------------------------------------------------------------- 5. concurrency


async def test_concurrent_runs() -> None:
    """A second CALL while one runs: it skips, says so, logs 'skipped'."""
    db = await fresh_database("proc_concurrent_runs")
    async with Clients(db) as clients:
        seeder = await clients.open()
        sessions = await standard_backlog(seeder)
        keys = await seed_keys(seeder, expired=40, live=10)
        tokens = await seed_tokens(seeder, expired=3000, live=500)
        await install_gate_row(seeder, after_deletable_rows=sessions.deletable // 2)
        watcher = await clients.open()

        _, gate, first_task, stopped = await start_gated_run(clients, watcher, "CALL authfort_cleanup_run()")
        check("5 concurrent runs: the first run is under way (stopped at the gate)", True, stopped)
        # statement_timeout: a safety net, so a second run that waited would
        # fail the check instead of hanging the suite.
        second = await clients.open(statement_timeout="20s")
        second_outcome = await outcome(asyncio.create_task(second.execute("CALL authfort_cleanup_run()")))
        check("5 concurrent runs: the second CALL returns while the first still runs",
              ("ok", False), (second_outcome, first_task.done()))
        notices = [message.message for message in await second.settled_messages()
                   if message.severity == "NOTICE"]
        check("5 concurrent runs: the second says it skipped",
              True, any("another cleanup run is in progress; this one skipped" in notice for notice in notices))
        await gate.open()
        check("5 concurrent runs: the first finishes", "ok", await outcome(first_task))

        log = [(row["status"], row["keys"], row["tokens"], row["sessions"]) for row in await run_log(seeder)]
        check("5 concurrent runs: run log is one skipped row, then the first run's",
              [("skipped", 0, 0, 0), ("ok", keys.deletable, tokens.deletable, sessions.deletable)], log)
        left = await seeder.value("SELECT format('%s|%s|%s', (SELECT count(*) FROM authfort_signing_keys),"
                                  " (SELECT count(*) FROM authfort_verification_tokens),"
                                  " (SELECT count(*) FROM authfort_refresh_tokens))")
        check("5 concurrent runs: only live keys, tokens and sessions remain",
              f"{keys.live}|{tokens.live}|{sessions.live + 1}", left)


async def test_concurrent_functions() -> None:
    """Four one-shot calls released at the same instant: two on sessions,
    two on tokens. SKIP LOCKED must split the rows between them."""
    db = await fresh_database("proc_concurrent_functions")
    async with Clients(db) as clients:
        seeder = await clients.open()
        sessions = await standard_backlog(seeder)
        tokens = await seed_tokens(seeder, expired=20000, live=2000)
        watcher = await clients.open()

        gate = LockstepGate(await clients.open(), "authfort_refresh_tokens", "authfort_verification_tokens")
        await gate.close()
        calls = ["authfort_cleanup_sessions", "authfort_cleanup_sessions",
                 "authfort_cleanup_tokens", "authfort_cleanup_tokens"]
        callers = [await clients.open(statement_timeout="60s", **{"authfort_cleanup.lock_timeout": "60s"})
                   for _ in calls]
        tasks = [asyncio.create_task(caller.value(f"SELECT {call}()")) for caller, call in zip(callers, calls)]

        # A second session cleanup does not queue: it finds the first holding
        # the table's deleter lock, deletes nothing and returns at once.
        async def all_queued_or_done() -> bool:
            return all([task.done() or await waiting_for_lock(watcher, caller.pid)
                        for caller, task in zip(callers, tasks)])

        check("5 concurrent calls: each is queued on the gate or already done", True,
              await wait_until("all four calls to queue or finish", all_queued_or_done))
        await gate.open()
        outcomes = [await outcome(task) for task in tasks]
        check("5 concurrent calls: all four succeed (no error, no deadlock)", ["ok"] * 4, outcomes)
        counts = [task.result() if not task.exception() else 0 for task in tasks]
        print(f"      deleted per call: {dict(zip(['sessions a', 'sessions b', 'tokens a', 'tokens b'], counts))}")
        check("5 concurrent calls: the sessions calls add up to every deletable session",
              sessions.deletable, counts[0] + counts[1])
        check("5 concurrent calls: the tokens calls add up to every expired token",
              tokens.deletable, counts[2] + counts[3])
        check("5 concurrent calls: only live sessions and tokens remain", (sessions.live, tokens.live),
              (await sessions_total(seeder),
               await seeder.value("SELECT count(*) FROM authfort_verification_tokens")))


async def test_crossing_chains() -> None:
    """Two session cleanups that each hold one end of the other's rotation
    links. The four calls above deadlock only now and then (when the two
    sessions calls happen to interleave); this stages the same interleaving
    with application row locks, so the outcome does not depend on timing.

    Rows, in heap order: F <- E (live, E.replaced_by = F), A -> B, C -> D.
    Cleanup 1 runs while A and D are locked, so it takes F, B, C and then
    waits in the ON DELETE SET NULL trigger for F's referrer E. Cleanup 2
    then gets A and D; deleting D makes it update C, held by cleanup 1.
    When E is released, cleanup 1 goes on to update A, held by cleanup 2.
    """
    db = await fresh_database("proc_crossing")
    async with Clients(db) as clients:
        seeder = await clients.open()
        await seed_user(seeder)
        ids = {name: f"cccccccc-0000-0000-0000-00000000000{n}" for n, name in enumerate("FABCDE", start=1)}
        links = {"A": "B", "C": "D", "E": "F"}
        # One statement, so the links may point forward: the foreign key is
        # checked at its end. Its row order is the heap order.
        await seeder.execute(
            "INSERT INTO authfort_refresh_tokens (id, user_id, token_hash, expires_at, created_at, revoked, replaced_by)"
            " SELECT id, $2, 'crossing-' || id, now() + interval '30 days', now(), revoked, replaced_by"
            "   FROM unnest($1::uuid[], $3::bool[], $4::uuid[]) WITH ORDINALITY AS r(id, revoked, replaced_by, n)"
            "  ORDER BY n",
            [ids[name] for name in "FABCDE"], USER_ID, [name != "E" for name in "FABCDE"],
            [ids[links[name]] if name in links else None for name in "FABCDE"])
        await supporting_indexes(seeder)
        watcher = await clients.open()

        async def hold(*names: str):
            session = await clients.open()
            transaction = session.connection.transaction()
            await transaction.start()
            await session.execute("SELECT FROM authfort_refresh_tokens WHERE id = ANY($1::uuid[]) FOR UPDATE",
                                  [ids[name] for name in names])
            return transaction

        async def start_cleanup() -> tuple[Session, asyncio.Task]:
            # Long lock waits, so a deadlock shows as 40P01 (deadlock_timeout
            # is 1 s) and not as the extension's own 5 s lock_timeout.
            session = await clients.open(statement_timeout="30s", **{"authfort_cleanup.lock_timeout": "20s"})
            task = asyncio.create_task(session.value("SELECT authfort_cleanup_sessions()"))

            async def blocked_or_done() -> bool:
                return task.done() or await waiting_for_lock(watcher, session.pid)

            await wait_until("a cleanup to block or finish", blocked_or_done)
            return session, task

        application_a_d = await hold("A", "D")
        application_e = await hold("E")
        _, first = await start_cleanup()
        await application_a_d.rollback()
        _, second = await start_cleanup()
        await application_e.rollback()
        outcomes = [await outcome(first), await outcome(second)]
        check("5 crossing chains: both session cleanups succeed (no 40P01 deadlock)", ["ok", "ok"], outcomes)
        gone = 6 - await sessions_total(seeder)
        deleted = sum(task.result() for task in (first, second) if not task.exception())
        check("5 crossing chains: their counts add up to the rows gone", gone, deleted)
        check("5 crossing chains: the live session survives", 1, await sessions_live(seeder))


# ---------------------------------------------------------------- 6. and 7. locks


# How each entry point deletes tokens, and how many a run over 1000 expired
# tokens (one of them held) should take: the held token is the oldest, so
# max_rows's oldest-first pick would take it first if it did not skip it.
ROW_LOCK_CALLS = [
    ("SELECT authfort_cleanup_tokens()", 999),
    ("SELECT authfort_cleanup_tokens(max_rows => 300)", 300),
    ("CALL authfort_cleanup_run(batch_size => 100)", 999),
]


async def test_row_lock_skipped() -> None:
    """A token the application holds FOR UPDATE is skipped, not waited for."""
    for number, (statement, expected) in enumerate(ROW_LOCK_CALLS):
        label = f"6 row lock, {statement}"
        db = await fresh_database(f"proc_row_lock_{number}")
        async with Clients(db) as clients:
            seeder = await clients.open()
            await seed_user(seeder)
            tokens = await seed_tokens(seeder, expired=1000, live=200)
            await supporting_indexes(seeder)
            held = await seeder.value(
                "UPDATE authfort_verification_tokens SET expires_at = now() - interval '30 days'"
                " WHERE id = (SELECT id FROM authfort_verification_tokens WHERE expires_at < now() ORDER BY id LIMIT 1)"
                " RETURNING id")

            holder = await clients.open()
            transaction = holder.connection.transaction()
            await transaction.start()
            await holder.execute("SELECT FROM authfort_verification_tokens WHERE id = $1 FOR UPDATE", held)

            # statement_timeout only so that a regression fails instead of hanging.
            cleaner = await clients.open(statement_timeout="20s", lock_timeout="250ms")
            task = asyncio.create_task(cleaner.execute(statement))
            check(f"{label}: returns while the lock is still held", "ok", await outcome(task))
            check(f"{label}: it deleted {expected} other expired tokens", tokens.deletable + tokens.live - expected,
                  await seeder.value("SELECT count(*) FROM authfort_verification_tokens"))
            check(f"{label}: the locked token is still there", 1,
                  await seeder.value("SELECT count(*) FROM authfort_verification_tokens WHERE id = $1", held))
            check(f"{label}: live tokens untouched", tokens.live, await seeder.value(
                "SELECT count(*) FROM authfort_verification_tokens WHERE expires_at > now()"))
            check(f"{label}: the session's own lock_timeout is untouched", "250ms",
                  await cleaner.value("SHOW lock_timeout"))

            await transaction.rollback()
            check(f"{label}: once released, the next run deletes it", 1, await cleaner.value(
                "SELECT authfort_cleanup_tokens(max_rows => 1)"))
            check(f"{label}: that was the held token", 0,
                  await seeder.value("SELECT count(*) FROM authfort_verification_tokens WHERE id = $1", held))


async def test_lock_timeout() -> None:
    """A table lock the cleanup cannot get fails it with 55P03 after
    authfort_cleanup.lock_timeout, deleting nothing."""
    db = await fresh_database("proc_lock_timeout")
    async with Clients(db) as clients:
        seeder = await clients.open()
        await seed_user(seeder)
        tokens = await seed_tokens(seeder, expired=500, live=100)

        holder = await clients.open()
        transaction = holder.connection.transaction()
        await transaction.start()
        await holder.execute("LOCK TABLE authfort_verification_tokens IN ACCESS EXCLUSIVE MODE")

        # statement_timeout is the safety net: if lock_timeout were ignored,
        # the call would end in 57014 instead of hanging the suite.
        cleaner = await clients.open(statement_timeout="5s")
        await cleaner.execute("SET authfort_cleanup.lock_timeout = '300ms'")
        state = await outcome(asyncio.create_task(cleaner.value("SELECT authfort_cleanup_tokens()")))
        check("7 lock_timeout: the call fails with 55P03 (lock_not_available)", "55P03", state)
        check("7 lock_timeout: the session's own lock_timeout is untouched", "0",
              await cleaner.value("SHOW lock_timeout"))
        await transaction.rollback()
        check("7 lock_timeout: nothing was deleted", tokens.deletable + tokens.live,
              await seeder.value("SELECT count(*) FROM authfort_verification_tokens"))


# Every entry point that reads or deletes AuthFort's tables, each of which
# must wait no longer than authfort_cleanup.lock_timeout for its locks: even
# the ACCESS SHARE of a count, of pg_relation_size or of the guard's sample.
BOUNDED_CALLS = {
    "tokens()": "SELECT authfort_cleanup_tokens()",
    "tokens(dry_run)": "SELECT authfort_cleanup_tokens(dry_run => true)",
    "sessions() without the replaced_by index": "SELECT authfort_cleanup_sessions()",
    "all()": "SELECT * FROM authfort_cleanup_all()",
    "preview()": "SELECT * FROM authfort_cleanup_preview()",
    "check()": "SELECT * FROM authfort_cleanup_check()",
    "the status view": "SELECT * FROM authfort_cleanup_status",
    "batch()": "SELECT * FROM authfort_cleanup_batch('tokens', NULL, 10, '0', false)",
    "blocking_index()": "SELECT authfort_cleanup_blocking_index('sessions')",
    "CALL run()": "CALL authfort_cleanup_run()",
}


async def test_every_lock_wait_bounded() -> None:
    """Every entry point gives up after authfort_cleanup.lock_timeout behind
    an ACCESS EXCLUSIVE lock, with 55P03 and a HINT, deleting nothing."""
    db = await fresh_database("proc_lock_waits")
    async with Clients(db) as clients:
        seeder = await clients.open()
        await seed_user(seeder)
        tokens = await seed_tokens(seeder, expired=50, live=10)
        await seeder.execute("DROP INDEX IF EXISTS ix_authfort_refresh_tokens_replaced_by")
        for label, call in BOUNDED_CALLS.items():
            # The table the call reads first: sessions only for the calls on sessions.
            locked = "authfort_refresh_tokens" if "sessions" in call else "authfort_verification_tokens"
            holder = await clients.open()
            transaction = holder.connection.transaction()
            await transaction.start()
            await holder.execute(f"LOCK TABLE {locked} IN ACCESS EXCLUSIVE MODE")
            # statement_timeout is the safety net: a wait the setting does not
            # bound ends in 57014 instead of hanging the suite.
            cleaner = await clients.open(statement_timeout="20s")
            await cleaner.execute("SET authfort_cleanup.lock_timeout = '200ms'")
            task = asyncio.create_task(cleaner.execute(call))
            try:
                await task
                state, hint = "ok", None
            except asyncpg.PostgresError as error:
                state, hint = error.sqlstate, getattr(error, "hint", None)
            check(f"lock waits: {label} gives up with 55P03", "55P03", state)
            check(f"lock waits: {label} says what to do", True, bool(hint) and "lock_timeout" in hint)
            await transaction.rollback()
        check("lock waits: nothing was deleted", tokens.deletable + tokens.live,
              await seeder.value("SELECT count(*) FROM authfort_verification_tokens"))


# ---------------------------------------------------------------- 8. statement_timeout


async def test_statement_timeout() -> None:
    """statement_timeout hits a CALL inside a batch: 57014, an 'error' row
    counting the committed batches, and a rerun that finishes the job."""
    db = await fresh_database("proc_statement_timeout")
    async with Clients(db) as clients:
        seeder = await clients.open()
        seeded = await standard_backlog(seeder)
        # In the third batch of 200: two batches commit well within 300 ms,
        # then the timeout fires while the run waits at the gate, mid-batch.
        await install_gate_row(seeder, after_deletable_rows=400)
        start = await sessions_total(seeder)
        watcher = await clients.open()

        runner, gate, task, _ = await start_gated_run(
            clients, watcher, "CALL authfort_cleanup_run(batch_size => 200)", setup="SET statement_timeout = '300ms'")
        check("8 statement_timeout: the CALL fails with 57014", "57014", await outcome(task))
        await gate.open()

        after = await sessions_total(seeder)
        check("8 statement_timeout: committed batches stay deleted", True, after < start)
        log = await run_log(seeder)
        check("8 statement_timeout: the run log has one 'error' row", ["error"], [row["status"] for row in log])
        check("8 statement_timeout: its error is the timeout", "canceling statement due to statement timeout",
              log[0]["error"] if log else None)
        check("8 statement_timeout: its count is what the committed batches deleted", start - after,
              log[0]["sessions"] if log else None)

        await runner.execute("RESET statement_timeout")
        await runner.execute("CALL authfort_cleanup_run(batch_size => 200)")
        log = await run_log(seeder)
        check("8 statement_timeout: a plain rerun succeeds", "ok", log[-1]["status"])
        check("8 statement_timeout: the two run-log rows add up to every deletable row",
              seeded.deletable, sum(row["sessions"] for row in log))
        check("8 statement_timeout: no live session lost, nothing deletable left", (seeded.live + 1, 0),
              (await sessions_live(seeder), await sessions_deletable(seeder)))


# ---------------------------------------------------------------- 9. quadratic guard


async def test_quadratic_guard() -> None:
    """AuthFort's unmodified schema (no index on replaced_by) at 60,000
    sessions: the procedure cleans keys and tokens and skips sessions with
    the fix in its HINT; with create_missing_indexes it builds the index and
    cleans them too."""
    db = await fresh_database("proc_guard")
    async with Clients(db) as clients:
        seeder = await clients.open()
        await seed_user(seeder)
        # 12,000 sessions refreshed twice (24,000 rotated out, 12,000 live),
        # 12,000 fresh logins, 4,000 abandoned sessions (12,000 rows): 60,000
        # rows, 36,000 (60%) deletable.
        chains = await seed_sessions(seeder, "chain", chains=12000, length=3)
        logins = await seed_sessions(seeder, "login", chains=12000, length=1)
        abandoned = await seed_sessions(seeder, "gone", chains=4000, length=3, abandoned=True)
        sessions = Seeded(chains.deletable + logins.deletable + abandoned.deletable,
                          chains.live + logins.live + abandoned.live)
        keys = await seed_keys(seeder, expired=30, live=5)
        tokens = await seed_tokens(seeder, expired=2000, live=300)
        check("9 guard: seeded 60,000 sessions, 60% deletable", (60000, 36000),
              (await sessions_total(seeder), await sessions_deletable(seeder)))

        # 60 s: a safety net so that a quadratic regression fails, not hangs.
        runner = await clients.open(statement_timeout="60s")
        check("9 guard: CALL on the unindexed schema returns", "ok",
              await outcome(asyncio.create_task(runner.execute("CALL authfort_cleanup_run()"))))
        row = (await run_log(runner))[-1]
        check("9 guard: keys and tokens cleaned, sessions skipped",
              ("ok", keys.deletable, tokens.deletable, 0), (row["status"], row["keys"], row["tokens"], row["sessions"]))
        check("9 guard: the notes say sessions were skipped and how to fix it", True,
              (row["notes"] or "").startswith("sessions skipped: run CREATE INDEX"))
        warnings = [message for message in await runner.settled_messages() if message.severity == "WARNING"]
        check("9 guard: a WARNING names the skipped sessions", True,
              any("sessions skipped" in warning.message for warning in warnings))
        hints = [warning.hint or "" for warning in warnings if "sessions skipped" in warning.message]
        check("9 guard: its HINT is a CREATE INDEX statement on replaced_by", True,
              bool(hints) and hints[0].startswith("CREATE INDEX") and "(replaced_by)" in hints[0])
        check("9 guard: no session deleted", 60000, await sessions_total(runner))

        await runner.execute("SET authfort_cleanup.create_missing_indexes = on")
        check("9 guard: with create_missing_indexes the CALL returns", "ok",
              await outcome(asyncio.create_task(runner.execute("CALL authfort_cleanup_run()"))))
        check("9 guard: it created the index on replaced_by", True, await runner.value(
            "SELECT EXISTS (SELECT FROM pg_index i JOIN pg_attribute a"
            "   ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]"
            " WHERE i.indrelid = 'authfort_refresh_tokens'::regclass AND a.attname = 'replaced_by')"))
        row = (await run_log(runner))[-1]
        check("9 guard: it deleted every deletable session", ("ok", sessions.deletable), (row["status"], row["sessions"]))
        check("9 guard: no live session lost", (sessions.live, sessions.live),
              (await sessions_live(runner), await sessions_total(runner)))


# ---------------------------------------------------------------- main


# The tests whose batches or deletes walk a table, run in both rounds.
WALKING_TESTS = [
    test_batches_commit,
    test_max_runtime,
    test_terminated,
    test_crashed,
    test_concurrent_runs,
    test_concurrent_functions,
    test_crossing_chains,
    test_row_lock_skipped,
    test_statement_timeout,
]
# The rest look at locks and the missing replaced_by index: one round.
OTHER_TESTS = [test_lock_timeout, test_every_lock_wait_bounded, test_quadratic_guard]


async def main() -> int:
    try:
        rounds = [(False, WALKING_TESTS + OTHER_TESTS), (True, WALKING_TESTS)]
        for time_indexes, test in [(time_indexes, test) for time_indexes, tests in rounds for test in tests]:
            ROUND.time_indexes = time_indexes
            print(f"{'[time indexes] ' if time_indexes else ''}{test.__name__}: {test.__doc__.splitlines()[0]}")
            try:
                await asyncio.wait_for(test(), SCENARIO_LIMIT_S)
            except Exception as error:
                # One broken test must not hide the others' results.
                traceback.print_exc()
                check(test.__name__, "completed", f"{type(error).__name__}: {error}")
    finally:
        status = results.summary()
    return status


if __name__ == "__main__":
    sys.stdout.reconfigure(line_buffering=True)
    sys.exit(asyncio.run(main()))
