"""Robot results as the domain tests write them."""

from __future__ import annotations

from domain import outbox
from domain.batches.results import ItemResult


def ok(item_id, tracking="7600123"):
    return ItemResult(item_id=item_id, status="success", tracking_number=tracking)


def err(item_id, message="Error fatal en el procesamiento del batch", kind="unknown"):
    return ItemResult(item_id=item_id, status="error", error_type=kind, error_message=message)


def events(tx, event_type):
    return outbox.events_of(tx.session, event_type=event_type)
