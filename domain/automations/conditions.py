"""Automation conditions: nested AND/OR groups of `variable operator value` tests, validated and evaluated.

A condition names a variable (`orden.ciudad_envio`, `orden.valor`, `orden.campos.<clave>`; see
domain.automations.variables) and compares it with one of the operators below. Text comparisons ignore case and
surrounding spaces; the ordering operators compare numbers and are false when either side is not a number.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

from domain.money import to_decimal

MAX_NESTING = 5


class Operator(StrEnum):
    EQUALS = "equals"
    NOT_EQUALS = "not_equals"
    CONTAINS = "contains"
    NOT_CONTAINS = "not_contains"
    IN = "in"
    NOT_IN = "not_in"
    GT = "gt"
    LT = "lt"
    GTE = "gte"
    LTE = "lte"
    EXISTS = "exists"
    NOT_EXISTS = "not_exists"


_LIST_OPERATORS = {Operator.IN, Operator.NOT_IN}
_NUMERIC_OPERATORS = {Operator.GT, Operator.LT, Operator.GTE, Operator.LTE}
_UNARY_OPERATORS = {Operator.EXISTS, Operator.NOT_EXISTS}


class Condition(BaseModel):
    model_config = ConfigDict(extra="forbid")

    field: str = Field(min_length=1, description="Variable to test, e.g. `orden.ciudad_envio`")
    operator: Operator
    value: Any = Field(default=None, description="Compared value; a list for in/not_in; unused for exists")

    @model_validator(mode="after")
    def _value_fits_operator(self) -> Condition:
        if self.operator in _LIST_OPERATORS and not isinstance(self.value, list):
            raise ValueError(f"El operador '{self.operator}' necesita una lista de valores")
        if self.operator in _NUMERIC_OPERATORS and to_decimal(self.value) is None:
            raise ValueError(f"El operador '{self.operator}' necesita un valor numérico")
        if self.operator not in _UNARY_OPERATORS and self.operator not in _LIST_OPERATORS and self.value is None:
            raise ValueError(f"El operador '{self.operator}' necesita un valor")
        return self


def _kind(value: Any) -> str:
    # A group has `conditions`; anything else is a single condition (so errors name the right model).
    if isinstance(value, dict):
        return "group" if "conditions" in value else "condition"
    return "group" if isinstance(value, ConditionGroup) else "condition"


class ConditionGroup(BaseModel):
    model_config = ConfigDict(extra="forbid")

    logic: Literal["and", "or"] = "and"
    conditions: list[
        Annotated[
            Annotated[Condition, Tag("condition")] | Annotated[ConditionGroup, Tag("group")],
            Discriminator(_kind),
        ]
    ] = Field(default_factory=list)

    @model_validator(mode="after")
    def _not_too_deep(self) -> ConditionGroup:
        if _depth(self) > MAX_NESTING:
            raise ValueError(f"Los grupos de condiciones admiten como máximo {MAX_NESTING} niveles")
        return self

    def fields(self) -> list[str]:
        """Every variable the group tests."""
        names: list[str] = []
        for item in self.conditions:
            names.extend(item.fields() if isinstance(item, ConditionGroup) else [item.field])
        return names


def _depth(group: ConditionGroup) -> int:
    return 1 + max((_depth(item) for item in group.conditions if isinstance(item, ConditionGroup)), default=0)


def _norm(value: Any) -> str:
    return str(value).strip().casefold()


def _equal(left: Any, right: Any) -> bool:
    left_number, right_number = to_decimal(left), to_decimal(right)
    if left_number is not None and right_number is not None:
        return left_number == right_number  # "139900.00" equals 139900
    if left is None or right is None:
        return left is right
    return _norm(left) == _norm(right)


def _contains(haystack: Any, needle: Any) -> bool:
    if haystack is None:
        return False
    if isinstance(haystack, (list, tuple)):
        return any(_equal(item, needle) for item in haystack)
    return _norm(needle) in _norm(haystack)


def _exists(value: Any) -> bool:
    return value is not None and value != "" and value != []


def evaluate_condition(condition: Condition, variables: dict[str, Any]) -> bool:
    actual = variables.get(condition.field)
    expected = condition.value
    op = condition.operator
    if op is Operator.EXISTS:
        return _exists(actual)
    if op is Operator.NOT_EXISTS:
        return not _exists(actual)
    if op is Operator.EQUALS:
        return _equal(actual, expected)
    if op is Operator.NOT_EQUALS:
        return not _equal(actual, expected)
    if op is Operator.CONTAINS:
        return _contains(actual, expected)
    if op is Operator.NOT_CONTAINS:
        return not _contains(actual, expected)
    if op is Operator.IN:
        return any(_equal(actual, item) for item in expected)
    if op is Operator.NOT_IN:
        return not any(_equal(actual, item) for item in expected)
    left, right = to_decimal(actual), to_decimal(expected)
    if left is None or right is None:
        return False
    return {
        Operator.GT: left > right,
        Operator.LT: left < right,
        Operator.GTE: left >= right,
        Operator.LTE: left <= right,
    }[op]


def evaluate(group: ConditionGroup | None, variables: dict[str, Any]) -> bool:
    """True when the group holds; an empty group (or none) always holds."""
    if group is None or not group.conditions:
        return True
    results = (
        evaluate(item, variables) if isinstance(item, ConditionGroup) else evaluate_condition(item, variables)
        for item in group.conditions
    )
    return all(results) if group.logic == "and" else any(results)
