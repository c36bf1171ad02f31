"""A notifier that cannot finish yet (the job's run has not reached its suspend) is run again when due (the pool's
scheduler thread queues it), within its kind's budget, without holding a pool thread; then it is left to the
reconciler."""

from __future__ import annotations

import threading
import time

from webhook.after_commit import AfterCommit, AfterCommitWork, RetryLater
from webhook.app import after_commit_work


def test_a_resume_before_the_suspend_is_retried_until_it_lands():
    calls: list[float] = []

    def resume(job_id):
        calls.append(time.monotonic())
        return RetryLater(0.05, why="not suspended yet") if len(calls) < 4 else None

    pool = AfterCommit({"resume": resume}, threads=1, retry_budget_s={"resume": 5.0})
    pool.submit("resume", "job-a")
    pool.join()
    assert len(calls) == 4
    assert all(later - earlier >= 0.045 for earlier, later in zip(calls, calls[1:], strict=False))


def test_retries_stop_when_the_budget_is_spent():
    calls: list[str] = []

    def resume(job_id):
        calls.append(job_id)
        return RetryLater(0.1)

    pool = AfterCommit({"resume": resume}, threads=1, retry_budget_s={"resume": 0.35})
    started = time.monotonic()
    pool.submit("resume", "job-a")
    pool.join()
    # Tries at about 0, 0.1, 0.2 and 0.3 s; a fifth would start after the budget's 0.35 s.
    assert 3 <= len(calls) <= 4 and time.monotonic() - started < 1.0
    # The budget counts from the first try of this round: a later submit starts a fresh one.
    pool.submit("resume", "job-a")
    pool.join()
    assert len(calls) >= 6


def test_a_waiting_retry_holds_no_thread():
    """While job-a waits for its next try, job-b's task runs on the pool's only thread."""
    b_ran = threading.Event()
    a_calls: list[float] = []

    def resume(job_id):
        if job_id == "job-b":
            b_ran.set()
            return None
        a_calls.append(time.monotonic())
        return RetryLater(0.5) if len(a_calls) == 1 else None

    pool = AfterCommit({"resume": resume}, threads=1)
    pool.submit("resume", "job-a")
    time.sleep(0.05)
    pool.submit("resume", "job-b")
    assert b_ran.wait(0.3), "job-b waited behind job-a's retry"
    pool.join()
    assert len(a_calls) == 2


def test_a_kind_without_budget_is_not_retried():
    calls: list[str] = []
    pool = AfterCommit({"results": lambda job_id: calls.append(job_id) or RetryLater(0.01)}, threads=1)
    pool.submit("results", "job-a")
    pool.join()
    assert calls == ["job-a"]


def test_follow_ups_spend_no_retry_budget():
    """A progress holder's reads (RetryLater with follow_up) go on past the kind's budget; plain retries do not."""
    runs = {"follow-up": 0, "retry": 0}

    def notifier(kind):
        def run(job_id):
            runs[kind] += 1
            if runs[kind] < 6:
                return RetryLater(0.05, follow_up=kind == "follow-up")
            return None

        return run

    pool = AfterCommit(
        {"follow-up": notifier("follow-up"), "retry": notifier("retry")},
        threads=1,
        retry_budget_s={"follow-up": 0.12, "retry": 0.12},
    )
    pool.submit("follow-up", "job-a")
    pool.submit("retry", "job-a")
    pool.join()
    assert runs["follow-up"] == 6  # each run's follow-up starts its budget afresh
    assert runs["retry"] < 6  # 0.12 s of budget: the first try and two retries 0.05 s apart


def test_after_commit_work_is_the_given_notifiers_over_the_relays(engine):
    given = after_commit_work(engine, resume=lambda job_id: None, progress=lambda job_id: None)
    assert sorted(given.by_kind()) == ["progress", "resume"]  # test notifiers only: no run-log lines
    relay = after_commit_work(engine)
    assert sorted(relay.by_kind()) == ["progress", "results", "resume"]
    mixed = after_commit_work(engine, resume=given.resume)
    assert mixed.resume is given.resume and mixed.progress is not given.progress and mixed.results is not None


def test_a_finished_jobs_results_are_logged_after_its_resume_on_the_same_thread():
    """Side by side, the results' POST /logs made Prefect on SQLite refuse the resume ("database is locked")."""
    order: list[tuple[str, str, object]] = []

    def resume(job_id):
        order.append(("resume", threading.current_thread().name, job_id))
        time.sleep(0.05)  # long enough for a second thread to start the results meanwhile, were they queued apart

    def results(job_id, items):
        order.append(("results", threading.current_thread().name, tuple(items)))

    work = AfterCommitWork(resume=resume, results=results)
    pool = AfterCommit(work.by_kind(), threads=2)
    pool.submit("resume", "job-a", items=["item-1", "item-2"])
    pool.join()
    assert [kind for kind, _, _ in order] == ["resume", "results"]
    assert order[0][1] == order[1][1] and order[1][2] == ("item-1", "item-2")


def test_a_failing_results_logger_does_not_hide_the_resumes_answer():
    def results(job_id, items):
        raise ConnectionError("Prefect API unreachable")

    work = AfterCommitWork(resume=lambda job_id: RetryLater(1.0, why="not suspended yet"), results=results)
    answer = work.finish("job-a", ["item-1"])
    assert isinstance(answer, RetryLater) and answer.why == "not suspended yet"


def test_a_retry_due_sooner_is_not_held_behind_one_due_later():
    """Delayed tasks share one scheduler thread: one due in 0.05 s, queued after one due in 3 s, runs on time."""
    runs: dict[str, list[float]] = {"slow": [], "fast": []}

    def resume(job_id):
        runs[job_id].append(time.monotonic())
        if len(runs[job_id]) == 1:
            return RetryLater(3.0 if job_id == "slow" else 0.05)
        return None

    pool = AfterCommit({"resume": resume}, threads=1, retry_budget_s={"resume": 10.0})
    pool.submit("resume", "slow")
    time.sleep(0.05)  # "slow" is waiting for its retry, due in 3 s
    pool.submit("resume", "fast")
    deadline = time.monotonic() + 2.0
    while len(runs["fast"]) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(runs["fast"]) == 2 and runs["fast"][1] - runs["fast"][0] < 1.0
    assert len(runs["slow"]) == 1  # not yet: its retry is still due later
    pool.join()
    assert len(runs["slow"]) == 2 and runs["slow"][1] - runs["slow"][0] >= 2.9
