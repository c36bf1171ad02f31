"""`robotjobs`: lotes de envío al robot de Coordinadora — enviar, seguir, resumir y reintentar (y utilidades de
puesta en marcha: migrate, seed-demo, load-coverage; y el buzón del webhook: dead-letters, spool)."""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Callable
from typing import Any, NoReturn, TextIO

from sqlmodel import select

from cli.deployments import RETRY_DEPLOYMENT, SUBMIT_DEPLOYMENT, Deployments, PrefectDeployments, ui_url_of
from cli.follow import ProgressLine, follow
from domain.batches.jobs import get_job
from domain.batches.lookups import batch_ref, resolve_batch, resolve_workspace
from domain.batches.summary import render_summary_text, status_label
from domain.batches.view import load_batch
from domain.db import UnitOfWork, make_engine
from domain.errors import DomainError
from domain.models import CarrierConfig, RobotJob, Stage, Workspace
from domain.settings import get_settings

BATCH_HELP = "<workspace> #<n>, id o prefijo"


def _parser() -> argparse.ArgumentParser:
    parser = SpanishParser(prog="robotjobs", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, title="órdenes", metavar="ORDEN")

    def command(name: str, text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=text, description=text)

    submit = command("submit", "enviar un lote al robot (por el despliegue submit-robot-job)")
    submit.add_argument("--workspace", required=True, metavar="WORKSPACE", help="nombre o id del workspace")
    which = submit.add_mutually_exclusive_group()
    which.add_argument(
        "--stage",
        metavar="ETAPA",
        help="nombre o id de la etapa cuyos pedidos se despachan (por defecto, la etapa de despacho del workspace)",
    )
    which.add_argument("--orders", metavar="PEDIDOS", help="ids de pedidos separados por comas")
    submit.add_argument("--key", metavar="CLAVE", help="clave de idempotencia: la misma clave devuelve el mismo lote")
    _wait_options(submit)
    for name, text in (
        ("status", "estado de un lote y sus pedidos"),
        ("summary", "resumen de un lote (formato de los operadores)"),
    ):
        command(name, text).add_argument("lote", help=BATCH_HELP)
    retry = command("retry", "reenviar, en un lote nuevo, los pedidos fallidos de un lote terminado")
    retry.add_argument("lote", help=BATCH_HELP)
    _wait_options(retry)
    jobs = command("jobs", "lotes recientes")
    jobs.add_argument("--workspace", help="solo este workspace (nombre o id)")
    jobs.add_argument("--limit", type=int, default=20, metavar="N", help="cuántos lotes mostrar")
    command("workspaces", "workspaces y su etapa de despacho")
    command("migrate", "actualizar el esquema de la base de datos a la última migración")
    coverage = command("load-coverage", "cargar la tabla de cobertura de la transportadora desde un CSV")
    coverage.add_argument("csv_path", help="columnas: city_label, department_abbr, supports_cod[, active]")
    seed = command("seed-demo", "crear un workspace de demostración con pedidos por despachar")
    seed.add_argument("--name", default="Tienda Demo", help="nombre del workspace")

    letters = command("dead-letters", "callbacks autenticados que no se pudieron aplicar (listar, ver, reproducir)")
    letters.add_argument("--pending", action="store_true", help="solo las que aún no se reprodujeron")
    letters.add_argument("--job", metavar="LOTE", help="solo este lote")
    letters.add_argument("--limit", type=int, default=50, metavar="N", help="cuántas mostrar")
    letters_sub = letters.add_subparsers(dest="letters_command", title="órdenes", metavar="ORDEN")
    letters_sub.add_parser("show", help="una carta muerta con su cuerpo").add_argument("letter_id", type=int)
    letters_sub.add_parser("replay", help="aplicar una carta muerta ahora (una vez corregida la causa)").add_argument(
        "letter_id", type=int
    )

    spool = command("spool", "el buzón local del webhook en este host: callbacks que esperan a la base de datos")
    spool.add_argument("--dir", metavar="CARPETA", help="carpeta del buzón (por defecto, WEBHOOK_SPOOL_DIR)")
    spool_sub = spool.add_subparsers(dest="spool_command", title="órdenes", metavar="ORDEN")
    spool_sub.add_parser("status", help="en espera, bytes, antigüedad (por defecto)")
    spool_replay = spool_sub.add_parser(
        "replay",
        help="reproducir el buzón ahora, en orden de llegada (espera a un worker que lo esté reproduciendo)",
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
    parser.add_argument("--timeout", type=float, default=600, metavar="SEGUNDOS", help="segundos de espera con --wait")


class _SpanishFormatter(argparse.HelpFormatter):
    def add_usage(self, usage: str | None, actions: Any, groups: Any, prefix: str | None = None) -> None:
        super().add_usage(usage, actions, groups, "uso: " if prefix is None else prefix)


# argparse's own error messages (Python 3.11-3.13 wording), most specific first; an unknown one stays as it is.
_ARGPARSE_ERRORS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern, re.DOTALL), spanish)
    for pattern, spanish in (
        (r"argument (?P<arg>\S+): (?P<rest>.+)", "argumento {arg}: {rest}"),
        (r"the following arguments are required: (?P<args>.+)", "faltan argumentos obligatorios: {args}"),
        (
            r"invalid choice: (?P<value>.+) \(choose from (?P<choices>.+)\)",
            "opción no válida: {value} (elija entre {choices})",
        ),
        (r"unrecognized arguments: (?P<args>.+)", "argumentos no reconocidos: {args}"),
        (r"not allowed with argument (?P<other>.+)", "no se permite junto con {other}"),
        (r"one of the arguments (?P<args>.+) is required", "falta uno de estos argumentos: {args}"),
        (r"expected one argument", "falta su valor"),
        (r"expected at most one argument", "admite como mucho un valor"),
        (r"expected at least one argument", "requiere al menos un valor"),
        (r"expected (?P<n>\d+) arguments?", "requiere {n} valor(es)"),
        (r"invalid (?P<type>\w+) value: (?P<value>.+)", "valor no válido ({type}): {value}"),
        (
            r"ambiguous option: (?P<option>.+) could match (?P<matches>.+)",
            "opción ambigua: {option} (puede ser {matches})",
        ),
        (r"ignored explicit argument (?P<value>.+)", "valor no admitido: {value}"),
    )
)


