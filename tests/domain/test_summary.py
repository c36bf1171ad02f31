"""The batch summary, byte-exact against the operators' reference format (domain-facts.md)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from domain.batches.results import ItemResult, record_batch_results
from domain.batches.summary import BatchSummary, SummaryLine, batch_summary, format_cop, render_summary_text

REFERENCE = (
    "✅ 4 pedido(s) creado(s):\n"
    "• #10107 - Elena Beltrán  📍 calle 49f  🏙️ MANIZALES (CDAS)  📱 3133477968  💰 $139.900\n"
    "❌ Pedidos rechazados:\n"
    "• Delia Rojas  📍 Calle 10# 11 32  🏙️ BUENAVISTA (CORD)  ❌ No se encontró el municipio\n"
)


@pytest.mark.parametrize(
    ("value", "text"),
    [(Decimal("139900"), "$139.900"), (0, "$0"), (Decimal("1234567.5"), "$1.234.568"), ("999", "$999")],
)
def test_money_is_colombian_pesos(value, text):
    assert format_cop(value) == text


def _line(**kw):
    base = dict(
        item_id="i", order_id="o", order_name="Pedido", tracking_number=None, error_type=None, error_message=None
    )
    return SummaryLine(**{**base, **kw})


def test_reference_example_is_reproduced_byte_for_byte():
    elena = _line(
        status="success",
        tracking_number="10107",
        recipient="Elena Beltrán",
        address="calle 49f",
        city="MANIZALES (CDAS)",
        phone="3133477968",
        total="$139.900",
    )
    others = [
        _line(status="success", tracking_number=str(n), recipient="x", address="x", city="x", phone="x", total="$1")
        for n in range(3)
    ]
    delia = _line(
        status="error",
        recipient="Delia Rojas",
        address="Calle 10# 11 32",
        city="BUENAVISTA (CORD)",
        phone="3127776655",
        total="$99.000",
        error_message="No se encontró el municipio",
    )
    summary = BatchSummary(
        job_id="j",
        job_status="completed",
        success_count=4,
        error_count=1,
        total_items=5,
        pending_count=0,
        failure_reason=None,
        successes=[elena, *others],
        rejected=[delia],
    )
    text = render_summary_text(summary)
    lines = text.splitlines(keepends=True)
    # the reference shows one success line of four: compare that line, the headers and the rejected line
    assert "".join([lines[0], lines[1], lines[5], lines[6]]) == REFERENCE


def test_summary_from_the_database(uow, demo, dispatched_job):
    job_id, items = dispatched_job()
    with uow() as tx:
        record_batch_results(
            tx.session, job_id, [ItemResult(item_id=items[0], status="success", tracking_number="10107")]
        )
        tx.commit()
        summary = batch_summary(tx.session, job_id)
    text = render_summary_text(summary)
    assert "• #10107 - Elena Beltrán  📍 calle 49f  🏙️ MANIZALES (CDAS)  📱 3133477968  💰 $139.900\n" in text
    assert "• Delia Rojas  📍 Calle 10# 11 32  🏙️ BUENAVISTA (CORD)  ❌ Ciudad no encontrada en cobertura" in text
    assert text.startswith("✅ 1 pedido(s) creado(s):\n")
    assert summary.pending_count == len(items) - 1 and summary.success_count == 1
