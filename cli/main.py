"""`robotjobs`: lotes de envío al robot de Coordinadora — enviar, seguir, resumir y reintentar (y utilidades de
puesta en marcha: migrate, seed-demo, load-coverage; y el buzón del webhook: dead-letters, spool)."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from sqlmodel import select

from cli.deployments import RETRY_DEPLOYMENT, SUBMIT_DEPLOYMENT, Deployments, PrefectDeployments, ui_url_of
from cli.follow import ProgressLine, follow
from domain.batches.summary import render_summary_text, status_label
from domain.batches.view import load_batch
from domain.db import UnitOfWork, make_engine
from domain.errors import DomainError
from domain.models import CarrierConfig, RobotJob, Stage, Workspace
from domain.settings import get_settings


def _parser() -> argparse.ArgumentParser:
    parser = _spanish(argparse.ArgumentParser(prog="robotjobs", description=__doc__, add_help=False))
    sub = parser.add_subparsers(dest="command", required=True, title="órdenes", metavar="ORDEN")

    def command(name: str, text: str) -> argparse.ArgumentParser:
        return _spanish(sub.add_parser(name, help=text, description=text, add_help=False))

    submit = command("submit", "enviar un lote al robot (por el despliegue submit-robot-job)")
    submit.add_argument("--workspace", required=True, help="id del workspace")
    which = submit.add_mutually_exclusive_group()
    which.add_argument(
        "--stage", help="id de la etapa cuyos pedidos se despachan (por defecto, la etapa de despacho del workspace)"
    )
    which.add_argument("--orders", help="ids de pedidos separados por comas")
    submit.add_argument("--key", help="clave de idempotencia: la misma clave devuelve el mismo lote")
    _wait_options(submit)
    for name, text in (
        ("status", "estado de un lote y sus pedidos"),
        ("summary", "resumen de un lote (formato de los operadores)"),
    ):
        cmd = command(name, text)
        cmd.add_argument("job_id")
    retry = command("retry", "reenviar, en un lote nuevo, los pedidos fallidos de un lote terminado")
    retry.add_argument("job_id")
    _wait_options(retry)
    jobs = command("jobs", "lotes recientes")
    jobs.add_argument("--workspace", help="solo este workspace")
    jobs.add_argument("--limit", type=int, default=20, help="cuántos lotes mostrar")
    command("workspaces", "workspaces y su etapa de despacho")
    command("migrate", "actualizar el esquema de la base de datos a la última migración")
    coverage = command("load-coverage", "cargar la tabla de cobertura de la transportadora desde un CSV")
    coverage.add_argument("csv_path", help="columnas: city_label, department_abbr, supports_cod[, active]")
    seed = command("seed-demo", "crear un workspace de demostración con pedidos por despachar")
    seed.add_argument("--name", default="Tienda Demo", help="nombre del workspace")

    letters = command("dead-letters", "callbacks autenticados que no se pudieron aplicar (listar, ver, reproducir)")
    letters.add_argument("--pending", action="store_true", help="solo las que aún no se reprodujeron")
    letters.add_argument("--job", help="solo este lote")
    letters.add_argument("--limit", type=int, default=50, help="cuántas mostrar")
    letters_sub = letters.add_subparsers(dest="letters_command", title="órdenes", metavar="ORDEN")
    show = _spanish(letters_sub.add_parser("show", help="una carta muerta con su cuerpo", add_help=False))
    show.add_argument("letter_id", type=int)
    replay = _spanish(
        letters_sub.add_parser(
            "replay", help="aplicar una carta muerta ahora (una vez corregida la causa)", add_help=False
        )
    )
    replay.add_argument("letter_id", type=int)

    spool = command("spool", "el buzón local del webhook en este host: callbacks que esperan a la base de datos")
    spool.add_argument("--dir", help="carpeta del buzón (por defecto, WEBHOOK_SPOOL_DIR)")
    spool_sub = spool.add_subparsers(dest="spool_command", title="órdenes", metavar="ORDEN")
    _spanish(spool_sub.add_parser("status", help="en espera, bytes, antigüedad (por defecto)", add_help=False))
    spool_replay = _spanish(
        spool_sub.add_parser(
            "replay",
            help="reproducir el buzón ahora, en orden de llegada (espera a un worker que lo esté reproduciendo)",
            add_help=False,
        )
    )
    spool_replay.add_argument(
        "--release-held",
        action="store_true",
        help="devolver antes a la cola las entradas apartadas tras fallar varias veces",
    )
    return parser


def _wait_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--wait",
        action="store_true",
        help="seguir el lote de esta ejecución con una barra de avance e imprimir su resumen",
    )
    parser.add_argument("--timeout", type=float, default=600, help="segundos de espera con --wait")


def _spanish(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Operators read Spanish: argparse's own headings and -h line included."""
    parser._positionals.title, parser._optionals.title = "argumentos", "opciones"
    parser.add_argument("-h", "--help", action="help", help="mostrar esta ayuda y salir")
    return parser


