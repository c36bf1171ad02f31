"""Building the robot's `pedidoInput` from an order, its contact and the workspace's carrier config."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from domain.models import CarrierConfig, Contact, Order
from domain.orders.coverage import Destination

PREPAID_TAG = "P/A"


def is_prepaid(order: Order) -> bool:
    return any((tag or "").strip().upper() == PREPAID_TAG for tag in order.tags or [])


def is_cash_on_delivery(order: Order) -> bool:
    return not is_prepaid(order) and Decimal(order.total_value or 0) > 0


def _last_digits(phone: str | None, count: int = 10) -> str:
    digits = re.sub(r"\D", "", phone or "")
    return digits[-count:]


def split_name(name: str | None) -> tuple[str, str]:
    words = (name or "").split()
    if not words:
        return "Cliente", ""
    return words[0], " ".join(words[1:])


def _number(value: Decimal | float) -> int | float:
    """JSON numbers as the portal form wants them: whole pesos as int, the rest as float."""
    as_decimal = Decimal(str(value))
    return int(as_decimal) if as_decimal == as_decimal.to_integral_value() else float(as_decimal)


def build_pedido_input(
    order: Order, contact: Contact | None, destination: Destination, config: CarrierConfig
) -> dict[str, Any]:
    """The portal form's fields, derived as domain-facts.md describes (business constants from the config)."""
    phone = contact.phone if contact else None
    first, rest = split_name(contact.name if contact else None)
    identification = (contact.id_document if contact and contact.id_document else None) or _last_digits(phone)
    cod = is_cash_on_delivery(order)
    return {
        "identificacion": identification or "0000000000",
        "nombres": first,
        "apellidos": rest,
        "direccion": (order.shipping_address or "").strip() or "Sin direccion",
        "ciudad": destination.city_label,
        "departamento": destination.department_abbr,
        "celular": _last_digits(phone),
        "email": (contact.email if contact and contact.email else None) or "sin@email.com",
        "referencia": order.name,
        "unidades": max(1, int(order.units or 1)),
        "totalConIva": 0 if is_prepaid(order) else _number(order.total_value or 0),
        "valorDeclarado": _number(config.declared_value),
        "esRecaudoContraentrega": cod,
        "peso": config.package_weight_kg,
        "alto": config.package_height_cm,
        "largo": config.package_length_cm,
        "ancho": config.package_width_cm,
    }
