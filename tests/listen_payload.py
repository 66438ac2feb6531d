"""Runs one statement while LISTENing on `authfort_cleanup`, and describes
the NOTIFY payload it produced, for tests/suites/cron.sh to check.

usage: listen_payload.py DSN STATEMENT

The listener and the statement use two connections, as an application and
its cron job would. The statement must return one row (keys, tokens,
sessions), e.g. SELECT * FROM authfort_cleanup_all().

Prints key=value lines; the suite compares them with what it expects:
  returned=K,T,S          what the statement returned
  payload_counts=K,T,S    keys/tokens/sessions in the payload
  payload_count_types=... the JSON types of those three (int,int,int)
  status=...              the payload's status
  duration_ms=...         "int>=0" when it is a non-negative JSON integer
  started_at=...          "iso-8601" when it parses as an aware ISO-8601 timestamp
  fields=...              the payload's keys, sorted
"""

import asyncio
import json
import sys
from datetime import datetime

CHANNEL = "authfort_cleanup"
TIMEOUT_S = 10


def json_type(value: object) -> str:
    # bool is a subclass of int in Python; JSON true is not an integer.
    if isinstance(value, bool):
        return "bool"
    return type(value).__name__


def describe_started_at(value: object) -> str:
    if not isinstance(value, str):
        return f"not a string: {value!r}"
    try:
        # fromisoformat accepts a trailing "Z" only from Python 3.11 on.
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return f"unparseable: {value!r}"
    return "iso-8601" if parsed.tzinfo is not None else f"no time zone: {value!r}"


def describe(row: tuple, payload: str) -> list[str]:
    data = json.loads(payload)
    counts = [data.get(name) for name in ("keys", "tokens", "sessions")]
    duration = data.get("duration_ms")
    duration_ok = json_type(duration) == "int" and duration >= 0
    return [
        "returned=" + ",".join(str(value) for value in row),
        "payload_counts=" + ",".join(str(value) for value in counts),
        "payload_count_types=" + ",".join(json_type(value) for value in counts),
        f"status={data.get('status')}",
        "duration_ms=" + ("int>=0" if duration_ok else repr(duration)),
        "started_at=" + describe_started_at(data.get("started_at")),
        "fields=" + ",".join(sorted(data)),
    ]


async def main(dsn: str, statement: str) -> None:
    import asyncpg

    listener = await asyncpg.connect(dsn)
    worker = await asyncpg.connect(dsn)
    payloads: asyncio.Queue[str] = asyncio.Queue()
    try:
        # add_listener has run LISTEN by the time it returns, so the
        # statement below cannot notify before we listen.
        await listener.add_listener(CHANNEL, lambda *args: payloads.put_nowait(args[3]))
        row = await worker.fetchrow(statement)
        payload = await asyncio.wait_for(payloads.get(), TIMEOUT_S)
        for line in describe(tuple(row), payload):
            print(line)
        if not payloads.empty():
            print(f"extra_payloads={payloads.qsize()}")
    finally:
        await worker.close()
        await listener.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
