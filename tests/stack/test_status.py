"""`make status` reads what `make up` recorded and says, per process, whether it still runs what was started."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from stack.processes import process_cmdline
from stack.status import report


def test_status_tells_running_from_stopped(tmp_path):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (tmp_path / "pids.json").write_text(
        json.dumps(
            {
                "pids": {"webhook": os.getpid(), "flow-runner": gone.pid},
                "cmdlines": {"webhook": process_cmdline(os.getpid()), "flow-runner": "python -m flows.serve"},
                "webhook_url": "http://127.0.0.1:9",  # nothing listens on the discard port
                "log_dir": str(tmp_path),
            }
        )
    )
    lines, healthy = report(tmp_path)
    text = "\n".join(lines)
    assert not healthy
    assert f"webhook                pid {os.getpid():<8} en marcha" in text
    assert "flow-runner" in text and "DETENIDO" in text
    assert "no responde" in text


def test_status_without_a_stack_says_how_to_start_it(tmp_path):
    lines, healthy = report(tmp_path)
    assert not healthy and "make up" in lines[0]
