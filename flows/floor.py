"""Prefect's own floor for the latency benchmark (benchmarks/latency_bench.py): two trivial flows served by the same
runner as robotjobs' flows when ROBOTJOBS_SERVE_FLOOR=true. Their code does nothing, so their start-up and resume
are what Prefect costs on this machine and server for a run of that runner. Their processes are `python -m
prefect.engine` like ours (flows/startup.py), which import only this module: the floor leaves out the flows' own
work and their imports (~0.3 s of flows/submit.py's, mostly SQLAlchemy and the domain), which the ratios charge us."""

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
