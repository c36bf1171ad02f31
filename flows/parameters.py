"""The operator's form, beyond what the flows' signatures say: the rule between its fields and the run's own key.

The flows take flat parameters (flows/submit.py): a workspace and a stage by name or id, an optional list of
orders, an optional idempotency key; a batch to retry by its reference «<workspace> #<n>» (domain/batches/lookups.py).
"""

from __future__ import annotations

from collections.abc import Sequence


class InvalidSelection(ValueError):
    """The form asks for a stage and a list of orders at once."""


def check_selection(stage: str, order_ids: Sequence[str]) -> None:
    if stage.strip() and order_ids:
        raise InvalidSelection("Indique una etapa o una lista de pedidos, no ambas")


def run_key(run_id: str) -> str:
    """The idempotency key of a job created by a run whose operator gave none: a resumed run re-executes its flow
    from the top and must find the job it created, never create a second one."""
    return f"run:{run_id}"
