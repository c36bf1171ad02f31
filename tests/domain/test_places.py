"""An item's city label has one home (domain.batches.places): the summary and the analytics read the same one."""

from __future__ import annotations

from domain.analytics import NO_CITY, NO_DEPARTMENT, _place
from domain.batches.places import item_place
from domain.models import Order


def _order(city: str | None, department: str | None) -> Order:
    return Order(workspace_id="w", name="#1", shipping_city=city, shipping_department=department)


def test_an_item_sent_shows_what_the_robot_received():
    place = item_place({"ciudad": "MANIZALES (CDAS)", "departamento": "CDAS"}, _order("otra", "otro"))
    assert (place.label, place.department) == ("MANIZALES (CDAS)", "CDAS")
    assert _place({"ciudad": "MANIZALES (CDAS)"}, _order(None, None)) == ("MANIZALES (CDAS)", NO_DEPARTMENT)


def test_an_item_never_sent_shows_its_orders_destination_as_coverage_normalises_it():
    place = item_place(None, _order(" manizales ", "Caldas"))
    assert place.label.startswith(place.city) and place.label.endswith(f"({place.department})")
    assert _place(None, _order(" manizales ", "Caldas"))[0] == place.label
    # Analytics names what is missing so it groups; the summary shows it as it is.
    assert _place(None, _order(None, None)) == (NO_CITY, NO_DEPARTMENT)
    assert item_place(None, _order(None, None)).label == ""
