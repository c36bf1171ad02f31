"""`submit --wait` / `retry --wait`: the batch of the run the CLI started, a live progress line, then the summary.

A fake Prefect (FakePrefect: deployments that "run" by writing the database as the flows would, one step per poll)
and a fake clock drive the CLI's real follow loop against a real database.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import pytest
from cryptography.fernet import Fernet

from cli.deployments import RunState, TriggeredRun
from cli.follow import Progress, ProgressLine, bar
from cli.main import main
from domain.batches import jobs
from domain.batches.results import ItemResult, record_batch_results
from sample_data.seed import seed_demo


class FakeClock:
    def __init__(self, on_sleep: Callable[[], None] = lambda: None):
        self.now, self.on_sleep = 0.0, on_sleep

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.on_sleep()


class FakePrefect:
    """Deployments whose triggered run plays `steps` (one per poll of the CLI); the run's state and artifacts as set."""

    def __init__(self, steps: list[Callable[[], None]] | None = None, *, run_id: str = "run-ours"):
        self.run_id, self.steps = run_id, list(steps or [])
        self.state: RunState | None = RunState(name="Running", final=False)
        self.artifact_jobs: list[str] = []
        self.calls: list[tuple[str, dict]] = []

    def trigger(self, deployment, parameters):
        self.calls.append((deployment, parameters))
        return TriggeredRun(flow_run_id=self.run_id, ui_url=f"http://127.0.0.1:4200/runs/flow-run/{self.run_id}")

    def run_state(self, flow_run_id):
        assert flow_run_id == self.run_id
        return self.state

    def jobs_named_by(self, flow_run_id):
        assert flow_run_id == self.run_id
        return list(self.artifact_jobs)

    def tick(self) -> None:
        if self.steps:
            self.steps.pop(0)()


@pytest.fixture
def demo(uow):
    with uow() as tx:
        demo = seed_demo(tx.session, credentials_key=Fernet.generate_key().decode())
        tx.commit()
    return demo


def create_job(uow, demo, orders, *, flow_run_id, key=None):
    with uow() as tx:
        job = jobs.create_robot_job(
            tx.session, workspace_id=demo.workspace_id, order_ids=orders, idempotency_key=key
        ).job
        jobs.start_job(tx.session, job.id, flow_run_id=flow_run_id)
        tx.commit()
        return job.id


def result(uow, job_id, index, status):
    with uow() as tx:
        item = jobs.get_job_view(tx.session, job_id).items[index].item
        outcome = (
            ItemResult(item_id=item.id, status="success", tracking_number=f"9{index:04d}")
            if status == "ok"
            else ItemResult(
                item_id=item.id, status="error", error_type="portal", error_message="No se encontró el municipio"
            )
        )
        record_batch_results(tx.session, job_id, [outcome])
        tx.commit()


def run_cli(argv, database_url, prefect):
    out, clock = io.StringIO(), FakeClock(prefect.tick)
    code = main(argv, out=out, deployments=prefect, database_url=database_url, clock=clock, sleep=clock.sleep)
    return code, out.getvalue()


def test_submit_wait_follows_the_batch_its_run_created_not_the_latest_of_the_workspace(uow, demo, database_url):
    # Another operator's batch of the same workspace finished a moment ago: the old "latest job" guess took it.
    other = create_job(uow, demo, demo.order_ids[3:4], flow_run_id="run-other")
    result(uow, other, 0, "error")
    ours: list[str] = []
    prefect = FakePrefect()
    prefect.steps = [
        lambda: None,  # our run is slow to create its batch
        lambda: ours.append(create_job(uow, demo, demo.order_ids[:3], flow_run_id=prefect.run_id)),
        lambda: result(uow, ours[0], 0, "ok"),
        lambda: result(uow, ours[0], 1, "ok"),
        lambda: result(uow, ours[0], 2, "error"),
    ]
    code, text = run_cli(["submit", "--workspace", demo.workspace_id, "--wait"], database_url, prefect)
    assert code == 0, text
    assert f"Lote {ours[0]}" in text and other not in text
    # Not a TTY: plain progress lines, then the summary of OUR batch.
    assert "Avance: 0/3 pedidos (0 %)  0 creados  0 con error  [en proceso]" in text
    assert text.rstrip().endswith("Exitosos: 2  Con error: 1  Total: 3")
    assert text.index("Avance: 3/3 pedidos (100 %)  2 creados  1 con error  [completado]") < text.index(
        "✅ 2 pedido(s)"
    )


