"""The private PostgreSQL of stack/private_postgres.py: started from the wheel, stopped and started again on the same
data and port, gone with its folder afterwards; and the test runner removes its server when interrupted."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from domain.db import make_engine
from stack.private_postgres import _pid_gone, bin_dir, temporary_postgres
from stack.processes import PROJECT_ROOT


def test_stop_and_start_again_keep_data_and_port(private_postgres):
    engine = make_engine(private_postgres.create_database("outage"), connect_args={"connect_timeout": 2})
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE kept (n int)"))
            conn.execute(text("INSERT INTO kept VALUES (1)"))
        port, pid = private_postgres.port, private_postgres.pid

        private_postgres.stop()
        assert _pid_gone(pid) and private_postgres.pid is None
        with pytest.raises(OperationalError):
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))

        private_postgres.start()
        assert private_postgres.port == port and private_postgres.pid != pid
        with engine.connect() as conn:  # the same engine: its pool's dead connections are replaced (pre-ping)
            assert conn.execute(text("SELECT n FROM kept")).scalar_one() == 1
    finally:
        engine.dispose()


def test_immediate_stop_recovers_committed_rows(private_postgres):
    url = private_postgres.create_database("crash")
    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql"), autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (n int)")
        conn.execute("INSERT INTO kept VALUES (2)")
    private_postgres.stop(mode="immediate")  # like a crash: fsync is off, but every commit reached the kernel
    private_postgres.start()
    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql")) as conn:
        assert conn.execute("SELECT n FROM kept").fetchone() == (2,)


def test_loopback_only_with_a_password(private_postgres):
    with psycopg.connect(
        host="127.0.0.1",
        port=private_postgres.port,
        user="postgres",
        password=private_postgres.password,
        dbname="postgres",
    ) as conn:
        settings = dict(
            conn.execute(
                "SELECT name, setting FROM pg_settings WHERE name IN ('listen_addresses', 'unix_socket_directories')"
            ).fetchall()
        )
        assert conn.execute("SHOW server_version").fetchone()[0].startswith("18.")
    assert settings == {"listen_addresses": "127.0.0.1", "unix_socket_directories": ""}
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(
            host="127.0.0.1",
            port=private_postgres.port,
            user="postgres",
            password="wrong",
            dbname="postgres",
            connect_timeout=5,
        )


def test_the_server_and_its_folder_are_gone_after_the_block():
    with temporary_postgres() as server:
        root, pid = server.root, server.pid
        assert (root / "data" / "PG_VERSION").exists() and not _pid_gone(pid)
        assert Path(os.readlink(f"/proc/{pid}/exe")).parent == bin_dir()  # the wheel's, not the machine's
    assert not root.exists() and _pid_gone(pid)


def test_an_interrupted_test_run_stops_and_removes_its_private_server(tmp_path):
    """SIGINT to the runner (not its group): pytest is asked to stop, then the server is stopped and removed."""
    (tmp_path / "test_slow.py").write_text(
        "import time\n\ndef test_slow():\n    print('slow test started', flush=True)\n    time.sleep(120)\n"
    )
    runner = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stack.run_tests",
            "--no-gates",
            "--database",
            "private",
            "--database",
            "sqlite",
            "--",
            "-s",
            str(tmp_path / "test_slow.py"),
        ],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    try:
        for line in runner.stdout:
            lines.append(line)
            if "slow test started" in line:
                break
        ready = next(line for line in lines if "private PostgreSQL" in line and "ready" in line)
        match = re.search(r"private PostgreSQL (\d+) ready .*\((.+)\)", ready)
        pid, root = int(match[1]), Path(match[2])
        assert root.exists() and not _pid_gone(pid)

        started = time.monotonic()
        runner.send_signal(signal.SIGINT)
        output = "".join(lines) + runner.communicate(timeout=60)[0]
    finally:
        if runner.poll() is None:
            os.killpg(runner.pid, signal.SIGKILL)
            runner.wait()
    assert runner.returncode == 128 + signal.SIGINT, output
    assert "KeyboardInterrupt" in output and "suite on SQLite" not in output  # the next run is not started
    assert not root.exists() and _pid_gone(pid), output
    assert time.monotonic() - started < 30
