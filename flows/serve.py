"""Serve every flow of robotjobs from this process (the local stack): `python -m flows.serve`.

Production deploys the same flows to a process work pool with `prefect deploy --all` (prefect.yaml); both use the
deployment names in flows/deployments.py. The runner polls every second so a resumed run starts within about a
second (Prefect's default is 10 s).
"""

from __future__ import annotations

import os

from prefect import serve
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.settings import PREFECT_RUNNER_POLL_FREQUENCY, temporary_settings

from domain.credentials import CredentialsKeyMissing
from flows import runtime
from flows.deployments import ORCHESTRATE, RECONCILE, RECONCILE_INTERVAL_S, RETRY, SUBMIT
from flows.orchestrate import orchestrate_robot_job
from flows.reconcile import reconcile
from flows.submit import retry_failed_items, submit_robot_job

POLL_SECONDS = int(os.environ.get("PREFECT_RUNNER_POLL_FREQUENCY", "1"))
# "false" serves the reconciler without its schedule: the end-to-end tests trigger it by hand, at moments they
# choose. Its interval is not a knob: the orchestration's suspend timeout counts on RECONCILE_INTERVAL_S.
RECONCILE_SCHEDULED = os.environ.get("ROBOTJOBS_RECONCILE_SCHEDULED", "true").lower() != "false"
# "true" also serves Prefect's floor (flows/floor.py): the latency benchmark measures it in the same runner.
SERVE_FLOOR = os.environ.get("ROBOTJOBS_SERVE_FLOOR", "false").lower() == "true"


def deployments() -> list:
    return [
        submit_robot_job.to_deployment(
            name=SUBMIT, description="Enviar un lote al robot de Coordinadora (la ejecución es el lote)"
        ),
        retry_failed_items.to_deployment(name=RETRY, description="Reintentar los pedidos fallidos de un lote"),
        orchestrate_robot_job.to_deployment(
            name=ORCHESTRATE, description="Recuperación de un lote cuya ejecución murió (la inicia el reconciliador)"
        ),
        reconcile.to_deployment(
            name=RECONCILE,
            description="Mantenimiento cada minuto: lotes vencidos, reanudaciones perdidas, lotes pendientes, "
            "ejecuciones caídas y resúmenes corregidos",
            interval=RECONCILE_INTERVAL_S if RECONCILE_SCHEDULED else None,
            concurrency_limit=ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW),
        ),
        *(_floor_deployments() if SERVE_FLOOR else []),
    ]


def _floor_deployments() -> list:
    from flows.floor import FLOOR_RESUME, FLOOR_START, floor_resume, floor_start

    return [floor_start.to_deployment(name=FLOOR_START), floor_resume.to_deployment(name=FLOOR_RESUME)]


def check_credentials_key() -> None:
    """Refuse to start without the portal passwords' key (CREDENTIALS_KEY, its Secret block, or the local stack's
    generated one): a runner that starts anyway fails every batch at its dispatch, far from the cause."""
    try:
        runtime.credentials_key()
    except CredentialsKeyMissing as exc:
        raise SystemExit(f"robotjobs: no se inicia el servicio de flujos. {exc.message}") from None


def main() -> None:
    check_credentials_key()
    with temporary_settings(updates={PREFECT_RUNNER_POLL_FREQUENCY: POLL_SECONDS}):
        serve(*deployments(), limit=int(os.environ.get("ROBOTJOBS_RUNNER_LIMIT", "20")))


if __name__ == "__main__":
    main()
