"""report one: the per-order robot result in one round trip on PostgreSQL (the function `robotjobs_report_one`)

The webhook's hot path calls it (domain/batches/report_one.py). Its text comes from the code that calls it, which
uses it only while the database's copy is the same: a later change of the record statement needs a migration that
runs `report_one_function_sql` again. SQLite: nothing (it takes the full path).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 19:50:00
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    from domain.batches.report_one import report_one_function_sql

    bind.exec_driver_sql(report_one_function_sql(bind.dialect))  # driver SQL: no bind or %-parameter parsing


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS robotjobs_report_one")
