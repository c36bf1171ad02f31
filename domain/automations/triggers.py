"""The trigger catalog, as data: what can start an automation, its Spanish label, category, filters and variables.

The UI or an API lists `trigger_catalog()`; `domain.automations.rules` validates an automation's trigger against it and
`trigger_matches` applies the trigger's filters to a typed automations event (`domain.events`).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from domain.events import (
    FIELD_CHANGED,
    ORDER_CREATED,
    ORDER_STAGE_CHANGED,
    ROBOT_COORD_COMPLETED,
    AutomationEvent,
    FieldChanged,
    OrderStageChanged,
)


class TriggerVariable(BaseModel):
    path: str = Field(description="Name used in templates, e.g. `orden.tracking_number` → `{{orden.tracking_number}}`")
    label: str = Field(description="What the variable holds, as users read it")


class TriggerFilter(BaseModel):
    name: str = Field(description="Key in the automation's trigger_config")
    label: str
    required: bool = False


class TriggerSpec(BaseModel):
    model_config = ConfigDict(frozen=True)

    type: str
    label: str
    category: str
    description: str
    filters: list[TriggerFilter]
    variables: list[TriggerVariable]


ORDER_VARIABLES = [
    TriggerVariable(path="orden.id", label="ID del pedido"),
    TriggerVariable(path="orden.nombre", label="Nombre del pedido"),
    TriggerVariable(path="orden.valor", label="Valor del pedido"),
    TriggerVariable(path="orden.total_formato", label="Valor del pedido con formato ($139.900)"),
    TriggerVariable(path="orden.tracking_number", label="Número de guía"),
    TriggerVariable(path="orden.carrier", label="Transportadora"),
    TriggerVariable(path="orden.ciudad_envio", label="Ciudad de envío"),
    TriggerVariable(path="orden.direccion_envio", label="Dirección de envío"),
    TriggerVariable(path="orden.departamento_envio", label="Departamento de envío"),
    TriggerVariable(path="orden.pipeline_id", label="ID del pipeline del pedido"),
    TriggerVariable(path="orden.etapa_id", label="ID de la etapa del pedido"),
    TriggerVariable(path="orden.etiquetas", label="Etiquetas del pedido"),
    TriggerVariable(path="contacto.nombre", label="Nombre del contacto"),
    TriggerVariable(path="contacto.telefono", label="Teléfono del contacto"),
    TriggerVariable(path="contacto.email", label="Email del contacto"),
]
# Custom fields are offered as `orden.campos.<clave>`; they vary per workspace so they are not listed one by one.
CUSTOM_FIELD_PREFIX = "orden.campos."

_PIPELINE_FILTER = TriggerFilter(name="pipeline_id", label="Solo pedidos de este pipeline")

TRIGGERS: dict[str, TriggerSpec] = {
    spec.type: spec
    for spec in [
        TriggerSpec(
            type=ROBOT_COORD_COMPLETED,
            label="Robot Coordinadora completado",
            category="Logistica",
            description="El robot creó el pedido en el portal de Coordinadora y devolvió el número de guía.",
            filters=[_PIPELINE_FILTER],
            variables=[
                *ORDER_VARIABLES,
                TriggerVariable(path="robot.job_id", label="ID del lote del robot"),
                TriggerVariable(path="robot.item_id", label="ID del ítem del robot"),
            ],
        ),
        TriggerSpec(
            type=ORDER_STAGE_CHANGED,
            label="Pedido cambió de etapa",
            category="Pedidos",
            description="Un pedido pasó a otra etapa de su pipeline.",
            filters=[_PIPELINE_FILTER, TriggerFilter(name="stage_id", label="Solo al llegar a esta etapa")],
            variables=[
                *ORDER_VARIABLES,
                TriggerVariable(path="evento.etapa_anterior_id", label="ID de la etapa anterior"),
                TriggerVariable(path="evento.etapa_nueva_id", label="ID de la etapa nueva"),
            ],
        ),
        TriggerSpec(
            type=FIELD_CHANGED,
            label="Campo del pedido cambió",
            category="Pedidos",
            description="Cambió el valor de un campo del pedido (estándar o personalizado).",
            filters=[TriggerFilter(name="field", label="Campo", required=True), _PIPELINE_FILTER],
            variables=[
                *ORDER_VARIABLES,
                TriggerVariable(path="evento.campo", label="Campo que cambió"),
                TriggerVariable(path="evento.valor_anterior", label="Valor anterior"),
                TriggerVariable(path="evento.valor_nuevo", label="Valor nuevo"),
            ],
        ),
        TriggerSpec(
            type=ORDER_CREATED,
            label="Pedido creado",
            category="Pedidos",
            description="Se creó un pedido.",
            filters=[_PIPELINE_FILTER],
            variables=list(ORDER_VARIABLES),
        ),
    ]
}


def trigger_catalog() -> list[dict[str, Any]]:
    """The catalog as JSON-ready dicts, in a stable order (for a UI or an API)."""
    return [spec.model_dump() for spec in TRIGGERS.values()]


def get_trigger(trigger_type: str) -> TriggerSpec | None:
    return TRIGGERS.get(trigger_type)


def offers_variable(trigger_type: str, path: str) -> bool:
    spec = TRIGGERS.get(trigger_type)
    if spec is None:
        return False
    if path.startswith(CUSTOM_FIELD_PREFIX) and len(path) > len(CUSTOM_FIELD_PREFIX):
        return True
    return any(variable.path == path for variable in spec.variables)


def trigger_matches(trigger_type: str, config: dict[str, Any], event: AutomationEvent) -> bool:
    """Whether `event` passes this trigger's type and its configured filters."""
    if trigger_type != event.event_type:
        return False
    pipeline_id = config.get("pipeline_id")
    if pipeline_id and event.order.get("pipeline_id") != pipeline_id:
        return False
    if isinstance(event, OrderStageChanged):
        stage_id = config.get("stage_id")
        if stage_id and event.to_stage_id != stage_id:
            return False
    if isinstance(event, FieldChanged):
        if event.field != config.get("field"):
            return False
    return True
