"""The spool on disk: atomic and durable writes, arrival order, the bound, corrupt entries, one replayer per host."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap

import pytest

from webhook.spool import Spool, SpoolFull, kept_headers


@pytest.fixture
def spool(tmp_path):
    return Spool(tmp_path / "spool", max_bytes=1024 * 1024)


HEADERS = {"X-Callback-Secret": "s3cret", "Content-Type": "application/json", "Cookie": "no", "User-Agent": "node"}


def test_write_is_temp_fsync_rename_then_directory_fsync(spool, monkeypatch):
    calls = []
    real_fsync, real_rename = os.fsync, os.rename

    def fsync(fd):
        kind = "dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file"
        calls.append(("fsync", kind))
        real_fsync(fd)

    def rename(src, dst):
        calls.append(("rename", os.path.basename(src).startswith(".tmp-")))
        real_rename(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "rename", rename)
    name = spool.write(HEADERS, b'{"itemId":"itm_1"}')
    assert calls == [("fsync", "file"), ("rename", True), ("fsync", "dir")]
    path = spool.directory / name
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(spool.directory.stat().st_mode) == 0o700
    assert sorted(p.name for p in spool.directory.iterdir()) == [name]  # no temp file left
    entry = spool.read(name)
    # Only what authenticates and parses the request is kept.
    assert entry.headers == {"X-Callback-Secret": "s3cret", "Content-Type": "application/json"}
    assert entry.body == b'{"itemId":"itm_1"}'


def test_a_failed_write_leaves_nothing_behind(spool, monkeypatch):
    def broken(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(OSError):
        spool.write(HEADERS, b"{}")
    monkeypatch.undo()
    assert list(spool.directory.iterdir()) == [] and not spool.has_entries()


def test_names_sort_by_arrival_and_bodies_are_bytes_exactly(spool):
    bodies = [f'{{"n":{n},"x":"ñ\\u00e9"}}'.encode() + bytes([n % 256]) for n in range(60)]
    names = [spool.write({}, body) for body in bodies]
    assert spool.names() == names  # arrival order, whatever the random suffix
    assert [spool.read(name).body for name in spool.names()] == bodies
    assert spool.has_entries() and spool.stats().entries == 60


def test_the_bound_refuses_and_writes_nothing(tmp_path):
    spool = Spool(tmp_path / "spool", max_bytes=4096)
    spool.write({}, b"x" * 1500)
    with pytest.raises(SpoolFull):
        spool.write({}, b"x" * 2000)
    assert spool.stats().entries == 1


def test_temp_files_are_not_entries_and_stale_ones_are_removed(spool):
    spool.write({}, b"{}")
    stray = spool.directory / ".tmp-00000000000000000001-0000001-abc.req"
    stray.write_bytes(b"half")
    os.utime(stray, (0, 0))
    assert len(spool.names()) == 1
    assert spool.remove_stale_temp_files() == 1 and not stray.exists()


def test_a_corrupt_entry_is_detected(spool):
    name = spool.write({}, b'{"itemId":"a"}')
    path = spool.directory / name
    path.write_bytes(path.read_bytes()[:-2])
    from webhook.spool import SpoolCorrupt

    with pytest.raises(SpoolCorrupt):
        spool.read(name)
    spool.hold(name)
    assert spool.names() == [] and spool.stats().held == 1
    assert spool.release_held() == 1 and spool.names() == [name]


def test_kept_headers_are_case_insensitive_with_werkzeug_headers():
    from werkzeug.datastructures import Headers

    headers = Headers([("x-callback-secret", "a"), ("WEBHOOK-ID", "msg_1"), ("Authorization", "Bearer no")])
    assert kept_headers(headers) == {"X-Callback-Secret": "a", "webhook-id": "msg_1"}


def test_one_replayer_per_host_across_processes(spool):
    """The flock excludes another open of the lock file, in this process or another one."""
    with spool.replay_lock() as first:
        assert first
        with spool.replay_lock() as second:
            assert not second
        assert spool.someone_replays()
    assert not spool.someone_replays()

    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
            import sys, time
            from webhook.spool import Spool
            with Spool({str(spool.directory)!r}, max_bytes=1).replay_lock() as held:
                print(held, flush=True)
                sys.stdin.readline()
        """),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    )
    try:
        assert holder.stdout.readline().strip() == "True"
        assert spool.someone_replays()
        with spool.replay_lock() as mine:
            assert not mine
    finally:
        holder.communicate("\n", timeout=10)
    assert not spool.someone_replays()  # released when its holder ends
