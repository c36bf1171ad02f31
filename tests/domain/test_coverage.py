"""City validation against the courier's coverage: normalisation, departments, COD, CSV loading."""

from __future__ import annotations

import pytest

from domain.orders.coverage import (
    Destination,
    Rejection,
    department_abbreviation,
    load_coverage_csv,
    normalize,
    validate_destination,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("  Bogotá  d.c. ", "BOGOTA D.C."), ("Nariño", "NARINO"), ("quindío", "QUINDIO"), (None, ""), ("", "")],
)
def test_normalize_strips_accents_case_and_spaces(raw, expected):
    assert normalize(raw) == expected


@pytest.mark.parametrize(
    ("department", "abbr"),
    [
        ("Caldas", "CDAS"),
        ("Bogotá D.C.", "C/MARCA"),
        ("Valle del Cauca", "VALLE"),
        ("norte de santander", "N/STDER"),
        ("CDAS", "CDAS"),
        ("Guajira", "GUAJ"),
        ("Atlántida", None),
    ],
)
def test_department_abbreviations(department, abbr):
    assert department_abbreviation(department) == abbr


def test_csv_loads_and_updates_coverage(uow, tmp_path):
    csv_file = tmp_path / "coverage.csv"
    csv_file.write_text("city_label,department_abbr,supports_cod\nMANIZALES (CDAS),CDAS,false\nPASTO (NAR),NAR,true\n")
    with uow() as tx:
        assert load_coverage_csv(tx.session, csv_file) == 2
        tx.commit()
    with uow() as tx:
        found = validate_destination(tx.session, city="manizales", department="Caldas", cash_on_delivery=False)
        assert found == Destination(city_label="MANIZALES (CDAS)", department_abbr="CDAS", supports_cod=False)
        refused = validate_destination(tx.session, city="Manizales", department="Caldas", cash_on_delivery=True)
        assert isinstance(refused, Rejection) and "no soporta recaudo contra-entrega" in refused.reason
    csv_file.write_text("city_label,department_abbr,supports_cod\nMANIZALES (CDAS),CDAS,true\n")
    with uow() as tx:
        load_coverage_csv(tx.session, csv_file)
        tx.commit()
    with uow() as tx:
        assert isinstance(
            validate_destination(tx.session, city="Manizales", department="Caldas", cash_on_delivery=True), Destination
        )


def test_unknown_department_and_city_reasons(uow):
    with uow() as tx:
        assert validate_destination(tx.session, city="X", department="Atlántida", cash_on_delivery=False) == Rejection(
            'Departamento no reconocido: "Atlántida"'
        )
        assert validate_destination(
            tx.session, city="Macondo", department="Magdalena", cash_on_delivery=False
        ) == Rejection('Ciudad no encontrada en cobertura: "Macondo" (MG/LENA)')
