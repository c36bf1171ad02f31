"""Money as operators read it: Colombian pesos, `.` for thousands, no decimals (`$139.900`)."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any


def to_decimal(value: Any) -> Decimal | None:
    """A number from an int, Decimal or text such as "139900.00"; None for anything else (booleans included)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        return Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        return None


def format_cop(value: Any) -> str:
    """`$139.900`; an empty string when the value is not a number."""
    amount = to_decimal(value)
    if amount is None:
        return ""
    whole = int(amount.quantize(Decimal("1"), rounding=ROUND_HALF_UP))
    sign = "-" if whole < 0 else ""
    return f"{sign}${abs(whole):,}".replace(",", ".")
