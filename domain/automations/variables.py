"""Automation variables: the Spanish names users write (`{{orden.tracking_number}}`) and template rendering.

Variables are built from a typed automations event (`domain.events`): its English `order`/`contact` dicts and the
event's own fields (docs/architecture.md, "Domain events").
A missing variable renders as empty text; `render` reports which ones were missing so a preview can show them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from pydantic import BaseModel

from domain.events import AutomationEvent, FieldChanged, OrderStageChanged, RobotCoordCompleted
from domain.money import format_cop, to_decimal

VARIABLE_PATTERN = re.compile(r"\{\{\s*([A-Za-z0-9_.\-]+)\s*\}\}")

_ORDER_FIELDS = {
    "id": "orden.id",
    "name": "orden.nombre",
    "tracking_number": "orden.tracking_number",
    "carrier": "orden.carrier",
    "shipping_city": "orden.ciudad_envio",
    "shipping_address": "orden.direccion_envio",
    "shipping_department": "orden.departamento_envio",
    "pipeline_id": "orden.pipeline_id",
    "stage_id": "orden.etapa_id",
}
_CONTACT_FIELDS = {"name": "contacto.nombre", "phone": "contacto.telefono", "email": "contacto.email"}


class Rendered(BaseModel):
    text: str
    missing: list[str]


def _plain_number(value: Any) -> Any:
    """`139900.00` → `139900`: users write amounts without cents."""
    amount = to_decimal(value)
    if amount is None:
        return value
    normalized = amount.quantize(Decimal("1")) if amount == amount.to_integral_value() else amount.normalize()
    return str(normalized)


def build_variables(event: AutomationEvent) -> dict[str, Any]:
    """The flat `{'orden.nombre': ..., 'contacto.telefono': ...}` map of an event."""
    # Read as mappings: a key an old payload lacks is a missing variable (rendered empty), not an error.
    order: Mapping[str, Any] = event.order
    contact: Mapping[str, Any] = event.contact
    variables: dict[str, Any] = {path: order.get(key) for key, path in _ORDER_FIELDS.items()}
    variables.update({path: contact.get(key) for key, path in _CONTACT_FIELDS.items()})
    variables["orden.valor"] = _plain_number(order.get("total_value"))
    variables["orden.total_formato"] = format_cop(order.get("total_value")) or None
    variables["orden.etiquetas"] = list(order.get("tags") or [])
    for key, value in (order.get("custom_fields") or {}).items():
        variables[f"orden.campos.{key}"] = value
    if isinstance(event, RobotCoordCompleted):
        variables["robot.job_id"] = event.job_id
        variables["robot.item_id"] = event.item_id
    elif isinstance(event, OrderStageChanged):
        variables["evento.etapa_anterior_id"] = event.from_stage_id
        variables["evento.etapa_nueva_id"] = event.to_stage_id
    elif isinstance(event, FieldChanged):
        variables["evento.campo"] = event.field
        variables["evento.valor_anterior"] = event.old_value
        variables["evento.valor_nuevo"] = event.new_value
    return variables


def variables_in(template: str) -> list[str]:
    """Variable names used by a template, in order of first use."""
    return list(dict.fromkeys(VARIABLE_PATTERN.findall(template or "")))


def _as_text(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(str(item) for item in value)
    if isinstance(value, bool):
        return "sí" if value else "no"
    return str(value)


def _is_missing(value: Any) -> bool:
    return value is None or value == "" or value == []


def render(template: str, variables: dict[str, Any]) -> Rendered:
    """Replace every `{{name}}`; missing or empty variables become '' and are listed in `missing`."""
    missing: list[str] = []

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        value = variables.get(name)
        if _is_missing(value):
            if name not in missing:
                missing.append(name)
            return ""
        return _as_text(value)

    return Rendered(text=VARIABLE_PATTERN.sub(substitute, template or ""), missing=missing)


def preview(template: str, variables: dict[str, Any]) -> Rendered:
    """What a template would say for these variables, and which variables it lacked (for the editor's preview)."""
    return render(template, variables)


def render_value(value: Any, variables: dict[str, Any], missing: list[str] | None = None) -> Any:
    """Render every string inside a JSON-like value (e.g. a webhook body); collects missing names into `missing`."""
    if isinstance(value, str):
        rendered = render(value, variables)
        if missing is not None:
            missing.extend(name for name in rendered.missing if name not in missing)
        return rendered.text
    if isinstance(value, list):
        return [render_value(item, variables, missing) for item in value]
    if isinstance(value, dict):
        return {key: render_value(item, variables, missing) for key, item in value.items()}
    return value