def test_retry_wait_accepts_the_batch_the_run_names_and_exits_non_zero_when_it_failed(uow, demo, database_url):
    # Today's retry run hands its batch to another run (its own flow_run_id): the run's artifacts name the batch.
    job = create_job(uow, demo, demo.order_ids[:2], flow_run_id="run-orchestrate")
    prefect = FakePrefect(
        [lambda: result(uow, job, 0, "error"), lambda: result(uow, job, 1, "error")], run_id="run-retry"
    )
    prefect.artifact_jobs = [job]
    code, text = run_cli(["retry", "some-old-job", "--wait"], database_url, prefect)
    assert code == 1
    assert f"Lote {job}" in text and "Exitosos: 0  Con error: 2  Total: 2" in text and "Lote fallido." in text


def test_submit_wait_takes_the_batch_of_its_idempotency_key(uow, demo, database_url):
    job = create_job(uow, demo, demo.order_ids[:1], flow_run_id="run-first", key="k-7")
    prefect = FakePrefect([lambda: result(uow, job, 0, "ok")])
    code, text = run_cli(["submit", "--workspace", demo.workspace_id, "--key", "k-7", "--wait"], database_url, prefect)
    assert code == 0 and f"Lote {job}" in text and "Exitosos: 1  Con error: 0  Total: 1" in text


def test_a_run_that_ends_without_a_batch_says_why_and_fails(demo, database_url):
    prefect = FakePrefect()
    prefect.state = RunState(name="Failed", final=True, message="Workspace desconocido: «Tienda X»")
    code, text = run_cli(["submit", "--workspace", "Tienda X", "--wait"], database_url, prefect)
    assert code == 1
    assert "La ejecución terminó (Failed) sin un lote: Workspace desconocido: «Tienda X»" in text


def test_a_batch_still_running_at_the_timeout_fails_and_names_the_batch(uow, demo, database_url):
    job = create_job(uow, demo, demo.order_ids[:2], flow_run_id="run-ours")
    code, text = run_cli(
        ["submit", "--workspace", demo.workspace_id, "--wait", "--timeout", "30"],
        database_url,
        FakePrefect([lambda: result(uow, job, 0, "ok")]),
    )
    assert code == 1
    assert f"El lote no terminó en 30 s; siga su avance con `robotjobs status {job}`." in text
    assert "Avance: 1/2 pedidos (50 %)  1 creados  0 con error  [en proceso]" in text


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_one_line_is_redrawn_in_place():
    out = Tty()
    line = ProgressLine(out, tty=True)
    for done in range(4):
        line.update(Progress(status="processing", done=done, total=3, success=done, error=0))
    line.update(Progress(status="processing", done=3, total=3, success=3, error=0))  # unchanged: not redrawn
    line.finish()
    text = out.getvalue()
    assert text.count("\r") == 4 and text.count("\n") == 1 and text.endswith("\n")
    last = text.split("\r")[-1]
    assert last == f"[{bar(3, 3)}] 3/3 pedidos (100 %)  3 creados  0 con error  [en proceso]\n"


def test_without_a_terminal_lines_are_periodic_and_the_last_state_is_always_printed():
    out, clock = io.StringIO(), FakeClock()
    line = ProgressLine(out, tty=False, clock=clock, every_s=10)
    for done in range(6):  # one result a second
        line.update(Progress(status="processing", done=done, total=20, success=done, error=0))
        clock.sleep(1)
    clock.sleep(10)
    line.update(Progress(status="processing", done=9, total=20, success=8, error=1))
    line.update(Progress(status="completed", done=20, total=20, success=18, error=2))
    line.finish()
    assert out.getvalue().splitlines() == [
        "Avance: 0/20 pedidos (0 %)  0 creados  0 con error  [en proceso]",
        "Avance: 9/20 pedidos (45 %)  8 creados  1 con error  [en proceso]",
        "Avance: 20/20 pedidos (100 %)  18 creados  2 con error  [completado]",
    ]


def test_the_bar_fills_with_progress():
    assert bar(0, 4, width=8) == "░" * 8 and bar(2, 4, width=8) == "████░░░░" and bar(0, 0, width=4) == "████"
