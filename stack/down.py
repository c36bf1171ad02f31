"""`make down`: stop the processes `make up` started, by the PIDs it recorded, and nothing else."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

from domain.settings import VAR_DIR
from stack.local import pids_file
from stack.private_postgres import stop_postmaster
from stack.processes import process_cmdline


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def is_ours(pid: int | None, expected_cmdline: str) -> bool:
    """The recorded process still runs what we started (a PID may have been reused since `make up`; an interpreter
    may stand before a script's path: `python3 .venv/bin/prefect ...`)."""
    return bool(pid) and _alive(pid) and process_cmdline(pid).strip().endswith(expected_cmdline.strip())


def stop_recorded(state_dir: Path) -> list[str]:
    path = pids_file(state_dir)
    if not path.exists():
        return []
    record = json.loads(path.read_text())
    stopped = []
    # Reverse start order: the runner and flows stop before the servers they call.
    for name, pid in reversed(list(record.get("pids", {}).items())):
        expected = record.get("cmdlines", {}).get(name, "")
        if not is_ours(pid, expected):
            continue
        if name == "postgres":  # the private PostgreSQL of `make up PG=private`: a fast shutdown, by its PID
            stop_postmaster(pid)
            stopped.append(name)
            continue
        try:
            os.killpg(pid, signal.SIGTERM)  # each process leads its own group (start_new_session)
        except ProcessLookupError:
            continue
        for _ in range(100):
            if not _alive(pid):
                break
            time.sleep(0.1)
        else:
            os.killpg(pid, signal.SIGKILL)
        stopped.append(name)
    path.unlink()
    return stopped


def main() -> int:
    stopped = stop_recorded(VAR_DIR / "stack")
    print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
