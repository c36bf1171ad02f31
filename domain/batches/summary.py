"""The batch summary operators know (the previous Slack robot's format), as data and as text."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from sqlmodel import Session, col, select

from domain.batches.jobs import ItemView, JobView
from domain.batches.places import item_place
from domain.batches.results import pedido_label
from domain.batches.robot_input import _last_digits
from domain.models import DispatchState, ItemStatus, ResolvedBy, RobotJobItem
from domain.money import format_cop


@dataclass(frozen=True)
class SummaryLine:
    item_id: str
    order_id: str
    order_name: str
    status: str
    tracking_number: str | None
    recipient: str
    address: str
    city: str
    phone: str
    total: str
    error_type: str | None
    error_message: str | None
    possible_duplicate: str | None = None  # set when the same order was created on the portal by another item

    @property
    def pedido(self) -> str:
        """What operators read for the courier's pedido number."""
        return pedido_label(self.tracking_number)


@dataclass(frozen=True)
class BatchSummary:
    job_id: str
    job_status: str
    success_count: int
    error_count: int
    total_items: int
    pending_count: int
    failure_reason: str | None
    successes: list[SummaryLine]
    rejected: list[SummaryLine]
    pending: list[SummaryLine] = field(default_factory=list)
    lines: list[SummaryLine] = field(default_factory=list)  # every item, in the batch's order

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


STATUS_LABEL = {
    "pending": "pendiente",
    "processing": "en proceso",
    "completed": "completado",
    "failed": "fallido",
    "success": "creado",
    "error": "error",
}


def status_label(status: str) -> str:
    """A job's or an item's status in the operators' words."""
    return STATUS_LABEL.get(status, status)


def _line(view: ItemView, duplicate: str | None = None) -> SummaryLine:
    contact = view.contact
    return SummaryLine(
        item_id=view.item.id,
        order_id=view.order.id,
        order_name=view.order.name,
        status=view.item.status,
        tracking_number=view.item.tracking_number,
        recipient=(contact.name if contact and contact.name else "Cliente").strip(),
        address=(view.order.shipping_address or "Sin direccion").strip(),
        city=item_place(view.item.robot_input, view.order).label,
        phone=_last_digits(contact.phone if contact else None),
        total=format_cop(view.order.total_value),
        error_type=view.item.error_type,
        error_message=view.item.error_message,
        possible_duplicate=duplicate,
    )


def possible_duplicates(session: Session, view: JobView) -> dict[str, str]:
    """Items of this job whose order the robot also created from another job: item id → what operators read.

    An item counts when it reached the robot and the robot did not report it failed: a success, a pending item
    already sent, or one we closed ourselves after sending (our closure is not the portal's answer).
    """
    sent = view.job.dispatch_state not in (DispatchState.NOT_DISPATCHED, DispatchState.REFUSED)
    candidates = {
        v.item.id: v
        for v in view.items
        if v.item.robot_input is not None
        and (v.item.status == ItemStatus.SUCCESS or sent)
        and not (v.item.status == ItemStatus.ERROR and v.item.resolved_by == ResolvedBy.ROBOT)
    }
    if not candidates:
        return {}
    others: dict[str, list[tuple[str, str | None]]] = {}
    for order_id, job_id, tracking in session.exec(
        select(RobotJobItem.order_id, RobotJobItem.job_id, RobotJobItem.tracking_number).where(
            col(RobotJobItem.order_id).in_([v.item.order_id for v in candidates.values()]),
            RobotJobItem.job_id != view.job.id,
            RobotJobItem.status == ItemStatus.SUCCESS,
        )
    ):
        others.setdefault(order_id, []).append((job_id, tracking))
    flags = {}
    for item_id, v in candidates.items():
        elsewhere = others.get(v.item.order_id)
        if not elsewhere:
            continue
        numbers = [f"#{pedido_label(tracking)} (lote {job_id[:8]})" for job_id, tracking in elsewhere]
        if v.item.status == ItemStatus.SUCCESS:
            numbers.insert(0, f"#{pedido_label(v.item.tracking_number)} (este lote)")
            flags[item_id] = "posible duplicado en el portal: " + ", ".join(numbers)
        else:
            flags[item_id] = "posible duplicado: ya enviado al robot y creado también como " + ", ".join(numbers)
    return flags


def batch_summary(session: Session, job_id: str) -> BatchSummary:
    """The summary alone, from the batch's one read model (domain.batches.view.load_batch)."""
    from domain.batches.view import load_batch  # view builds on this module

    return load_batch(session, job_id).summary


def summarise(view: JobView, duplicates: dict[str, str]) -> BatchSummary:
    """The summary of a loaded batch (no database read)."""
    lines = [_line(item, duplicates.get(item.item.id)) for item in view.items]
    return BatchSummary(
        job_id=view.job.id,
        job_status=view.job.status,
        success_count=view.job.success_count,
        error_count=view.job.error_count,
        total_items=view.job.total_items,
        pending_count=sum(1 for line in lines if line.status == ItemStatus.PENDING),
        failure_reason=view.job.failure_reason,
        successes=[line for line in lines if line.status == ItemStatus.SUCCESS],
        rejected=[line for line in lines if line.status == ItemStatus.ERROR],
        pending=[line for line in lines if line.status == ItemStatus.PENDING],
        lines=lines,
    )


def render_summary_text(summary: BatchSummary) -> str:
    """Exactly the operators' reference format: two spaces between fields, emojis, `CITY (DEPT)`, `$139.900`."""
    out = [f"✅ {len(summary.successes)} pedido(s) creado(s):"]
    for s in summary.successes:
        out.append(f"• #{s.pedido} - {s.recipient}  📍 {s.address}  🏙️ {s.city}  📱 {s.phone}  💰 {s.total}" + _flag(s))
    if summary.rejected:
        out.append("❌ Pedidos rechazados:")
        for r in summary.rejected:
            out.append(
                f"• {r.recipient}  📍 {r.address}  🏙️ {r.city}  ❌ {r.error_message or 'Error desconocido'}" + _flag(r)
            )
    flagged = [p for p in summary.pending if p.possible_duplicate]
    if flagged:
        out.append("⏳ Pendientes:")
        for p in flagged:
            out.append(f"• {p.recipient}  📍 {p.address}  🏙️ {p.city}" + _flag(p))
    return "\n".join(out) + "\n"


def _flag(line: SummaryLine) -> str:
    return f"  ⚠️ {line.possible_duplicate}" if line.possible_duplicate else ""
