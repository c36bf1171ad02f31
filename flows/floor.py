"""Prefect's own floor for the latency benchmark (benchmarks/latency_bench.py): two trivial flows served by the same
runner as robotjobs' flows when ROBOTJOBS_SERVE_FLOOR=true. Their code does nothing, so their start-up and resume
are what Prefect costs on this machine and server for a run of that runner. Their processes are the runner's
`spawn` children like ours: they import the runner's main module (flows.serve, so robotjobs' flow modules) and run
its warm-up thread (flows/startup.py) too; what the floor leaves out is the flows' own work."""

from __future__ import annotations

from prefect import flow
from prefect.flow_runs import suspend_flow_run
from prefect.input import RunInput

FLOOR_START = "floor-start"
FLOOR_RESUME = "floor-resume"


class FloorInput(RunInput):
    note: str = "resume"


@flow(name=FLOOR_START, persist_result=False)
def floor_start() -> None:
    """A run that starts and ends: its creation → Running is Prefect's start-up floor."""


@flow(name=FLOOR_RESUME, persist_result=False)
def floor_resume() -> None:
    """A run that suspends once: its resume → Completed is Prefect's resume floor."""
    suspend_flow_run(wait_for_input=FloorInput, timeout=600, key="floor")