def in_spanish(message: str) -> str:
    """One of argparse's error messages, in Spanish."""
    for pattern, spanish in _ARGPARSE_ERRORS:
        if found := pattern.fullmatch(message):
            parts = {name: in_spanish(text) if name == "rest" else text for name, text in found.groupdict().items()}
            return spanish.format(**parts)
    return message


class SpanishParser(argparse.ArgumentParser):
    """Operators read Spanish: argparse's usage line, headings, -h and error lines included; its sub-commands'
    parsers are of this class too (argparse's `parser_class` default)."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **{**kwargs, "add_help": False, "formatter_class": _SpanishFormatter})
        self._positionals.title, self._optionals.title = "argumentos", "opciones"
        self.add_argument("-h", "--help", action="help", help="mostrar esta ayuda y salir")

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {in_spanish(message)}\n")


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
        self.summary(argparse.Namespace(lote=followed.job_id))
        if not followed.ok:
            self.say(f"Lote {status_label(followed.status or '')}.")
        return 0 if followed.ok else 1

    def status(self, args: argparse.Namespace) -> int:
        with UnitOfWork(self.engine, readonly=True) as uow:
            ref = resolve_batch(uow.session, args.lote)
            batch = load_batch(uow.session, ref.job_id)
            job, summary = batch.job, batch.summary
            retry_of = (
                batch_ref(uow.session, get_job(uow.session, job.retry_of_job_id)) if job.retry_of_job_id else None
            )
        self.say(f"Lote {ref.label}  estado: {status_label(job.status)}  id: {job.id}")
        self.say(
            f"  exitosos {job.success_count}  con error {job.error_count}  total {job.total_items}"
            f"  pendientes {summary.pending_count}"
        )
        if job.failure_reason:
            self.say(f"  motivo: {job.failure_reason}")
        if job.flow_run_id:
            self.say(f"  Prefect UI: {ui_url_of(job.flow_run_id)}")
        if retry_of:
            self.say(f"  reintento del lote {retry_of.label}  id: {retry_of.job_id}")
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
            summary = load_batch(uow.session, resolve_batch(uow.session, args.lote).job_id).summary
        self.out.write(render_summary_text(summary))
        self.say(f"Exitosos: {summary.success_count}  Con error: {summary.error_count}  Total: {summary.total_items}")
        return 0

    def retry(self, args: argparse.Namespace) -> int:
        run = self.deployments.trigger(RETRY_DEPLOYMENT, {"batch": args.lote})
        self.say(f"Reintento solicitado: ejecución {run.flow_run_id}")
        self.say(f"Prefect UI: {run.ui_url}")
        return self._follow(run.flow_run_id, args.timeout) if args.wait else 0

    def jobs(self, args: argparse.Namespace) -> int:
        with UnitOfWork(self.engine, readonly=True) as uow:
            query = select(RobotJob).order_by(RobotJob.created_at.desc()).limit(args.limit)
            if args.workspace:
                query = query.where(RobotJob.workspace_id == resolve_workspace(uow.session, args.workspace).id)
            rows = [(batch_ref(uow.session, job).label, job) for job in uow.session.exec(query)]
        width = max([len("lote"), *(len(label) for label, _ in rows)]) + 2
        self.say(f"{'lote':<{width}}{'estado':<12}{'ok':>4}{'err':>5}{'total':>6}  {'creado':<18}id")
        for label, job in rows:
            self.say(
                f"{label:<{width}}{status_label(job.status):<12}{job.success_count:>4}{job.error_count:>5}"
                f"{job.total_items:>6}  {job.created_at:%Y-%m-%d %H:%M}  {job.id}"
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
