"""The production topology, end to end (issue 11): 20 batches in 20 workspaces submitted at once, as operators do
from the Prefect UI, through a Prefect server on PostgreSQL, two process workers, the webhook under gunicorn
(4 workers) and the domain on PostgreSQL (tests/e2e/topology.py). Every batch ends with exact counts, one dispatch,
one summary, and no flow run of the batch left waiting.

Asserted on the database and on Prefect's run states only, never on how many flow runs a batch takes.
Figures (submit, all finished, per-batch dispatch latency) go to the log folder's figures.txt and stdout.
"""

from __future__ import annotations

import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from domain.db import UnitOfWork
from domain.events import ROBOT_COORD_COMPLETED
from domain.models import Workspace
from flows.deployments import RECONCILE, SUBMIT
from relay.artifacts import summary_key
from sample_data.seed import STAGE_NAMES
from stack.processes import PROJECT_ROOT
from tests.e2e.helpers import events, items, jobs_of, seed_workspace, wait_for
from tests.e2e.topology import WORKERS, Topology, start_topology

pytestmark = pytest.mark.e2e

BATCHES = 20
WAIT_S = 900  # from the submit to every run ended
DISPATCH_STAGE = STAGE_NAMES[2]  # "Por despachar": seed_demo's dispatch stage, holding the seeded orders
FINAL_TYPES = {"COMPLETED", "FAILED", "CANCELLED", "CRASHED"}


@pytest.fixture(scope="module")
def topology(tmp_path_factory) -> Topology:
    log_dir = Path(os.environ.get("ROBOTJOBS_E2E_LOG_DIR") or PROJECT_ROOT / "var" / "e2e-logs") / (
        time.strftime("%Y%m%d-%H%M%S") + "-topology"
    )
    yield from start_topology(tmp_path_factory.mktemp("topology"), log_dir)


def submit_parameters(workspace: Workspace) -> dict:
    """What an operator fills in the UI form of submit-robot-job (flows/submit.py): the workspace and its stage by
    name (the seeded orders are exactly its dispatch stage's)."""
    return {"workspace": workspace.name, "stage": DISPATCH_STAGE}


def record(topology: Topology, name: str, value: float, unit: str = "s") -> None:
    line = f"{name}\t{value:.1f} {unit}"
    print(line, flush=True)
    with open(topology.log_dir / "figures.txt", "a", encoding="utf-8") as out:
        out.write(line + "\n")


