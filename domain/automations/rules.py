"""Automations: what a user saves ("when this trigger fires, if these conditions hold, do these actions"), the
validation run when it is saved, rendering of an action's texts, matching automations to an event, and the log.

The tables live in domain.automations.models; the runner that executes actions is automations/runner.py.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails
from sqlalchemy import true
from sqlmodel import Session, col, select

from domain.automations import triggers
from domain.automations.conditions import ConditionGroup
from domain.automations.models import Automation, AutomationActionRun, AutomationExecution
from domain.automations.variables import render, render_value, variables_in
from domain.errors import DomainError
from domain.events import AutomationEvent
from domain.models import Pipeline, Stage, utcnow
from domain.orders.changes import CUSTOM_PREFIX, STANDARD_FIELDS

MAX_ACTIONS = 10
MAX_CASCADE_DEPTH = 3  # an event at this depth runs no automation: the chain stops and the log says so


class InvalidAutomation(DomainError):
    """The automation cannot be saved; `errors` lists each problem as {'loc': 'actions.0.stage_id', 'msg': ...}."""

    code = "invalid_automation"

    def __init__(self, errors: list[dict[str, str]]):
        super().__init__("La automatización no es válida: " + "; ".join(f"{e['loc']}: {e['msg']}" for e in errors))
        self.errors = errors
        self.details = {"errors": errors}


# --- Actions ----------------------------------------------------------------------------------------------------


class _Action(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ChangeStageAction(_Action):
    type: Literal["change_stage"] = "change_stage"
    stage_id: str = Field(min_length=1, description="Target stage; it must belong to the order's own pipeline")


class UpdateFieldAction(_Action):
    type: Literal["update_field"] = "update_field"
    field: str = Field(min_length=1, description="Standard order field, or `custom_fields.<key>`")
    value: Any = Field(description="New value; text may use variables such as {{orden.tracking_number}}")

    @field_validator("field")
    @classmethod
    def _known_field(cls, value: str) -> str:
        if value in STANDARD_FIELDS or (value.startswith(CUSTOM_PREFIX) and len(value) > len(CUSTOM_PREFIX)):
            return value
        raise ValueError(f"Campo desconocido: '{value}' (usa un campo estándar o custom_fields.<clave>)")


class SendWhatsappTemplateAction(_Action):
    type: Literal["send_whatsapp_template"] = "send_whatsapp_template"
    to: str = Field(default="{{contacto.telefono}}", min_length=1, description="Recipient phone")
    template_name: str = Field(min_length=1, max_length=200)
    language: str = Field(default="es", min_length=2, max_length=10)
    parameters: list[str] = Field(default_factory=list, description="Body parameters {{1}}, {{2}}... in order")


class SendWhatsappTextAction(_Action):
    type: Literal["send_whatsapp_text"] = "send_whatsapp_text"
    to: str = Field(default="{{contacto.telefono}}", min_length=1)
    text: str = Field(min_length=1, max_length=4096)


class WebhookAction(_Action):
    type: Literal["webhook"] = "webhook"
    url: str = Field(min_length=1, max_length=2000, description="http(s) URL, e.g. a Slack incoming webhook")
    message: str | None = Field(default=None, description="Sent as {'text': message} when no body is given")
    body: dict[str, Any] | None = Field(default=None, description="JSON body; its texts may use variables")

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.lower().startswith(("http://", "https://")):
            raise ValueError("La URL del webhook debe empezar por http:// o https://")
        return value

    @model_validator(mode="after")
    def _has_content(self) -> WebhookAction:
        if self.message is None and self.body is None:
            raise ValueError("El webhook necesita un mensaje o un cuerpo JSON")
        return self


class CreateTaskAction(_Action):
    type: Literal["create_task"] = "create_task"
    title: str = Field(min_length=1, max_length=300)
    description: str | None = Field(default=None, max_length=2000)
    due_in_hours: int | None = Field(default=None, ge=0, le=24 * 365)


Action = Annotated[
    ChangeStageAction
    | UpdateFieldAction
    | SendWhatsappTemplateAction
    | SendWhatsappTextAction
    | WebhookAction
    | CreateTaskAction,
    Field(discriminator="type"),
]
_ACTIONS = TypeAdapter(list[Action])

EXTERNAL_ACTIONS = frozenset({"send_whatsapp_template", "send_whatsapp_text", "webhook"})
ORDER_CHANGING_ACTIONS = frozenset({"change_stage", "update_field"})


class AutomationSpec(BaseModel):
    """An automation as a user saves it."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    trigger_type: str = Field(description="A type of the trigger catalog, e.g. robot.coord.completed")
    trigger_config: dict[str, Any] = Field(default_factory=dict, description="The trigger's filters")
    conditions: ConditionGroup | None = None
    actions: list[Action] = Field(min_length=1, max_length=MAX_ACTIONS)
    enabled: bool = True


