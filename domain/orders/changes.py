"""Orders: the one update path (every change emits `field.changed`), stage moves and the event context."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation
from types import SimpleNamespace
from typing import Any

from sqlalchemy import select as sa_select  # Core: sqlmodel's select takes models, not tables
from sqlalchemy.orm.util import identity_key
from sqlmodel import Session, select

from domain import outbox
from domain.db import bulk_update, unnest
from domain.errors import InvalidField, StageNotInPipeline, UnknownOrder, UnknownStage
from domain.events import FieldChanged, OrderContext, OrderCreated, OrderStageChanged
from domain.models import Contact, Order, Stage, table_of, utcnow

STANDARD_FIELDS = (
    "name",
    "total_value",
    "units",
    "shipping_address",
    "shipping_city",
    "shipping_department",
    "tracking_number",
    "carrier",
    "tags",
    "archived",
    "closed",
)
CUSTOM_PREFIX = "custom_fields."


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    return value


def order_context(session: Session, order: Order) -> OrderContext:
    """The order and contact data every order event carries (what automations offer as variables)."""
    return event_context(order, session.get(Contact, order.contact_id) if order.contact_id else None)


def event_context(order: Order | SimpleNamespace, contact: Contact | SimpleNamespace | None) -> OrderContext:
    """An event's order and contact: from the models, or from the rows a set-based change read."""
    return {
        "order": {
            "id": order.id,
            "name": order.name,
            "total_value": _jsonable(order.total_value),
            "tracking_number": order.tracking_number,
            "carrier": order.carrier,
            "shipping_address": order.shipping_address,
            "shipping_city": order.shipping_city,
            "shipping_department": order.shipping_department,
            "pipeline_id": order.pipeline_id,
            "stage_id": order.stage_id,
            "tags": list(order.tags or []),
            "custom_fields": dict(order.custom_fields or {}),
        },
        "contact": {
            "id": contact.id if contact else None,
            "name": contact.name if contact else None,
            "phone": contact.phone if contact else None,
            "email": contact.email if contact else None,
        },
    }


def get_order_for_update(session: Session, order_id: str) -> Order:
    order = session.exec(select(Order).where(Order.id == order_id).with_for_update()).first()
    if order is None:
        raise UnknownOrder(f"Pedido desconocido: {order_id}", order_id=order_id)
    return order


def _coerce(field: str, value: Any) -> Any:
    if field == "total_value":
        try:
            return Decimal(str(value))
        except (InvalidOperation, ValueError) as exc:
            raise InvalidField(f"total_value debe ser un número: {value!r}", field=field) from exc
    if field == "units":
        if not isinstance(value, int) or value < 1:
            raise InvalidField(f"units debe ser un entero ≥ 1: {value!r}", field=field)
    if field == "tags" and not (isinstance(value, list) and all(isinstance(tag, str) for tag in value)):
        raise InvalidField("tags debe ser una lista de textos", field=field)
    if field in ("archived", "closed") and not isinstance(value, bool):
        raise InvalidField(f"{field} debe ser verdadero o falso", field=field)
    return value


def update_order(session: Session, order_id: str, *, changes: dict[str, Any], depth: int = 0) -> list[str]:
    """Apply `changes` (standard fields, or `custom_fields.<key>`); emit one `field.changed` per changed field."""
    return update_orders(session, {order_id: changes}, depth=depth)[order_id]


def update_orders(
    session: Session, changes_by_order: dict[str, dict[str, Any]], *, depth: int = 0
) -> dict[str, list[str]]:
    """Set-based `update_order` for many orders at once: one locking read, batched UPDATEs, one events INSERT."""
    changed_fields, _, events = apply_order_changes(session, changes_by_order, depth=depth)
    outbox.add_events(session, events)
    return changed_fields


_ORDERS = table_of(Order)
_CONTACTS = table_of(Contact)
_CONTACT_COLUMNS = ("id", "name", "phone", "email")


