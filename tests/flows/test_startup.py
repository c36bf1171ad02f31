"""Which processes count as a flow run's (flows/startup.py): they alone start the warm-up thread."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from flows.startup import in_flow_run_process

ROOT = Path(__file__).resolve().parents[2]


def test_a_spawn_child_of_the_runner_is_a_flow_run_process_and_the_runner_is_not(tmp_path):
    out = tmp_path / "seen.txt"
    env = {k: v for k, v in os.environ.items() if k != "PREFECT__FLOW_RUN_ID"}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, "-m", "tests.flows.spawn_probe", str(out)], cwd=ROOT, env=env, timeout=120, check=False
    )
    assert done.returncode == 0
    seen = [line.split() for line in out.read_text().splitlines()]
    assert [(name, verdict) for _, name, verdict in seen] == [("__main__", "False"), ("__mp_main__", "True")]
    assert seen[0][0] != seen[1][0]  # two processes


def test_a_process_workers_run_is_known_by_its_environment(monkeypatch):
    monkeypatch.delenv("PREFECT__FLOW_RUN_ID", raising=False)
    assert not in_flow_run_process()  # pytest: neither a worker's run nor the runner's child
    monkeypatch.setenv("PREFECT__FLOW_RUN_ID", "0b4f0d6c-94a4-4a8b-8a53-6f4c0f7c2f55")
    assert in_flow_run_process()
