"""The batch summary operators know (the previous Slack robot's format), as data and as text."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from sqlmodel import Session

from domain.coverage import department_abbreviation, normalize
from domain.jobs import ItemView, get_job_view
from domain.models import ItemStatus
from domain.money import format_cop
from domain.robot_input import _last_digits


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

    def as_dict(self) -> dict:
        return asdict(self)


def _city_label(view: ItemView) -> str:
    if view.item.robot_input and view.item.robot_input.get("ciudad"):
        return str(view.item.robot_input["ciudad"])
    city = normalize(view.order.shipping_city)
    dept = department_abbreviation(view.order.shipping_department) or normalize(view.order.shipping_department)
    return f"{city} ({dept})" if dept else city


def _line(view: ItemView) -> SummaryLine:
    contact = view.contact
    return SummaryLine(
        item_id=view.item.id,
        order_id=view.order.id,
        order_name=view.order.name,
        status=view.item.status,
        tracking_number=view.item.tracking_number,
        recipient=(contact.name if contact and contact.name else "Cliente").strip(),
        address=(view.order.shipping_address or "Sin direccion").strip(),
        city=_city_label(view),
        phone=_last_digits(contact.phone if contact else None),
        total=format_cop(view.order.total_value),
        error_type=view.item.error_type,
        error_message=view.item.error_message,
    )


def batch_summary(session: Session, job_id: str) -> BatchSummary:
    view = get_job_view(session, job_id)
    lines = [_line(item) for item in view.items]
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
    )


def render_summary_text(summary: BatchSummary) -> str:
    """Exactly the operators' reference format: two spaces between fields, emojis, `CITY (DEPT)`, `$139.900`."""
    out = [f"✅ {len(summary.successes)} pedido(s) creado(s):"]
    for s in summary.successes:
        out.append(
            f"• #{s.tracking_number} - {s.recipient}  📍 {s.address}  🏙️ {s.city}  📱 {s.phone}  💰 {s.total}"
        )
    if summary.rejected:
        out.append("❌ Pedidos rechazados:")
        for r in summary.rejected:
            out.append(f"• {r.recipient}  📍 {r.address}  🏙️ {r.city}  ❌ {r.error_message or 'Error desconocido'}")
    return "\n".join(out) + "\n"
