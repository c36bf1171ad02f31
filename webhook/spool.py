"""This host's durable inbox on disk: raw callbacks the database could not take, one fsync'd file each.

A spool entry is written atomically (temp file, fsync, rename, fsync of the directory), so after a 202 the request
survives a crash of the process or of the machine. Entry names sort by arrival: `<time_ns>-<pid>-<random>.req`.
The file holds a magic line, one JSON line (arrival time, the headers that authenticate the request, body length and
SHA-256) and the body bytes as received. Only the replayer (webhook/inbox.py) deletes entries, under an exclusive
`flock` of `replay.lock`, so one process of the host replays at a time. Nothing here knows Flask or the database.

The directory belongs to one host: on several hosts each one spools and replays its own.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import secrets
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

# Only what authenticating and parsing the request needs at replay: never cookies, proxies' headers or the like.
KEPT_HEADERS = ("X-Callback-Secret", "webhook-id", "webhook-timestamp", "webhook-signature", "Content-Type")

_MAGIC = b"robotjobs-spool 1\n"
_SUFFIX = ".req"
_TEMP_PREFIX = ".tmp-"
_LOCK_NAME = "replay.lock"
HELD_DIR = "held"


class SpoolFull(Exception):
    """The spool reached its size bound: the caller answers 503 with Retry-After, as when there was no spool."""


class SpoolCorrupt(Exception):
    """An entry that does not parse (it cannot come from `write`: a disk fault or a hand edit)."""


@dataclass(frozen=True)
class SpooledRequest:
    name: str
    received_at: float  # Unix seconds at arrival: the clock of signature checks at replay
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class SpoolStats:
    entries: int
    bytes: int
    oldest_age_s: float | None
    held: int


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def kept_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The subset of `headers` a spool entry keeps (present ones only, canonical names)."""
    kept = {}
    for name in KEPT_HEADERS:
        value = headers.get(name)
        if value is not None:
            kept[name] = value
    return kept


