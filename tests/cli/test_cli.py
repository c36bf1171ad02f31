"""The operators' CLI: readable output from the database, deployments triggered with the UI's parameters."""

from __future__ import annotations

import io

import pytest
from cryptography.fernet import Fernet

from cli.deployments import TriggeredRun
from cli.main import main
from domain.batches import jobs
from domain.batches.results import ItemResult, record_batch_results
from sample_data.seed import seed_demo


class FakeDeployments:
    """Records what would be sent to the Prefect server."""

    def __init__(self):
        self.calls = []

    def trigger(self, deployment, parameters):
        self.calls.append((deployment, parameters))
        return TriggeredRun(flow_run_id="run-123", ui_url="http://127.0.0.1:4200/runs/flow-run/run-123")


@pytest.fixture
def finished_job(uow):
    with uow() as tx:
        demo = seed_demo(tx.session, credentials_key=Fernet.generate_key().decode())
        job = jobs.create_robot_job(tx.session, workspace_id=demo.workspace_id, order_ids=demo.order_ids[:3]).job
        jobs.start_job(tx.session, job.id, flow_run_id="run-1")
        items = [v.item.id for v in jobs.get_job_view(tx.session, job.id).items]
        record_batch_results(
            tx.session,
            job.id,
            [
                ItemResult(item_id=items[0], status="success", tracking_number="10107"),
                ItemResult(item_id=items[1], status="success", tracking_number="10108"),
                ItemResult(
                    item_id=items[2], status="error", error_type="portal", error_message="No se encontró el municipio"
                ),
            ],
        )
        tx.commit()
    return demo, job.id


def run(argv, database_url, deployments=None):
    out = io.StringIO()
    code = main(argv, out=out, deployments=deployments or FakeDeployments(), database_url=database_url)
    return code, out.getvalue()


def test_summary_prints_the_operators_format(finished_job, database_url):
    _, job_id = finished_job
    code, text = run(["summary", job_id], database_url)
    assert code == 0
    assert text.startswith("✅ 2 pedido(s) creado(s):\n• #10107 - Elena Beltrán  📍 calle 49f  🏙️ MANIZALES (CDAS)")
    assert "❌ Pedidos rechazados:\n• Luisa Fernanda Ortiz" in text
    assert "Exitosos: 2  Con error: 1  Total: 3" in text


def test_status_lists_items_and_state(finished_job, database_url):
    _, job_id = finished_job
    code, text = run(["status", job_id], database_url)
    assert code == 0 and f"Lote Tienda Demo #1  estado: completado  id: {job_id}" in text
    assert "exitosos 2  con error 1  total 3  pendientes 0" in text
    assert "10107" in text and "No se encontró el municipio" in text


def test_unknown_job_is_a_clear_error(engine, database_url, capsys):
    code, _ = run(["status", "nope"], database_url)
    assert code == 2 and "Lote desconocido: «nope»" in capsys.readouterr().err


def test_submit_and_retry_trigger_the_deployments_with_the_ui_parameters(finished_job, database_url):
    demo, job_id = finished_job
    fake = FakeDeployments()
    code, text = run(
        ["submit", "--workspace", demo.workspace_id, "--orders", "a, b", "--key", "k1"], database_url, fake
    )
    assert code == 0 and "run-123" in text and "http://127.0.0.1:4200/runs/flow-run/run-123" in text
    code, _ = run(["retry", job_id], database_url, fake)
    assert fake.calls == [
        (
            "submit-robot-job/submit-robot-job",
            {"workspace": demo.workspace_id, "stage": "", "order_ids": ["a", "b"], "idempotency_key": "k1"},
        ),
        ("retry-failed-items/retry-failed-items", {"batch": job_id}),
    ]


def test_jobs_and_workspaces_list_what_operators_need(finished_job, database_url):
    demo, job_id = finished_job
    _, jobs_text = run(["jobs"], database_url)
    line = next(line for line in jobs_text.splitlines() if job_id in line)
    assert line.startswith("Tienda Demo #1  ") and "completado" in line
    _, by_name = run(["jobs", "--workspace", "tienda demo"], database_url)
    assert job_id in by_name
    _, ws_text = run(["workspaces"], database_url)
    assert demo.workspace_id in ws_text and "etapa de despacho: Por despachar" in ws_text


def test_load_coverage_from_csv(engine, database_url, tmp_path):
    csv_file = tmp_path / "cobertura.csv"
    csv_file.write_text("city_label,department_abbr,supports_cod\nPASTO (NAR),NAR,true\nIPIALES (NAR),NAR,false\n")
    code, text = run(["load-coverage", str(csv_file)], database_url)
    assert code == 0 and "Cobertura cargada: 2 ciudades" in text


@pytest.mark.parametrize("reference", ["Tienda Demo #1", " tienda demo # 1 ", "prefix"])
def test_status_and_summary_take_the_batch_reference_or_an_id_prefix(finished_job, database_url, reference):
    _, job_id = finished_job
    reference = job_id[:8] if reference == "prefix" else reference
    code, text = run(["status", reference], database_url)
    assert code == 0 and f"id: {job_id}" in text
    code, text = run(["summary", reference], database_url)
    assert code == 0 and "Exitosos: 2  Con error: 1  Total: 3" in text


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["submit"], "robotjobs submit: error: faltan argumentos obligatorios: --workspace"),
        (["retry"], "robotjobs retry: error: faltan argumentos obligatorios: lote"),
        ([], "robotjobs: error: faltan argumentos obligatorios: ORDEN"),
        (["enviar"], "robotjobs: error: argumento ORDEN: opción no válida: 'enviar' (elija entre 'submit', "),
        (["submit", "--workspace", "w", "--stage", "s", "--orders", "o"], "argumento --orders: no se permite junto"),
        (["jobs", "--limit", "x"], "robotjobs jobs: error: argumento --limit: valor no válido (int): 'x'"),
        (["status", "a", "b"], "robotjobs: error: argumentos no reconocidos: b"),
    ],
)
def test_argparse_speaks_spanish_too(database_url, capsys, argv, said):
    with pytest.raises(SystemExit) as exited:
        run(argv, database_url)
    err = capsys.readouterr().err
    assert exited.value.code == 2
    assert err.startswith("uso: robotjobs") and said in err
    assert "usage" not in err and "required" not in err and "choose" not in err


def test_help_says_names_are_accepted_and_what_a_batch_reference_is(database_url, capsys):
    for argv in (["submit", "-h"], ["retry", "-h"]):
        with pytest.raises(SystemExit):
            run(argv, database_url)
    text = " ".join(capsys.readouterr().out.split())  # whatever the terminal's width
    assert "--workspace WORKSPACE nombre o id del workspace" in text
    assert "--stage ETAPA nombre o id de la etapa" in text
    assert "lote <workspace> #<n>, id o prefijo" in text
    assert "usage" not in text and "positional arguments" not in text