def parse_actions(raw: list[dict[str, Any]]) -> list[Action]:
    return _ACTIONS.validate_python(raw)


# --- Validation -------------------------------------------------------------------------------------------------


def _loc(parts: tuple[Any, ...]) -> str:
    # Drop pydantic's union tags ("change_stage", "function-after[...]") so the location reads like the JSON path.
    kept = [str(p) for p in parts if not (isinstance(p, str) and (p in _ACTION_TYPES or "[" in p))]
    return ".".join(kept)


_ACTION_TYPES = {
    "change_stage",
    "update_field",
    "send_whatsapp_template",
    "send_whatsapp_text",
    "webhook",
    "create_task",
    "condition",
    "group",
}


def _spanish(error: ErrorDetails) -> str:
    kind = error["type"]
    if kind == "too_long" and error["loc"][:1] == ("actions",):
        return f"Máximo {MAX_ACTIONS} acciones por automatización"
    if kind == "too_short" and error["loc"][:1] == ("actions",):
        return "La automatización necesita al menos una acción"
    if kind == "enum":
        return f"Operador desconocido: '{error.get('input')}'"
    if kind == "union_tag_invalid":
        return f"Tipo de acción desconocido: '{(error.get('ctx') or {}).get('tag')}'"
    if kind == "union_tag_not_found":
        return "Cada acción necesita un 'type'"
    if kind == "missing":
        return "Campo requerido"
    if kind == "extra_forbidden":
        return "Campo no permitido"
    if kind == "value_error":
        return str((error.get("ctx") or {}).get("error", error["msg"]))
    return error["msg"]


def _pydantic_errors(exc: ValidationError) -> list[dict[str, str]]:
    errors: list[dict[str, str]] = []
    for error in exc.errors():
        loc = _loc(error["loc"])
        # A bad condition fails both union branches (Condition and ConditionGroup); report each place once.
        if any(e["loc"] == loc for e in errors):
            continue
        errors.append({"loc": loc, "msg": _spanish(error)})
    return errors


def _action_templates(action: Any) -> list[tuple[str, str]]:
    """(field name, text) of every text of an action that may hold variables."""
    texts: list[tuple[str, str]] = []
    for name in ("to", "text", "message", "title", "description"):
        value = getattr(action, name, None)
        if isinstance(value, str):
            texts.append((name, value))
    if isinstance(action, SendWhatsappTemplateAction):
        texts.extend((f"parameters.{i}", value) for i, value in enumerate(action.parameters))
    if isinstance(action, UpdateFieldAction) and isinstance(action.value, str):
        texts.append(("value", action.value))
    if isinstance(action, WebhookAction) and action.body is not None:
        strings: list[str] = []
        _collect_strings(action.body, strings)
        texts.extend(("body", value) for value in strings)
    return texts


def _collect_strings(value: Any, into: list[str]) -> None:
    if isinstance(value, str):
        into.append(value)
    elif isinstance(value, list):
        for item in value:
            _collect_strings(item, into)
    elif isinstance(value, dict):
        for item in value.values():
            _collect_strings(item, into)


def _workspace_stage(session: Session, workspace_id: str, stage_id: str) -> Stage | None:
    return session.exec(
        select(Stage)
        .join(Pipeline, col(Pipeline.id) == col(Stage.pipeline_id))
        .where(Stage.id == stage_id, Pipeline.workspace_id == workspace_id)
    ).first()


