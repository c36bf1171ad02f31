"""The courier's coverage: normalising cities and departments, and validating an order's destination."""

from __future__ import annotations

import csv
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import true
from sqlmodel import Session, col, select

from domain.models import COORDINADORA, CarrierCoverage

DEPARTMENT_ABBREVIATIONS: dict[str, str] = {
    "AMAZONAS": "AMAZ", "ANTIOQUIA": "ANT", "ARAUCA": "ARAU", "ATLANTICO": "ATL",
    "BOGOTA": "C/MARCA", "BOGOTA D.C.": "C/MARCA", "BOGOTA DC": "C/MARCA", "DISTRITO CAPITAL": "C/MARCA",
    "CUNDINAMARCA": "C/MARCA", "BOLIVAR": "BOL", "BOYACA": "BOY", "CALDAS": "CDAS", "CAQUETA": "CAQ",
    "CASANARE": "C/NARE", "CAUCA": "CAU", "CESAR": "CES", "CHOCO": "CHOCO", "CORDOBA": "CORD",
    "GUAINIA": "GUAI", "GUAVIARE": "G/VIARE", "LA GUAJIRA": "GUAJ", "GUAJIRA": "GUAJ", "HUILA": "HLA",
    "MAGDALENA": "MG/LENA", "META": "META", "NARINO": "NAR", "NORTE DE SANTANDER": "N/STDER",
    "PUTUMAYO": "P/MAYO", "QUINDIO": "QDIO", "RISARALDA": "RS", "SAN ANDRES": "S/ANDRES",
    "SANTANDER": "STDER", "SUCRE": "SUCRE", "TOLIMA": "TOL", "VALLE DEL CAUCA": "VALLE", "VALLE": "VALLE",
    "VAUPES": "V/PES", "VICHADA": "VICH",
}  # fmt: skip
_KNOWN_ABBREVIATIONS = frozenset(DEPARTMENT_ABBREVIATIONS.values())


def normalize(text: str | None) -> str:
    """Upper case, accents stripped, inner whitespace collapsed: `  Bogotá  d.c ` → `BOGOTA D.C`."""
    if not text:
        return ""
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(stripped.upper().split())


def department_abbreviation(department: str | None) -> str | None:
    name = normalize(department)
    if name in _KNOWN_ABBREVIATIONS:  # already an abbreviation, as the coverage CSV writes it
        return name
    return DEPARTMENT_ABBREVIATIONS.get(name) or DEPARTMENT_ABBREVIATIONS.get(name.rstrip("."))


@dataclass(frozen=True)
class Destination:
    """A destination the courier serves: the label and abbreviation the robot's form wants."""

    city_label: str
    department_abbr: str
    supports_cod: bool


@dataclass(frozen=True)
class Rejection:
    reason: str


def validate_destination(
    session: Session, *, city: str | None, department: str | None, cash_on_delivery: bool, carrier: str = COORDINADORA
) -> Destination | Rejection:
    """Check an order's city against coverage; a Rejection carries the Spanish reason operators read."""
    return resolve_destinations(session, [(city, department, cash_on_delivery)], carrier=carrier)[0]


def resolve_destinations(
    session: Session, destinations: list[tuple[str | None, str | None, bool]], *, carrier: str = COORDINADORA
) -> list[Destination | Rejection]:
    """`validate_destination` for many (city, department, cash on delivery) at once: one coverage query in all."""
    keys = [(normalize(city), department_abbreviation(department)) for city, department, _ in destinations]
    wanted = {key for key in keys if key[0] and key[1]}
    found: dict[tuple[str, str | None], CarrierCoverage] = {}
    if wanted:
        cities = sorted({city for city, _ in wanted})
        for row in session.exec(
            select(CarrierCoverage).where(
                CarrierCoverage.carrier == carrier,
                col(CarrierCoverage.city_normalized).in_(cities),
                col(CarrierCoverage.active) == true(),
            )
        ):
            found.setdefault((row.city_normalized, row.department_abbr), row)
    return [
        _judge(city, department, cod, key, found.get(key))
        for (city, department, cod), key in zip(destinations, keys, strict=True)
    ]


def _judge(
    city: str | None,
    department: str | None,
    cash_on_delivery: bool,
    key: tuple[str, str | None],
    row: CarrierCoverage | None,
) -> Destination | Rejection:
    city_n, abbr = key
    if not city_n and not normalize(department):
        return Rejection("Ciudad y departamento vacios")
    if abbr is None:
        return Rejection(f'Departamento no reconocido: "{department or ""}"')
    if row is None:
        return Rejection(f'Ciudad no encontrada en cobertura: "{city or ""}" ({abbr})')
    if cash_on_delivery and not row.supports_cod:
        return Rejection(
            f"Ciudad {row.city_normalized} ({abbr}) no soporta recaudo contra-entrega (COD). "
            "Cambie el pedido a pago anticipado o use otra transportadora."
        )
    return Destination(city_label=row.city_label, department_abbr=abbr, supports_cod=row.supports_cod)


def load_coverage_csv(session: Session, path: Path, *, carrier: str = COORDINADORA) -> int:
    """Upsert coverage rows from a CSV with columns city_label, department_abbr, supports_cod[, active]."""
    count = 0
    with path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            label = row["city_label"].strip()
            abbr = normalize(row["department_abbr"])
            city = normalize(label.rsplit("(", 1)[0])
            existing = session.exec(
                select(CarrierCoverage).where(
                    CarrierCoverage.carrier == carrier,
                    CarrierCoverage.city_normalized == city,
                    CarrierCoverage.department_abbr == abbr,
                )
            ).first()
            target = existing or CarrierCoverage(
                carrier=carrier, city_normalized=city, department_abbr=abbr, city_label=label
            )
            target.city_label = label
            target.supports_cod = _truthy(row.get("supports_cod", "true"))
            target.active = _truthy(row.get("active", "true"))
            session.add(target)
            count += 1
    session.flush()
    return count


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "si", "sí", "yes", "y", "t"}