def apply_order_changes(
    session: Session, changes_by_order: dict[str, dict[str, Any]], *, depth: int = 0, now: datetime | None = None
) -> tuple[dict[str, list[str]], dict[str, tuple[str, OrderContext]], list[outbox.NewEvent]]:
    """Lock, change and write the orders; returns (changed fields, each order's workspace and event context after the
    change, the `field.changed` events still to write). The caller writes the events, with its own, in one INSERT."""
    now = now or utcnow()
    ids = sorted(changes_by_order)  # a fixed lock order: two batches touching the same orders cannot deadlock
    rows = (
        session.execute(
            sa_select(_ORDERS, *(_CONTACTS.c[name].label(f"c__{name}") for name in _CONTACT_COLUMNS))
            .select_from(_ORDERS.outerjoin(_CONTACTS, _CONTACTS.c.id == _ORDERS.c.contact_id))
            .where(_ORDERS.c.id.in_(ids))
            .order_by(_ORDERS.c.id)
            .with_for_update(of=_ORDERS)
        )
        .mappings()
        .all()
    )
    changed_fields, contexts, events, writes = _changes_of(rows, changes_by_order, depth=depth, now=now)
    for group in writes.values():
        bulk_update(session, _ORDERS, group)
    _expire_loaded(session, [order_id for group in writes.values() for order_id in (r["id"] for r in group)])
    return changed_fields, contexts, events


# PostgreSQL: lock the orders (in id order, as `apply_order_changes`), set carrier and tracking number where they
# change, and return the rows as they were with their contact, in one round trip. The same change as
# `apply_order_changes(..., {"carrier": c, "tracking_number": t})`, whose Python (`_changes_of`) then builds the
# events from the returned rows; the UPDATE's WHERE is that comparison, so both agree on what changed.
_SHIP_PG = """
WITH v AS (SELECT * FROM {arrays} AS v(id, tracking_number)),
old AS (SELECT o.* FROM orders o JOIN v ON v.id = o.id ORDER BY o.id FOR UPDATE OF o),
u AS (
  UPDATE orders SET carrier = %(carrier)s, tracking_number = COALESCE(v.tracking_number, old.tracking_number),
    updated_at = %(now)s
  FROM v, old WHERE orders.id = v.id AND old.id = v.id AND (old.carrier IS DISTINCT FROM %(carrier)s
    OR (v.tracking_number IS NOT NULL AND old.tracking_number IS DISTINCT FROM v.tracking_number))
)
SELECT old.*, {contact} FROM old LEFT JOIN contacts c ON c.id = old.contact_id ORDER BY old.id
"""


def ship_orders(
    session: Session, tracking_by_order: dict[str, str | None], *, carrier: str, now: datetime
) -> tuple[dict[str, list[str]], dict[str, tuple[str, OrderContext]], list[outbox.NewEvent]]:
    """`apply_order_changes` of a robot success: the carrier, and the tracking number when known."""
    changes = {
        order_id: {"carrier": carrier, **({"tracking_number": tracking} if tracking else {})}
        for order_id, tracking in tracking_by_order.items()
    }
    dialect = session.get_bind().dialect
    if dialect.name != "postgresql":
        return apply_order_changes(session, changes, now=now)
    ids = sorted(changes)
    arrays, params = unnest(dialect, _ORDERS, ["id", "tracking_number"], [
        {"id": order_id, "tracking_number": tracking_by_order[order_id] or None} for order_id in ids])  # fmt: skip
    contact = ", ".join(f"c.{name} AS c__{name}" for name in _CONTACT_COLUMNS)
    rows = (
        session.connection()
        .exec_driver_sql(_SHIP_PG.format(arrays=arrays, contact=contact), {**params, "carrier": carrier, "now": now})
        .mappings()
        .all()
    )
    changed_fields, contexts, events, writes = _changes_of(rows, changes, depth=0, now=now)
    _expire_loaded(session, [order_id for group in writes.values() for order_id in (r["id"] for r in group)])
    return changed_fields, contexts, events


