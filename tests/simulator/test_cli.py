"""`python -m simulator` as a real process on loopback."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx

from simulator.server import unused_loopback_url
from tests.simulator.conftest import make_batch

ROOT = Path(__file__).resolve().parents[2]


def test_cli_runs_the_simulator_with_its_flags(receiver):
    url = unused_loopback_url()
    port = url.rsplit(":", 1)[1]
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "simulator",
            "--host",
            "127.0.0.1",
            "--port",
            port,
            "--delay",
            "0.01",
            "--order-scenario",
            "order-1=invalid_city",
            "--unknown-city",
            "X (Y)",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                config = httpx.get(url + "/_sim/config").json()
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and process.poll() is None, "simulator did not start"
                time.sleep(0.05)
        assert config["delay"] == 0.01 and config["order_scenarios"] == {"order-1": "invalid_city"}
        body = make_batch(receiver.url, 2)
        assert httpx.post(url + "/api/crear-pedidos-batch", json=body).status_code == 200
        results = [r.json for r in receiver.wait_for(2)]
        assert [r["status"] for r in results] == ["success", "error"]
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=10)
    assert b"portal-pass-XYZ" not in stderr