class Spool:
    """`write()` an accepted request, `has_entries()` cheaply, `names()` in arrival order, `read()`, `delete()`."""

    def __init__(self, directory: Path | str, *, max_bytes: int):
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self._ready = False

    # -- writing ---------------------------------------------------------------------------------------------
    def _ensure_dir(self) -> None:
        if not self._ready:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._ready = True

    def write(self, headers: Mapping[str, str], body: bytes, *, received_at: float | None = None) -> str:
        """Spool one request durably and return the entry's name; SpoolFull when over the bound."""
        self._ensure_dir()
        size = len(body) + 1024  # headers and framing, roughly
        if self.usage_bytes() + size > self.max_bytes:
            raise SpoolFull(f"spool holds {self.usage_bytes()} bytes, bound {self.max_bytes}")
        now_ns = time.time_ns()
        received = received_at if received_at is not None else now_ns / 1e9
        name = f"{now_ns:020d}-{os.getpid():07d}-{secrets.token_hex(6)}{_SUFFIX}"
        meta = {
            "received_at": received,
            "headers": kept_headers(headers),
            "body_bytes": len(body),
            "body_sha256": hashlib.sha256(body).hexdigest(),
        }
        temp = self.directory / f"{_TEMP_PREFIX}{name}"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(_MAGIC + json.dumps(meta, separators=(",", ":")).encode() + b"\n" + body)
                out.flush()
                os.fsync(out.fileno())
            os.rename(temp, self.directory / name)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        _fsync_dir(self.directory)  # the rename itself is durable only once the directory is
        return name

    # -- reading ---------------------------------------------------------------------------------------------
    def has_entries(self) -> bool:
        """Whether any entry waits: one directory scan that stops at the first entry (a few µs when empty)."""
        try:
            with os.scandir(self.directory) as scan:
                return any(entry.name.endswith(_SUFFIX) and not entry.name.startswith(".") for entry in scan)
        except FileNotFoundError:
            return False

    def names(self) -> list[str]:
        """Every waiting entry, oldest first."""
        try:
            with os.scandir(self.directory) as scan:
                return sorted(e.name for e in scan if e.name.endswith(_SUFFIX) and not e.name.startswith("."))
        except FileNotFoundError:
            return []

    def read(self, name: str) -> SpooledRequest:
        data = (self.directory / name).read_bytes()
        if not data.startswith(_MAGIC):
            raise SpoolCorrupt(f"{name}: not a spool entry")
        head, sep, body = data[len(_MAGIC) :].partition(b"\n")
        try:
            meta = json.loads(head)
        except ValueError as exc:
            raise SpoolCorrupt(f"{name}: bad header: {exc}") from None
        if (
            not sep
            or len(body) != meta.get("body_bytes")
            or hashlib.sha256(body).hexdigest() != meta.get("body_sha256")
        ):
            raise SpoolCorrupt(f"{name}: body length or checksum mismatch")
        return SpooledRequest(
            name=name, received_at=float(meta["received_at"]), headers=dict(meta["headers"]), body=body
        )

    def delete(self, name: str) -> None:
        """Remove a replayed entry, durably (else a crash could bring it back: harmless, as replay is receipted)."""
        (self.directory / name).unlink(missing_ok=True)
        _fsync_dir(self.directory)

    def hold(self, name: str) -> None:
        """Move an entry out of the queue into `held/` (replay kept failing for a reason we do not know)."""
        held = self.directory / HELD_DIR
        held.mkdir(mode=0o700, exist_ok=True)
        os.rename(self.directory / name, held / name)
        _fsync_dir(self.directory)
        _fsync_dir(held)

    def release_held(self) -> int:
        """Put every held entry back in the queue (by its arrival name); the count moved."""
        held = self.directory / HELD_DIR
        moved = 0
        for path in sorted(held.glob(f"*{_SUFFIX}")) if held.is_dir() else []:
            os.rename(path, self.directory / path.name)
            moved += 1
        if moved:
            _fsync_dir(self.directory)
        return moved

    def remove_stale_temp_files(self, older_than_s: float = 300) -> int:
        """Temp files of writes that died before their rename (never acknowledged): safe to delete."""
        removed = 0
        cutoff = time.time() - older_than_s
        try:
            with os.scandir(self.directory) as scan:
                for entry in scan:
                    if entry.name.startswith(_TEMP_PREFIX) and entry.stat().st_mtime < cutoff:
                        os.unlink(entry.path)
                        removed += 1
        except FileNotFoundError:
            pass
        return removed

    # -- state -----------------------------------------------------------------------------------------------
    def usage_bytes(self) -> int:
        return self.stats().bytes

    def stats(self, *, now: float | None = None) -> SpoolStats:
        count, total, oldest = 0, 0, None
        try:
            with os.scandir(self.directory) as scan:
                for entry in scan:
                    if entry.name.startswith(_TEMP_PREFIX) or entry.name.endswith(_SUFFIX):
                        try:
                            total += entry.stat().st_size
                        except FileNotFoundError:  # replayed and deleted meanwhile
                            continue
                    if entry.name.endswith(_SUFFIX) and not entry.name.startswith("."):
                        count += 1
                        arrived = int(entry.name.split("-", 1)[0]) / 1e9
                        oldest = arrived if oldest is None else min(oldest, arrived)
        except FileNotFoundError:
            pass
        held_dir = self.directory / HELD_DIR
        held = len(list(held_dir.glob(f"*{_SUFFIX}"))) if held_dir.is_dir() else 0
        age = None if oldest is None else max(0.0, (now if now is not None else time.time()) - oldest)
        return SpoolStats(entries=count, bytes=total, oldest_age_s=age, held=held)

    # -- one replayer per host -------------------------------------------------------------------------------
    @contextmanager
    def replay_lock(self, *, wait: bool = False) -> Iterator[bool]:
        """An exclusive flock on `replay.lock`: yields True when held (False when another process replays).
        Released on exit, and by the kernel when the holder dies."""
        self._ensure_dir()
        fd = os.open(self.directory / _LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def someone_replays(self) -> bool:
        """Whether a process holds the replay lock (a non-blocking probe, released at once)."""
        with self.replay_lock() as acquired:
            return not acquired
