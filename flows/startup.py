"""A flow-run process's start: importing this module pauses Python's cyclic garbage collector until the importing
flow module says its imports are done (`imports_done`), which also starts the run's warm-up.

Every flow run is a fresh process that imports its flow module before the run's first step: `python -m
prefect.engine`, started by a process worker or by our `serve` runner alike (`serve(*deployments)` registers
deployments, not flow objects, so the runner starts the engine, which loads the entrypoint: seen with py-spy, 16 of
16 flow-run processes of a latency_bench run, 2026-12-05). A runner given the flow objects (`Flow.serve`,
`Runner.add_flow`) would start `spawn` children instead, which import the runner's main module as `__mp_main__`.
Either way those imports sit on the click → robot and the last result → `Completed` paths. They create ~30,000
long-lived objects (SQLAlchemy, the models, pydantic), and the collector's full passes over everything already
loaded (Prefect's own ~160,000 objects) cost about 130 ms of the 400 ms the imports take (BENCHMARKS.md). Nothing
those imports create is garbage worth collecting; once they are done, `gc.freeze()` moves them out of later
collections during the run, and collection resumes.

After the imports, Prefect's engine spends ~150–200 ms before the flow's first line (its client, the `Running`
proposal, its log and event workers), much of it waiting on the Prefect API. The warm-up does the first step's own
start-up in that wait, on a background thread (BENCHMARKS.md, #11).
"""

from __future__ import annotations

import gc
import os
import sys
import threading
from collections.abc import Callable

_was_enabled = gc.isenabled()
gc.disable()


RUNNER_MAIN = "flows.serve"


def in_flow_run_process(runner_main: str = RUNNER_MAIN) -> bool:
    """`python -m prefect.engine` (a process worker's runs, and our `serve` runner's) has the run's id in its
    environment; a runner holding flow objects would pass the run to a `spawn` child instead, whose environment has
    no id while it imports the runner's main module as `__mp_main__`. The runner itself (flows.serve is its
    `__main__`), the tests and the CLI import the same modules as neither."""
    if os.environ.get("PREFECT__FLOW_RUN_ID"):
        return True
    mp_main = sys.modules.get("__mp_main__")
    spec = getattr(mp_main, "__spec__", None)
    return mp_main is not sys.modules.get("__main__") and getattr(spec, "name", None) == runner_main


def imports_done(warm_up: Callable[[], object] | None = None) -> None:
    """Resume collection (if it was on), with everything imported so far frozen out of it; then, in a flow-run
    process only, run `warm_up` on a daemon thread. Idempotent."""
    global _was_enabled
    if _was_enabled:
        _was_enabled = False
        gc.freeze()
        gc.enable()
        if warm_up is not None and in_flow_run_process():
            threading.Thread(target=warm_up, name="robotjobs-warm-up", daemon=True).start()
