"""The analysts' notebooks run top to bottom against DATABASE_URL (SQLite or PostgreSQL) and carry no outputs in git."""

from __future__ import annotations

import nbformat
import pytest

from domain import analytics
from domain.batches.summary import batch_summary, render_summary_text

from .conftest import NOTEBOOKS

NOTEBOOK_NAMES = ["01-batch-summary.ipynb", "02-batch-analytics.ipynb"]
MAX_SECONDS = 30


@pytest.mark.parametrize("name", NOTEBOOK_NAMES)
def test_notebook_is_committed_without_outputs(name):
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(cell.outputs == [] and cell.execution_count is None for cell in code)


def test_batch_summary_notebook_prints_the_chosen_jobs_summary(history_database, uow, monkeypatch, run_notebook):
    database_url, job_ids = history_database
    with uow() as tx:
        # A batch with both created and rejected orders, so both tables have rows.
        job_id = next(j.job_id for j in analytics.jobs_overview(tx.session) if j.success_count and j.error_count)
        expected = render_summary_text(batch_summary(tx.session, job_id))
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("JOB_ID", job_id)

    executed = run_notebook("01-batch-summary.ipynb")

    assert executed.errors == []
    assert "Reading batches from" in executed.text and "no batches yet" not in executed.text
    assert f"Batch: {job_id}" in executed.text
    assert expected in executed.text and "pedido(s) creado(s)" in expected
    assert "❌ Pedidos rechazados:" in executed.text
    assert executed.images == 1
    assert executed.seconds < MAX_SECONDS


def test_batch_analytics_notebook_tabulates_and_plots_the_history(history_database, uow, monkeypatch, run_notebook):
    database_url, _ = history_database
    with uow() as tx:
        jobs = analytics.jobs_overview(tx.session)
        items = analytics.item_facts(tx.session)
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.delenv("JOB_ID", raising=False)

    executed = run_notebook("02-batch-analytics.ipynb")

    assert executed.errors == []
    successes = sum(i.status == "success" for i in items)
    assert f"{len(jobs)} batches, {len(items)} orders, {successes} created" in executed.text
    for category in ("validation", "portal", "timeout", "unknown", "dispatch"):
        assert category in executed.text
    assert "MANIZALES (CDAS)" in executed.text or "CDAS" in executed.text
    assert executed.images == 5  # over time, by department, error reasons, dispatch → result, retries
    assert executed.seconds < MAX_SECONDS


def test_notebooks_build_a_sample_history_when_the_database_has_no_batches(tmp_path, monkeypatch, run_notebook):
    missing = tmp_path / "never-created.db"
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{missing}")
    monkeypatch.delenv("JOB_ID", raising=False)
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the kernel's sample database lands here, cleaned by pytest

    executed = run_notebook("01-batch-summary.ipynb")

    assert executed.errors == []
    assert "has no batches yet: building a sample history" in executed.text
    assert "pedido(s) creado(s)" in executed.text
    assert not missing.exists()  # looking for batches did not create the file
    assert list(tmp_path.glob("robotjobs-history-*/history-*.db"))
