"""Run the whole test suite once per database (SQLite, then PostgreSQL), as `make test` and CI do.

pytest's exit code 5 ("no tests collected") is reported and treated as a failure of the run: a suite that
collects nothing proves nothing.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", action="append", required=True, help="sqlite or a PostgreSQL server URL")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments")
    args = parser.parse_args()
    failures = 0
    for database in args.database:
        label = "SQLite" if database == "sqlite" else f"PostgreSQL ({database.split('@')[-1]})"
        print(f"\n=== robotjobs test suite on {label} ===", flush=True)
        started = time.monotonic()
        env = {**os.environ, "ROBOTJOBS_TEST_DATABASE": database}
        code = subprocess.call([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args.pytest_args], env=env)
        print(f"=== {label}: pytest exit code {code} in {time.monotonic() - started:.0f} s ===", flush=True)
        if code == 5:
            print("pytest collected no tests: counted as a failure", flush=True)
        failures += code != 0
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
