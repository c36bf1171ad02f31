"""The deployments' parameters as operators see them in the Prefect UI: typed models with Spanish descriptions."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class OrderSelection(BaseModel):
    """Qué pedidos van en el lote: una etapa o una lista de pedidos (ninguna: la etapa de despacho del workspace)."""

    model_config = ConfigDict(extra="forbid")

    stage_id: str | None = Field(
        default=None,
        title="Etapa",
        description="Id de la etapa del pipeline cuyos pedidos se despachan. Vacío: la etapa de despacho "
        "configurada para el workspace.",
    )
    order_ids: list[str] = Field(
        default_factory=list,
        title="Pedidos",
        description="Ids de pedidos concretos a despachar (en lugar de una etapa).",
    )

    @model_validator(mode="after")
    def _stage_or_ids(self) -> "OrderSelection":
        if self.stage_id and self.order_ids:
            raise ValueError("Indique una etapa o una lista de pedidos, no ambas")
        return self


class SubmitRobotJob(BaseModel):
    """Lote de pedidos para el robot de Coordinadora: el workspace y qué pedidos enviar."""

    model_config = ConfigDict(extra="forbid")

    workspace_id: str = Field(title="Workspace", description="Id del workspace cuyos pedidos se despachan.")
    orders: OrderSelection = Field(
        default_factory=OrderSelection, title="Pedidos a despachar", description="Una etapa o una lista de pedidos."
    )
    idempotency_key: str | None = Field(
        default=None,
        title="Clave de idempotencia",
        description="Opcional. Si se repite la misma clave en el workspace, se reutiliza el lote ya creado en "
        "vez de crear otro (evita envíos dobles por un clic repetido).",
    )


class RetryFailedItems(BaseModel):
    """Reenviar, como un lote nuevo, los pedidos fallidos de un lote terminado."""

    model_config = ConfigDict(extra="forbid")

    job_id: str = Field(title="Lote", description="Id del lote terminado cuyos pedidos fallidos se reintentan.")
    idempotency_key: str | None = Field(
        default=None,
        title="Clave de idempotencia",
        description="Opcional. Por defecto 'retry:<lote>': reintentar dos veces el mismo lote crea un solo lote nuevo.",
    )