class Cli:
    def __init__(
        self,
        *,
        out: TextIO,
        deployments: Deployments,
        database_url: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.settings = get_settings() if database_url is None else get_settings(database_url=database_url)
        self.engine = make_engine(self.settings.database_url)
        self.out = out
        self.deployments = deployments
        self.clock, self.sleep = clock, sleep  # --wait polls the database every second: tests pass a fake clock

    def say(self, text: str = "") -> None:
        print(text, file=self.out)

    # --- commands ---------------------------------------------------------------------------------------------

    def submit(self, args: argparse.Namespace) -> int:
        # The form's flat parameters (flows/submit.py): names or ids, a stage or a list of orders.
        order_ids = [o.strip() for o in args.orders.split(",") if o.strip()] if args.orders and not args.stage else []
        run = self.deployments.trigger(
            SUBMIT_DEPLOYMENT,
            {
                "workspace": args.workspace,
                "stage": args.stage or "",
                "order_ids": order_ids,
                "idempotency_key": args.key or "",
            },
        )
        self.say(f"Lote solicitado: ejecución {run.flow_run_id}")
        self.say(f"Prefect UI: {run.ui_url}")
        if not args.wait:
            return 0
        return self._follow(run.flow_run_id, args.timeout, key=args.key, workspace=args.workspace)

    def _follow(self, flow_run_id: str, timeout: float, *, key: str | None = None, workspace: str | None = None) -> int:
        """--wait: the batch of the run just started, a live progress line, then its summary; 0 only if completed."""
        line = ProgressLine(self.out, tty=self.out.isatty())
        followed = follow(
            self.engine,
            self.deployments,
            flow_run_id,
            line,
            timeout_s=timeout,
            key=key,
            workspace=workspace,
            clock=self.clock,
            sleep=self.sleep,
        )
        if followed.problem:
            self.say(
                followed.problem
                + (f"; siga su avance con `robotjobs status {followed.job_id}`." if followed.job_id else ".")
            )
            return 1
        self.summary(argparse.Namespace(job_id=followed.job_id))
        if not followed.ok:
            self.say(f"Lote {status_label(followed.status or '')}.")
        return 0 if followed.ok else 1

    def status(self, args: argparse.Namespace) -> int:
        with UnitOfWork(self.engine, readonly=True) as uow:
            batch = load_batch(uow.session, args.job_id)
        job, summary = batch.job, batch.summary
        self.say(f"Lote {job.id}  estado: {status_label(job.status)}")
        self.say(
            f"  exitosos {job.success_count}  con error {job.error_count}  total {job.total_items}"
            f"  pendientes {summary.pending_count}"
        )
        if job.failure_reason:
            self.say(f"  motivo: {job.failure_reason}")
        if job.flow_run_id:
            self.say(f"  Prefect UI: {ui_url_of(job.flow_run_id)}")
        if job.retry_of_job_id:
            self.say(f"  reintento del lote {job.retry_of_job_id}")
        self.say("")
        self.say(f"  {'pedido':<14}{'estado':<11}{'guía':<14}{'ciudad':<24}{'valor':>11}  detalle")
        for line in summary.lines:
            guide = line.pedido if line.status == "success" else ""
            detail = "  ".join(part for part in (line.error_message, line.possible_duplicate) if part)
            self.say(
                f"  {line.order_name:<14}{status_label(line.status):<11}{guide:<14}"
                f"{line.city[:23]:<24}{line.total:>11}  {detail}"
            )
        return 0

    def summary(self, args: argparse.Namespace) -> int:
        with UnitOfWork(self.engine, readonly=True) as uow:
            summary = load_batch(uow.session, args.job_id).summary
        self.out.write(render_summary_text(summary))
        self.say(f"Exitosos: {summary.success_count}  Con error: {summary.error_count}  Total: {summary.total_items}")
        return 0

    def retry(self, args: argparse.Namespace) -> int:
        run = self.deployments.trigger(RETRY_DEPLOYMENT, {"batch": args.job_id})
        self.say(f"Reintento solicitado: ejecución {run.flow_run_id}")
        self.say(f"Prefect UI: {run.ui_url}")
        return self._follow(run.flow_run_id, args.timeout) if args.wait else 0

    def jobs(self, args: argparse.Namespace) -> int:
        with UnitOfWork(self.engine, readonly=True) as uow:
            query = select(RobotJob).order_by(RobotJob.created_at.desc()).limit(args.limit)
            if args.workspace:
                query = query.where(RobotJob.workspace_id == args.workspace)
            rows = uow.session.exec(query).all()
        self.say(f"{'lote':<38}{'estado':<12}{'ok':>4}{'err':>5}{'total':>6}  creado")
        for job in rows:
            self.say(
                f"{job.id:<38}{status_label(job.status):<12}{job.success_count:>4}{job.error_count:>5}{job.total_items:>6}"
                f"  {job.created_at:%Y-%m-%d %H:%M}"
            )
        return 0

    def workspaces(self, _args: argparse.Namespace) -> int:
        with UnitOfWork(self.engine, readonly=True) as uow:
            for ws in uow.session.exec(select(Workspace).order_by(Workspace.created_at)).all():
                config = uow.session.exec(select(CarrierConfig).where(CarrierConfig.workspace_id == ws.id)).first()
                self.say(f"{ws.name}  id: {ws.id}")
                if config and config.dispatch_stage_id:
                    stage = uow.session.get(Stage, config.dispatch_stage_id)
                    self.say(f"  etapa de despacho: {stage.name if stage else '?'}  id: {config.dispatch_stage_id}")
        return 0

    def migrate(self, _args: argparse.Namespace) -> int:
        from domain.migrate import upgrade

        upgrade(self.settings.database_url)
        self.say("Esquema actualizado")
        return 0

    def dead_letters(self, args: argparse.Namespace) -> int:
        from domain import dead_letters

        if args.letters_command == "replay":
            from webhook.callbacks import REFUSALS, replay_dead_letter
            from webhook.errors import refusal_of

            try:
                result = replay_dead_letter(self.engine, args.letter_id)
            except DomainError:
                raise
            except REFUSALS as exc:
                status, code, message, _ = refusal_of(exc)
                print(f"error: sigue sin poder aplicarse ({status} {code}): {message}", file=sys.stderr)
                return 2
            self.say(f"Carta muerta {args.letter_id}: {result}")
            return 0
        with UnitOfWork(self.engine, readonly=True) as uow:
            if args.letters_command == "show":
                letter = dead_letters.get(uow.session, args.letter_id)
                self.say(
                    f"Carta muerta {letter.id}  recibida {letter.received_at:%Y-%m-%d %H:%M:%S}  "
                    f"lote {letter.job_id or '-'}"
                )
                self.say(f"  motivo: {letter.reason}")
                self.say(f"  cabeceras: {letter.headers}")
                if letter.replayed_at:
                    self.say(f"  reproducida {letter.replayed_at:%Y-%m-%d %H:%M:%S}: {letter.replay_result}")
                elif letter.replay_result:
                    self.say(f"  último intento: {letter.replay_result}")
                self.say(letter.body)
                return 0
            rows = dead_letters.list_letters(uow.session, pending_only=args.pending, job_id=args.job, limit=args.limit)
        if not rows:
            self.say("Sin cartas muertas.")
            return 0
        self.say(f"{'id':>6}  {'recibida':<18}{'estado':<13}{'lote':<38}motivo")
        for letter in rows:
            state = "reproducida" if letter.replayed_at else "pendiente"
            self.say(
                f"{letter.id:>6}  {letter.received_at:%Y-%m-%d %H:%M}  {state:<13}{letter.job_id or '-':<38}"
                f"{letter.reason[:100]}"
            )
        return 0

    def spool(self, args: argparse.Namespace) -> int:
        from webhook.spool import Spool

        settings = self.settings.model_copy(update={"webhook_spool_dir": args.dir}) if args.dir else self.settings
        if args.spool_command != "replay":
            stats = Spool(settings.webhook_spool_dir, max_bytes=settings.webhook_spool_max_bytes).stats()
            age = "-" if stats.oldest_age_s is None else f"{stats.oldest_age_s:.0f} s"
            self.say(
                f"Buzón {settings.webhook_spool_dir}: {stats.entries} en espera, {stats.bytes} bytes, "
                f"el más antiguo hace {age}, {stats.held} apartadas"
            )
            return 0
        from webhook import create_app

        # The same app as a gunicorn worker's, so each entry goes through the live request's path. No resume or
        # progress from here: the reconciler resumes finished batches from the outbox within a minute.
        app = create_app(
            settings,
            engine=self.engine,
            replay_in_background=False,
            log_level="WARNING",
            resume_notifier=lambda job_id: None,
            progress_notifier=lambda job_id: None,
        )
        state = app.extensions["robotjobs"]
        if args.release_held:
            self.say(f"Devueltas a la cola: {state.inbox.spool.release_held()}")
        report = state.inbox.replay(wait=True)
        state.after_commit.join()
        outcomes = ", ".join(f"{name} {count}" for name, count in sorted(report.outcomes.items())) or "nada"
        note = {"database_unavailable": " (la base de datos no responde)", "error": " (un error: ver el registro)"}
        self.say(f"Reproducidas: {outcomes}; quedan {report.remaining}{note.get(report.stopped_by or '', '')}")
        return 0 if report.remaining == 0 else 1

    def load_coverage(self, args: argparse.Namespace) -> int:
        from pathlib import Path

        from domain.orders.coverage import load_coverage_csv

        with UnitOfWork(self.engine) as uow:
            count = load_coverage_csv(uow.session, Path(args.csv_path))
            uow.commit()
        self.say(f"Cobertura cargada: {count} ciudades")
        return 0

    def seed_demo(self, args: argparse.Namespace) -> int:
        from domain.credentials import load_credentials_key
        from sample_data.seed import seed_demo

        with UnitOfWork(self.engine) as uow:
            demo = seed_demo(
                uow.session, credentials_key=load_credentials_key(self.settings, allow_generate=True), name=args.name
            )
            uow.commit()
        self.say(f"Workspace demo: {demo.workspace_id}  ({len(demo.order_ids)} pedidos en 'Por despachar')")
        return 0


def main(
    argv: list[str] | None = None,
    *,
    out: TextIO | None = None,
    deployments: Deployments | None = None,
    database_url: str | None = None,
    **timing: Any,
) -> int:
    """`timing`: `clock` and `sleep` for --wait (tests)."""
    args = _parser().parse_args(argv)
    cli = Cli(
        out=out or sys.stdout, deployments=deployments or PrefectDeployments(), database_url=database_url, **timing
    )
    handler = getattr(cli, args.command.replace("-", "_"))
    try:
        return handler(args)
    except DomainError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    finally:
        cli.engine.dispose()


if __name__ == "__main__":
    sys.exit(main())
