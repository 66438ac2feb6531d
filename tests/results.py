"""Check lines for the Python suites, as tests/lib.sh prints them: one line
per check, then `N passed, N failed`, which tests/run.sh adds up."""


class Results:
    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0

    def check(self, label: str, ok: bool, detail: str) -> None:
        """Passes when `ok`; `detail` is printed either way."""
        self.passed += ok
        self.failed += not ok
        print(f"  {'ok ' if ok else 'FAIL'} {label}: {detail}")

    def expect(self, label: str, expected, actual) -> None:
        """Like lib.sh's check: passes when expected == actual."""
        if expected == actual:
            self.passed += 1
            print(f"  ok  {label}")
        else:
            self.failed += 1
            print(f"  FAIL {label}: expected [{expected}], got [{actual}]")

    def summary(self) -> int:
        """Prints the closing line; returns the exit status."""
        print(f"{self.passed} passed, {self.failed} failed")
        return 1 if self.failed else 0
