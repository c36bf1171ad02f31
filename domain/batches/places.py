"""An item's destination as operators and analysts read it: the courier's city label and department abbreviation.

The one rule, used by the summary (its text, the items-table artifact, the CLI and the read API render from it) and
by the analytics: an item sent to the robot shows what the robot received (`ciudad`, `departamento` of its
`pedidoInput`); an item never sent shows its order's destination normalised as coverage does, `CITY (DEPT)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from domain.models import Order
from domain.orders.coverage import department_abbreviation, normalize


@dataclass(frozen=True)
class ItemPlace:
    city: str  # the city alone ('' when the order has none)
    department: str  # the abbreviation, e.g. CDAS ('' when unknown)
    label: str  # what operators read, e.g. MANIZALES (CDAS)


def item_place(robot_input: dict[str, Any] | None, order: Order) -> ItemPlace:
    """Where an item goes, as sent to the robot, else derived from its order like coverage does."""
    if robot_input and robot_input.get("ciudad"):
        city = str(robot_input["ciudad"])
        return ItemPlace(city=city, department=str(robot_input.get("departamento") or ""), label=city)
    city = normalize(order.shipping_city)
    department = department_abbreviation(order.shipping_department) or normalize(order.shipping_department)
    return ItemPlace(city=city, department=department, label=f"{city} ({department})" if department else city)
