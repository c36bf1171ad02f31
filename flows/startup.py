"""A flow-run process's start: importing this module pauses Python's cyclic garbage collector until the importing
flow module says its imports are done (`imports_done`).

Every flow run is a fresh process (`python -m prefect.engine`) that imports its flow module before the run's first
step, so those imports sit on the click → robot and the last result → `Completed` paths. They create ~30,000
long-lived objects (SQLAlchemy, the models, pydantic), and the collector's full passes over everything already
loaded (Prefect's own ~160,000 objects) cost about 130 ms of the 400 ms the imports take (BENCHMARKS.md). Nothing
those imports create is garbage worth collecting; once they are done, `gc.freeze()` moves them out of later
collections during the run, and collection resumes.
"""

from __future__ import annotations

import gc

_was_enabled = gc.isenabled()
gc.disable()


def imports_done() -> None:
    """Resume collection (if it was on), with everything imported so far frozen out of it. Idempotent."""
    global _was_enabled
    if _was_enabled:
        _was_enabled = False
        gc.freeze()
        gc.enable()
