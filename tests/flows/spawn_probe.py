"""Run as `python -m tests.flows.spawn_probe OUT`: a stand-in for the `serve` runner's main module. It starts one
`spawn` child, as Prefect's runner does for each served flow run, and both write what `in_flow_run_process` says
while this module is being imported (the child imports it as `__mp_main__`, before its target runs)."""

from __future__ import annotations

import multiprocessing
import os
import sys

from flows.startup import in_flow_run_process

SEEN = f"{os.getpid()} {__name__} {in_flow_run_process(runner_main='tests.flows.spawn_probe')}\n"


def child(out: str) -> None:
    with open(out, "a", encoding="utf-8") as f:
        f.write(SEEN)


if __name__ == "__main__":
    out = sys.argv[1]
    with open(out, "a", encoding="utf-8") as f:
        f.write(SEEN)
    process = multiprocessing.get_context("spawn").Process(target=child, args=(out,))
    process.start()
    process.join(60)
    raise SystemExit(process.exitcode)
