"""What the Python client programs share: what tests/clients/seed.sql sets up,
what the server must say about it, and the check lines they print for
tests/suites/clients.sh to count."""

EXPECTED = {"keys": 2, "tokens": 3, "sessions": 4}  # what SEED_SQL makes deletable
LIVE = "2|2|2"  # rows left after a cleanup: keys|tokens|sessions
SEEDED = "4|5|6"  # rows SEED_SQL inserts
NOTICE_SUBSTRING = "rows of sessions deleted so far"
HINT_SUBSTRINGS = ["autocommit", "authfort_cleanup_all()"]
NOTIFY_TIMEOUT_SECONDS = 5  # to wait for the NOTIFY; it is sent at the run's end


class Checks:
    """One "  ok  CLIENT: NAME" or "  FAIL CLIENT: NAME: ..." line per check,
    and the count of failures for the exit status."""

    def __init__(self, client: str) -> None:
        self.client = client
        self.failures = 0

    def check(self, name: str, expected: object, actual: object) -> None:
        if expected == actual:
            print(f"  ok  {self.client}: {name}")
        else:
            self.failures += 1
            print(f"  FAIL {self.client}: {name}: expected [{expected!r}], got [{actual!r}]")

    def check_contains(self, name: str, substrings: list[str], actual: str | None) -> None:
        found = actual is not None and all(s in actual for s in substrings)
        self.check(name, substrings, substrings if found else actual)


def is_int(value: object) -> bool:
    # bool is a subclass of int; a count must be a real int.
    return type(value) is int