# Each batch starts at least two flow-run processes (its start and its resume; each ~8 CPU-s of Python start-up
# and work): 3-5 min alone on 2 cores, about 10 min when other test runs share them.
@pytest.mark.timeout(1500)
def test_twenty_batches_at_once_on_the_production_topology(topology):
    # One order in every fifth batch is refused by the portal: those batches end completed with one error.
    batches = []
    for n in range(BATCHES):
        workspace_id, order_ids = seed_workspace(topology, 2 + n % 3)
        error_order = order_ids[0] if n % 5 == 0 else None
        batches.append((workspace_id, order_ids, error_order))
    topology.configure_simulator(order_scenarios={b[2]: "invalid_city" for b in batches if b[2]})

    with topology.api() as api:
        deployments = {d["name"]: d["id"] for d in api.post("/deployments/filter", json={}).json()}
        submit_id = deployments[SUBMIT]

        with UnitOfWork(topology.engine, readonly=True) as uow:
            forms = [(b[0], submit_parameters(uow.session.get(Workspace, b[0]))) for b in batches]

        def create_run(form: tuple[str, dict]) -> tuple[str, float]:
            at = time.time()
            response = api.post(f"/deployments/{submit_id}/create_flow_run", json={"parameters": form[1]})
            assert response.status_code == 201, (response.status_code, response.text, form[1])
            return form[0], at

        started = time.monotonic()
        with ThreadPoolExecutor(BATCHES) as pool:  # at once: 20 operators clicking "Run" together
            submitted_at = dict(pool.map(create_run, forms))
        record(topology, "topology: 20 runs created", time.monotonic() - started)

        def all_finished():
            jobs = [jobs_of(topology, b[0]) for b in batches]
            return all(len(j) == 1 and j[0].status in ("completed", "failed") for j in jobs) and jobs

        jobs = [j[0] for j in wait_for(all_finished, timeout_s=WAIT_S, every_s=1, what="20 batches to finish")]
        record(topology, "topology: submit → all 20 jobs finished", time.monotonic() - started)

        batch_ids = [i for name, i in deployments.items() if name != RECONCILE]

        def batch_runs():
            return api.post(
                "/flow_runs/filter", json={"flow_runs": {"deployment_id": {"any_": batch_ids}}, "limit": 200}
            ).json()

        try:
            runs = wait_for(
                lambda: (found := batch_runs()) and all(r["state_type"] in FINAL_TYPES for r in found) and found,
                timeout_s=WAIT_S + started - time.monotonic(),
                every_s=1,
                what="every batch flow run to end",
            )
        except AssertionError as timed_out:
            waiting = sorted((r["name"], r["state_name"]) for r in batch_runs() if r["state_type"] not in FINAL_TYPES)
            raise AssertionError(f"{timed_out}; still waiting: {waiting}") from None
        record(topology, "topology: submit → every batch run ended", time.monotonic() - started)

        # Exact counts: every item terminal, success + error = total, one coord event per success.
        for (_, order_ids, error_order), job in zip(batches, jobs, strict=True):
            errors = 1 if error_order else 0
            assert (job.status, job.total_items, job.success_count, job.error_count) == (
                "completed",
                len(order_ids),
                len(order_ids) - errors,
                errors,
            ), job
            job_items = items(topology, job.id)
            assert sorted(i.order_id for i in job_items) == sorted(order_ids)
            assert all(i.status in ("success", "error") for i in job_items)
            assert [i.order_id for i in job_items if i.status == "error"] == ([error_order] if error_order else [])
            assert len(events(topology, ROBOT_COORD_COMPLETED, job.id)) == job.success_count

        # Exactly one dispatch per job reached the robot.
        state = topology.simulator_state()
        assert state["posts"] == {job.id: 1 for job in jobs}
        dispatched_at = {d["jobId"]: d["at"] for d in state["dispatches"]}
        latencies = [dispatched_at[job.id] - submitted_at[job.workspace_id] for job in jobs]
        record(topology, "topology: click → robot dispatch, median", statistics.median(latencies))
        record(topology, "topology: click → robot dispatch, max", max(latencies))

        # Exactly one summary artifact per job (no republished version either).
        for job in jobs:
            found = api.post("/artifacts/filter", json={"artifacts": {"key": {"any_": [summary_key(job.id)]}}}).json()
            assert len(found) == 1, (job.id, found)
            latest = api.post(
                "/artifacts/latest/filter", json={"artifacts": {"key": {"any_": [summary_key(job.id)]}}}
            ).json()
            assert len(latest) == 1 and latest[0]["data"], job.id

        # No run of the batch deployments waits; each Completed (none of these batches legitimately fails), and
        # each job's run among them.
        assert {r["state_type"] for r in runs} == {"COMPLETED"}, sorted(
            (r["name"], r["state_name"], (r["state"] or {}).get("message"))
            for r in runs
            if r["state_type"] != "COMPLETED"
        )
        run_ids = {r["id"] for r in runs}
        assert {job.flow_run_id for job in jobs} <= run_ids

        # Both workers took runs, and every run was started by one of them.
        taken = {worker.name: topology.runs_submitted_by(worker) for worker in topology.workers}
        assert set(taken) == set(WORKERS)
        assert all(taken.values()), {name: len(ids) for name, ids in taken.items()}
        assert run_ids <= set().union(*taken.values())
        print({name: len(ids & run_ids) for name, ids in taken.items()}, flush=True)

        # The every-minute reconciler is deployed with its schedule; none of its runs failed.
        reconcile_runs = api.post(
            "/flow_runs/filter", json={"flow_runs": {"deployment_id": {"any_": [deployments[RECONCILE]]}}, "limit": 50}
        ).json()
        assert not [r for r in reconcile_runs if r["state_type"] in ("FAILED", "CRASHED")], reconcile_runs
