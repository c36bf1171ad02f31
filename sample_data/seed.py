"""Demo data: a workspace with a realistic mix of Colombian orders, a sales pipeline and a coverage sample."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlmodel import Session, select

from domain.credentials import encrypt_password
from domain.models import CarrierConfig, CarrierCoverage, Contact, Order, Pipeline, Stage, Workspace
from domain.orders.coverage import load_coverage_csv

COVERAGE_SAMPLE = Path(__file__).parent / "data" / "coverage_sample.csv"
STAGE_NAMES = ("Nuevo", "Confirmado", "Por despachar", "Despachado", "Entregado")

# name, phone, email, document, address, city, department, total, tags
DEMO_ORDERS: list[tuple[str, str, str | None, str | None, str, str, str, int, list[str]]] = [
    ("Elena Beltrán", "+57 313 347 7968", "elena.beltran@gmail.com", "1053802211", "calle 49f", "Manizales", "Caldas", 139900, []),
    ("Carlos Andrés Muñoz", "3104567821", "carlos.munoz@hotmail.com", None, "Cra 43A # 1-50", "Medellín", "Antioquia", 89900, []),
    ("Luisa Fernanda Ortiz", "3205558899", None, "52987123", "Calle 100 # 15-20 apto 302", "Bogotá", "Bogotá D.C.", 245000, ["P/A"]),
    ("Jhon Jairo Restrepo", "3017894512", "jjrestrepo@yahoo.com", None, "Av. 6N # 25-40", "Cali", "Valle del Cauca", 67500, []),
    ("María José Cárdenas", "3158882233", "majo.cardenas@gmail.com", "1144098765", "Cl 72 # 45-12", "Barranquilla", "Atlántico", 112000, []),
    ("Andrés Felipe Gómez", "3006667788", None, None, "Mz 4 Casa 12 Villa Verde", "Pereira", "Risaralda", 58000, []),
    ("Delia Rojas", "3127776655", "delia.rojas@gmail.com", None, "Calle 10# 11 32", "Buenavista", "Córdoba", 99000, []),
    ("Sandra Milena Pérez", "3183334455", "sandra.perez@outlook.com", "43876512", "Carrera 27 # 36-14", "Bucaramanga", "Santander", 154300, []),
    ("Óscar Iván Londoño", "3011239876", None, None, "Barrio El Centro Cl 8 # 5-21", "Tumaco", "Nariño", 76000, []),
    ("Paola Andrea Vargas", "3145556677", "paovargas@gmail.com", None, "Cra 5 # 12-30", "Ibagué", "Tolima", 131500, ["P/A"]),
    ("Camilo Torres", "3009998877", "ctorres@gmail.com", "80123456", "Cl 19 # 4-88", "Santa Marta", "Magdalena", 47000, []),
    ("Natalia Giraldo", "3112223344", None, None, "Vereda La Palma km 3", "Villa de Leyva", "Boyacá", 88000, []),
    ("Yeison Mosquera", "3216665544", None, None, "Cra 1 # 24-10", "Quibdó", "Chocó", 64000, []),
    ("Valentina Ríos", "3004441122", "vale.rios@gmail.com", "1020304050", "Cl 13 # 9-45", "Armenia", "Quindío", 119000, []),
    ("Diego Alejandro Castaño", "3137778899", "diegocastano@gmail.com", None, "Av. Santander # 60-15", "Manizales", "Caldas", 73000, []),
    ("Gloria Inés Henao", "3165554433", None, None, "Cra 80 # 33-21", "Medellín", "Antioquia", 210000, []),
    ("Kevin Santiago Mejía", "3052221100", "kevin.mejia@gmail.com", None, "Cl 45 # 22-10", "Neiva", "Huila", 59900, []),
    ("Ana María Salazar", "3178889900", "anasalazar@gmail.com", "1098765432", "Transversal 93 # 62-15", "Bogotá", "Cundinamarca", 185000, []),
    ("Fredy Alonso Cuéllar", "3103332211", None, None, "", "", "", 45000, []),
    ("Lina Marcela Pineda", "3189990011", "lina.pineda@gmail.com", None, "Cl 30 # 18-40", "Cúcuta", "Norte de Santander", 97000, []),
    ("Juan Pablo Arango", "3124445566", "jparango@gmail.com", None, "Cra 7 # 10-20", "Popayán", "Cauca", 66000, []),
    ("Daniela Zapata", "3012345678", None, "1037654321", "Cl 5 Sur # 43-12", "Envigado", "Antioquia", 134000, []),
    ("Hernán Darío Osorio", "3196667788", None, None, "Cra 20 # 15-33", "Villavicencio", "Meta", 72500, []),
    ("Marcela Quintero", "3007776655", "marce.quintero@gmail.com", None, "Cl 8 # 3-15", "Montería", "Cordoba", 81000, []),
    ("Sebastián Franco", "3141112233", "sfranco@gmail.com", None, "Av. Pedro de Heredia # 30-12", "Cartagena", "Bolívar", 156000, []),
    ("Rosa Elvira Cano", "3158887766", None, None, "Cl 16 # 10-05", "Tunja", "Boyacá", 62000, []),
    ("Miguel Ángel Bedoya", "3203334422", "mabedoya@gmail.com", None, "Cra 9 # 14-20", "Yopal", "Casanare", 93000, []),
    ("Tatiana Orozco", "3006665544", None, None, "Cl 12 # 6-30", "Valledupar", "Cesar", 58500, []),
    ("Esteban Cardona", "3175553322", "esteban.cardona@gmail.com", None, "Cra 4 # 8-11", "Chinchiná", "Caldas", 101000, []),
    ("Laura Restrepo", "3012223344", "laurarestrepo@gmail.com", None, "Cl 50 # 46-36", "Bello", "Antioquia", 0, []),
    ("Wilson Ocampo", "3118889977", None, None, "Cra 14 # 25-60", "Dosquebradas", "Risaralda", 69000, []),
    ("Isabel Cristina Roa", "3134446688", "isaroa@gmail.com", None, "Cl 2 # 3-45", "Leticia", "Amazonas", 74000, ["P/A"]),
]  # fmt: skip


@dataclass(frozen=True)
class DemoWorkspace:
    workspace_id: str
    pipeline_id: str
    stage_ids: dict[str, str]
    order_ids: list[str]

    @property
    def dispatch_stage_id(self) -> str:
        return self.stage_ids["Por despachar"]


def seed_coverage(session: Session, path: Path = COVERAGE_SAMPLE) -> int:
    return load_coverage_csv(session, path)


def seed_demo(
    session: Session,
    *,
    credentials_key: str,
    name: str = "Tienda Demo",
    orders: list[tuple[Any, ...]] | None = None,
    portal_username: str = "demo@tienda.co",
    portal_password: str = "demo-portal-password",
) -> DemoWorkspace:
    """A workspace with a pipeline, a Coordinadora config (password encrypted) and orders in 'Por despachar'."""
    if session.exec(select(CarrierCoverage.id)).first() is None:
        seed_coverage(session)
    workspace = Workspace(name=name)
    pipeline = Pipeline(workspace_id=workspace.id, name="Ventas")
    stages = {stage: Stage(pipeline_id=pipeline.id, name=stage, position=pos) for pos, stage in enumerate(STAGE_NAMES)}
    session.add(workspace)
    session.flush()
    session.add(pipeline)
    session.flush()
    session.add_all(stages.values())
    session.flush()
    session.add(
        CarrierConfig(
            workspace_id=workspace.id,
            portal_username=portal_username,
            portal_password_encrypted=encrypt_password(portal_password, credentials_key),
            dispatch_stage_id=stages["Por despachar"].id,
        )
    )
    order_ids = []
    for number, (cname, phone, email, document, address, city, dept, total, tags) in enumerate(
        orders if orders is not None else DEMO_ORDERS, start=1042
    ):
        contact = Contact(workspace_id=workspace.id, name=cname, phone=phone, email=email, id_document=document)
        session.add(contact)
        session.flush()
        order = Order(
            workspace_id=workspace.id,
            contact_id=contact.id,
            pipeline_id=pipeline.id,
            stage_id=stages["Por despachar"].id,
            name=f"Pedido {number}",
            total_value=Decimal(total),
            shipping_address=address or None,
            shipping_city=city or None,
            shipping_department=dept or None,
            tags=list(tags),
        )
        session.add(order)
        order_ids.append(order.id)
    session.flush()
    return DemoWorkspace(
        workspace_id=workspace.id,
        pipeline_id=pipeline.id,
        stage_ids={name: stage.id for name, stage in stages.items()},
        order_ids=order_ids,
    )