def validate_automation(
    session: Session, *, workspace_id: str, data: dict[str, Any] | AutomationSpec
) -> AutomationSpec:
    """Parse and check an automation against the catalog and the workspace; raise InvalidAutomation listing all."""
    try:
        spec = data if isinstance(data, AutomationSpec) else AutomationSpec.model_validate(data)
    except ValidationError as exc:
        raise InvalidAutomation(_pydantic_errors(exc)) from None

    errors: list[dict[str, str]] = []
    trigger = triggers.get_trigger(spec.trigger_type)
    if trigger is None:
        raise InvalidAutomation([{"loc": "trigger_type", "msg": f"Disparador desconocido: '{spec.trigger_type}'"}])

    # Trigger filters
    allowed = {f.name for f in trigger.filters}
    for key in spec.trigger_config:
        if key not in allowed:
            errors.append({"loc": f"trigger_config.{key}", "msg": f"Filtro no disponible para '{trigger.label}'"})
    for f in trigger.filters:
        if f.required and not spec.trigger_config.get(f.name):
            errors.append({"loc": f"trigger_config.{f.name}", "msg": f"Filtro requerido: {f.label}"})
    pipeline_id = spec.trigger_config.get("pipeline_id")
    if pipeline_id:
        pipeline = session.get(Pipeline, pipeline_id)
        if pipeline is None or pipeline.workspace_id != workspace_id:
            errors.append({"loc": "trigger_config.pipeline_id", "msg": "Pipeline desconocido en este espacio"})
    stage_filter = spec.trigger_config.get("stage_id")
    if stage_filter:
        stage = _workspace_stage(session, workspace_id, stage_filter)
        if stage is None:
            errors.append({"loc": "trigger_config.stage_id", "msg": "Etapa desconocida en este espacio"})
        elif pipeline_id and stage.pipeline_id != pipeline_id:
            errors.append({"loc": "trigger_config.stage_id", "msg": "La etapa no pertenece al pipeline del filtro"})
        else:
            pipeline_id = pipeline_id or stage.pipeline_id  # the orders that match live in this pipeline

    # Conditions test variables the trigger offers
    if spec.conditions is not None:
        for name in spec.conditions.fields():
            if not triggers.offers_variable(spec.trigger_type, name):
                errors.append({"loc": "conditions", "msg": f"Variable desconocida en la condición: '{name}'"})

    for index, action in enumerate(spec.actions):
        if isinstance(action, ChangeStageAction):
            stage = _workspace_stage(session, workspace_id, action.stage_id)
            if stage is None:
                errors.append({"loc": f"actions.{index}.stage_id", "msg": "Etapa desconocida en este espacio"})
            elif pipeline_id and stage.pipeline_id != pipeline_id:
                errors.append(
                    {
                        "loc": f"actions.{index}.stage_id",
                        "msg": "La etapa pertenece a otro pipeline: "
                        "solo se puede mover el pedido dentro de su pipeline",
                    }
                )
        for field_name, text in _action_templates(action):
            for name in variables_in(text):
                if not triggers.offers_variable(spec.trigger_type, name):
                    errors.append(
                        {"loc": f"actions.{index}.{field_name}", "msg": f"Variable desconocida: '{{{{{name}}}}}'"}
                    )
    if errors:
        raise InvalidAutomation(errors)
    return spec


def save_automation(
    session: Session,
    *,
    workspace_id: str,
    data: dict[str, Any] | AutomationSpec,
    automation_id: str | None = None,
) -> Automation:
    """Validate and store an automation (new, or replacing `automation_id` of the same workspace)."""
    spec = validate_automation(session, workspace_id=workspace_id, data=data)
    values: dict[str, Any] = dict(
        name=spec.name,
        trigger_type=spec.trigger_type,
        trigger_config=spec.trigger_config,
        conditions=spec.conditions.model_dump(mode="json") if spec.conditions else None,
        actions=[action.model_dump(mode="json") for action in spec.actions],
        enabled=spec.enabled,
    )
    if automation_id is None:
        automation = Automation(workspace_id=workspace_id, **values)
    else:
        existing = session.get(Automation, automation_id)
        if existing is None or existing.workspace_id != workspace_id:
            raise InvalidAutomation([{"loc": "id", "msg": "Automatización desconocida"}])
        automation = existing
        for key, value in values.items():
            setattr(automation, key, value)
        automation.updated_at = utcnow()
    session.add(automation)
    session.flush()
    return automation


