"""the batch of a flow run: an index on robot_jobs.flow_run_id

One flow run per batch: a resumed run and `robotjobs submit --wait` find their job by the run's id.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 22:30:00
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("robot_jobs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_robot_jobs_flow_run_id"), ["flow_run_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("robot_jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_robot_jobs_flow_run_id"))
