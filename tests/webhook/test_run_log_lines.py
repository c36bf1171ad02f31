"""Results for the job's run logs: merged per job while waiting (one flush, every item), and bounded lines."""

from __future__ import annotations

import logging
import threading
import time

from domain.batches.progress import JobCounts
from relay.progress import MAX_ERROR_LINES, results_lines
from tests.webhook.helpers import CALLBACK, robot_body, robot_headers
from webhook.after_commit import COALESCE_S, AfterCommit, AfterCommitWork


def test_results_of_many_callbacks_merge_into_one_flush_per_job():
    running, busy, flushes = threading.Event(), threading.Event(), []

    def results(job_id, items):
        flushes.append((job_id, list(items)))
        running.set()
        busy.wait(5)

    pool = AfterCommit({"results": results}, threads=1, coalesce_s={})
    pool.submit("results", "job-a", items=["i1"])  # runs now and blocks the only thread
    assert running.wait(5)
    for n in range(2, 6):
        pool.submit("results", "job-a", items=[f"i{n}"])  # waiting: merged into one task
    pool.submit("results", "job-b", items=["j1"])
    busy.set()
    pool.join()
    assert flushes == [("job-a", ["i1"]), ("job-a", ["i2", "i3", "i4", "i5"]), ("job-b", ["j1"])]


def test_a_jobs_results_are_flushed_at_most_once_per_interval_the_later_ones_merged():
    """Each flush is a database read and a POST /logs: by default at most one per job per COALESCE_S["results"]."""
    flushes: list[tuple[float, list[str]]] = []
    pool = AfterCommit({"results": lambda job_id, items: flushes.append((time.monotonic(), list(items)))}, threads=1)
    pool.submit("results", "job-a", items=["i1"])
    pool.join()
    for n in range(2, 5):
        pool.submit("results", "job-a", items=[f"i{n}"])
    pool.join()
    assert [items for _, items in flushes] == [["i1"], ["i2", "i3", "i4"]]
    assert flushes[1][0] - flushes[0][0] >= COALESCE_S["results"] - 0.05
    assert COALESCE_S["results"] > COALESCE_S["progress"]


def test_a_kind_without_notifier_is_ignored():
    pool = AfterCommit({"progress": lambda job_id: None}, threads=1)
    pool.submit("results", "job-a", items=["i1"])
    pool.join()


def test_results_lines_say_the_counts_and_each_error_bounded():
    errors = [(f"Pedido {n}", "portal", "No se encontró el municipio") for n in range(MAX_ERROR_LINES + 3)]
    lines = results_lines("job-1", JobCounts(flow_run_id=None, total=32, success=10, error=23), errors)
    assert lines[0] == (logging.INFO, "Lote job-1: resultados recibidos: 32 de 32 (10 creados, 23 con error)")
    assert lines[1] == (logging.WARNING, "Lote job-1: pedido Pedido 0 con error (portal): No se encontró el municipio")
    assert len(lines) == 1 + MAX_ERROR_LINES + 1
    assert lines[-1][1] == "Lote job-1: y 3 pedido(s) más con error (el resumen del lote los lista todos)"


def test_a_finished_jobs_waiting_results_are_logged_with_its_resume_not_an_interval_later():
    """The finishing callback's resume takes the results still waiting for their interval: the run's logs have every
    result once the resume is done, and the emptied results task does not log again."""
    logged: list[tuple[str, list[str]]] = []
    work = AfterCommitWork(
        resume=lambda job_id: logged.append(("resume", [])),
        results=lambda job_id, items: logged.append(("results", list(items))),
    )
    pool = AfterCommit(work.by_kind(), threads=1, coalesce_s={"results": 0.5})
    pool.submit("results", "job-a", items=["i1"])  # runs now
    pool.join()
    pool.submit("results", "job-a", items=["i2"])  # waits for the interval
    pool.submit("results", "job-b", items=["j1"])  # another job's: not taken
    pool.submit("resume", "job-a", items=["i3"])
    pool.join()
    assert logged == [("results", ["i1"]), ("results", ["j1"]), ("resume", []), ("results", ["i3", "i2"])]


class _Queued:
    """The app's after-commit pool replaced by a list of what callbacks queued (kind, job, items)."""

    def __init__(self):
        self.tasks: list[tuple[str, str, list[str] | None]] = []

    def submit(self, kind, job_id, context=None, *, items=None):
        self.tasks.append((kind, job_id, None if items is None else list(items)))

    def join(self):
        pass


def test_only_recorded_errors_queue_a_run_log_flush_and_a_finished_job_logs_its_counts(app, client, job):
    """A callback of successes only queues progress and no results flush (the counts come with the progress
    holder's publication); an error queues its item; the finishing callback's resume carries the errors it recorded,
    and no items at all still logs the final counts (AfterCommitWork.finish)."""
    queued = _Queued()
    app.extensions["robotjobs"].after_commit = queued

    def report(item, status, **extra):
        body = {"itemId": item, "status": status, **extra}
        response = client.post(CALLBACK, data=robot_body(body), headers=robot_headers(job.secret))
        assert response.status_code == 200, response.json

    report(job.items[0], "success", trackingNumber="7600001")
    assert queued.tasks == [("progress", job.id, None)]
    report(job.items[1], "error", errorType="portal", errorMessage="No se encontró el municipio")
    assert queued.tasks[1:] == [("progress", job.id, None), ("results", job.id, [job.items[1]])]
    report(job.items[1], "error", errorType="portal", errorMessage="otra vez")  # a duplicate: nothing changed
    assert len(queued.tasks) == 3
    report(job.items[2], "success", trackingNumber="7600003")
    assert queued.tasks[3:] == [("resume", job.id, [])]


def test_a_finished_jobs_counts_are_logged_even_when_its_last_callback_recorded_no_error():
    logged: list[tuple[str, list[str]]] = []
    work = AfterCommitWork(resume=lambda job_id: None, results=lambda job_id, items: logged.append((job_id, items)))
    pool = AfterCommit(work.by_kind(), threads=1)
    pool.submit("resume", "job-a", items=[])
    pool.join()
    assert logged == [("job-a", [])]
    work.finish("job-b")  # a retried resume comes without items: its lines were logged at its first run
    assert logged == [("job-a", [])]