def set_enabled(session: Session, automation_id: str, *, enabled: bool) -> None:
    automation = session.get(Automation, automation_id)
    if automation is None:
        raise InvalidAutomation([{"loc": "id", "msg": "Automatización desconocida"}])
    automation.enabled = enabled
    automation.updated_at = utcnow()
    session.add(automation)
    session.flush()


# --- Rendering --------------------------------------------------------------------------------------------------


class RenderedAction(BaseModel):
    action: dict[str, Any] = Field(description="The action with every text rendered")
    missing: list[str] = Field(default_factory=list, description="Variables that were missing (rendered empty)")


def render_action(action: Any, variables: dict[str, Any]) -> RenderedAction:
    """The action's texts with variables replaced; also the editor's preview of an action."""
    data = action.model_dump(mode="json")
    missing: list[str] = []
    for name in ("to", "text", "message", "title", "description"):
        if isinstance(data.get(name), str):
            rendered = render(data[name], variables)
            data[name] = rendered.text
            missing.extend(m for m in rendered.missing if m not in missing)
    if "parameters" in data:
        data["parameters"] = render_value(data["parameters"], variables, missing)
    if data.get("body") is not None:
        data["body"] = render_value(data["body"], variables, missing)
    if data.get("type") == "update_field" and isinstance(data.get("value"), str):
        rendered = render(data["value"], variables)
        data["value"] = rendered.text
        missing.extend(m for m in rendered.missing if m not in missing)
    return RenderedAction(action=data, missing=missing)


def preview_automation(spec: AutomationSpec, variables: dict[str, Any]) -> list[RenderedAction]:
    return [render_action(action, variables) for action in spec.actions]


# --- Matching and the log ---------------------------------------------------------------------------------------


def matching_automations(session: Session, *, workspace_id: str, event: AutomationEvent) -> list[Automation]:
    """Enabled automations of the workspace whose trigger type and filters match the event, oldest first."""
    candidates = session.exec(
        select(Automation)
        .where(
            Automation.workspace_id == workspace_id,
            Automation.trigger_type == event.event_type,
            col(Automation.enabled) == true(),
        )
        .order_by(col(Automation.created_at), col(Automation.id))
    ).all()
    return [
        automation
        for automation in candidates
        if triggers.trigger_matches(automation.trigger_type, automation.trigger_config or {}, event)
    ]


class ActionRunView(BaseModel):
    index: int
    type: str
    status: str
    attempts: int
    duration_ms: int | None
    error: str | None
    result: dict[str, Any] | None


class ExecutionView(BaseModel):
    id: str
    automation_id: str
    event_id: str
    event_type: str
    order_id: str | None
    depth: int
    status: str
    error: str | None
    started_at: datetime
    finished_at: datetime | None
    actions: list[ActionRunView]


def execution_log(
    session: Session, *, automation_id: str | None = None, event_id: str | None = None, limit: int = 200
) -> list[ExecutionView]:
    """Executions with their action runs, oldest first."""
    query = select(AutomationExecution)
    if automation_id:
        query = query.where(AutomationExecution.automation_id == automation_id)
    if event_id:
        query = query.where(AutomationExecution.event_id == event_id)
    executions = session.exec(
        query.order_by(col(AutomationExecution.started_at), col(AutomationExecution.id)).limit(limit)
    ).all()
    ids = [e.id for e in executions]
    runs: dict[str, list[AutomationActionRun]] = {}
    if ids:
        for run in session.exec(
            select(AutomationActionRun)
            .where(col(AutomationActionRun.execution_id).in_(ids))
            .order_by(col(AutomationActionRun.action_index))
        ):
            runs.setdefault(run.execution_id, []).append(run)
    return [
        ExecutionView(
            id=e.id,
            automation_id=e.automation_id,
            event_id=e.event_id,
            event_type=e.event_type,
            order_id=e.order_id,
            depth=e.depth,
            status=e.status,
            error=e.error,
            started_at=e.started_at,
            finished_at=e.finished_at,
            actions=[
                ActionRunView(
                    index=r.action_index,
                    type=r.action_type,
                    status=r.status,
                    attempts=r.attempts,
                    duration_ms=r.duration_ms,
                    error=r.error,
                    result=r.result,
                )
                for r in runs.get(e.id, [])
            ],
        )
        for e in executions
    ]