def _changes_of(
    rows: Any, changes_by_order: dict[str, dict[str, Any]], *, depth: int, now: datetime
) -> tuple[dict[str, list[str]], dict[str, tuple[str, OrderContext]], list[outbox.NewEvent],
           dict[tuple[str, ...], list[dict[str, Any]]]]:  # fmt: skip
    """From the locked rows (with `c__` contact columns): changed fields, contexts after the change, the
    `field.changed` events, and the rows to write grouped by the columns they set."""
    ids = sorted(changes_by_order)
    orders = {row["id"]: row for row in rows}
    missing = [order_id for order_id in ids if order_id not in orders]
    if missing:
        raise UnknownOrder(f"Pedido desconocido: {missing[0]}", order_ids=missing)
    changed_fields: dict[str, list[str]] = {}
    contexts: dict[str, tuple[str, OrderContext]] = {}
    events: list[outbox.NewEvent] = []
    writes: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    names = _ORDERS.c.keys()  # once: building the key list per order was measurable on a 10,000-order report
    for order_id in ids:
        row = orders[order_id]
        order = SimpleNamespace(**{name: row[name] for name in names})
        contact = SimpleNamespace(**{n: row[f"c__{n}"] for n in _CONTACT_COLUMNS}) if row["contact_id"] else None
        changed = _apply_changes(order, changes_by_order[order_id])
        changed_fields[order_id] = [field for field, _, _ in changed]
        context = event_context(order, contact)  # built from the row read and the change: no second read
        contexts[order_id] = (order.workspace_id, context)
        if not changed:
            continue
        columns = tuple(sorted({field.split(".", 1)[0] for field, _, _ in changed}))
        writes.setdefault(columns, []).append(
            {"id": order_id, **{name: getattr(order, name) for name in columns}, "updated_at": now}
        )
        for field, old, new in changed:
            event = FieldChanged(field=field, old_value=_jsonable(old), new_value=_jsonable(new),
                                 order=context["order"], contact=context["contact"])  # fmt: skip
            events.append(outbox.NewEvent(order.workspace_id, event, depth))
    return changed_fields, contexts, events, writes


def _expire_loaded(session: Session, order_ids: list[str]) -> None:
    """Orders the session already holds as objects were changed under them by Core: reload them on next access."""
    for order_id in order_ids:
        loaded = session.identity_map.get(identity_key(Order, order_id))
        if loaded is not None:
            session.expire(loaded)


def _apply_changes(order: Any, changes: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    changed: list[tuple[str, Any, Any]] = []
    custom = dict(order.custom_fields or {})
    for field, raw in changes.items():
        if field.startswith(CUSTOM_PREFIX) and len(field) > len(CUSTOM_PREFIX):
            key = field[len(CUSTOM_PREFIX) :]
            if custom.get(key) != raw:
                changed.append((field, custom.get(key), raw))
                custom[key] = raw
            continue
        if field not in STANDARD_FIELDS:
            raise InvalidField(f"Campo de pedido desconocido: {field}", field=field)
        value = _coerce(field, raw)
        old = getattr(order, field)
        if old != value:
            changed.append((field, old, value))
            setattr(order, field, value)
    if any(field.startswith(CUSTOM_PREFIX) for field, _, _ in changed):
        order.custom_fields = custom
    return changed


def move_order_to_stage(session: Session, order_id: str, *, stage_id: str, depth: int = 0) -> bool:
    """Move an order to another stage of its own pipeline; emits `order.stage_changed`. False if already there."""
    order = get_order_for_update(session, order_id)
    stage = session.get(Stage, stage_id)
    if stage is None:
        raise UnknownStage(f"Etapa desconocida: {stage_id}", stage_id=stage_id)
    if stage.pipeline_id != order.pipeline_id:
        raise StageNotInPipeline(
            "La etapa no pertenece al pipeline del pedido", stage_id=stage_id, pipeline_id=order.pipeline_id
        )
    if order.stage_id == stage_id:
        return False
    from_stage = order.stage_id
    order.stage_id = stage_id
    order.updated_at = utcnow()
    session.add(order)
    session.flush()
    context = order_context(session, order)
    event = OrderStageChanged(pipeline_id=order.pipeline_id, from_stage_id=from_stage, to_stage_id=stage_id,
                              order=context["order"], contact=context["contact"])  # fmt: skip
    outbox.add_event(session, event, workspace_id=order.workspace_id, depth=depth)
    return True


def create_order(session: Session, order: Order, *, depth: int = 0) -> Order:
    """Add an order and emit `order.created`."""
    stage = session.get(Stage, order.stage_id)
    if stage is None or stage.pipeline_id != order.pipeline_id:
        raise StageNotInPipeline("La etapa no pertenece al pipeline del pedido", stage_id=order.stage_id)
    session.add(order)
    session.flush()
    context = order_context(session, order)
    event = OrderCreated(order=context["order"], contact=context["contact"])
    outbox.add_event(session, event, workspace_id=order.workspace_id, depth=depth)
    return order
