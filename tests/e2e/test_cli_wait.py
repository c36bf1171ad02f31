"""End to end: `robotjobs submit --wait` against the real stack follows the batch of the run it started."""

from __future__ import annotations

import io

import pytest

from cli.main import main
from tests.e2e.helpers import jobs_of, seed_workspace

pytestmark = pytest.mark.e2e


def test_submit_wait_follows_its_run_to_the_summary(stack, sim, monkeypatch):
    # The CLI reads the API's address and credential from the environment, as an operator's shell gives them.
    monkeypatch.setenv("PREFECT_API_URL", stack.api_url)
    monkeypatch.setenv("PREFECT_API_AUTH_STRING", stack.auth_string)
    workspace_id, order_ids = seed_workspace(stack, 3)
    out = io.StringIO()
    code = main(
        ["submit", "--workspace", workspace_id, "--orders", ",".join(order_ids), "--wait", "--timeout", "180"],
        out=out,
        database_url=stack.engine.url.render_as_string(hide_password=False),
    )
    text = out.getvalue()
    assert code == 0, text
    [job] = jobs_of(stack, workspace_id)
    assert f"Lote solicitado: ejecución {job.flow_run_id}" in text  # the run it started is the batch it followed
    assert f"Lote {job.id}" in text
    assert "Avance: 3/3 pedidos (100 %)  3 creados  0 con error  [completado]" in text
    assert text.rstrip().endswith("Exitosos: 3  Con error: 0  Total: 3")
