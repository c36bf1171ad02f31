"""portal truth: who resolved an item, when a job's summary was published, and the callback dead letters

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 10:00:00
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

import domain.models

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('robot_job_items', schema=None) as batch_op:
        batch_op.add_column(sa.Column('resolved_by', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=True))
    # Existing terminal items: our own closures are the coverage rejections, dispatch failures and timeouts;
    # everything else terminal came from the robot.
    op.execute(
        "UPDATE robot_job_items SET resolved_by = CASE "
        "WHEN robot_input IS NULL OR error_type IN ('dispatch', 'timeout') THEN 'robotjobs' ELSE 'robot' END "
        "WHERE status <> 'pending'"
    )
    with op.batch_alter_table('robot_jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('summary_published_at', domain.models.UTCDateTime(timezone=True), nullable=True))
    op.create_table('callback_dead_letters',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('received_at', domain.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=False),
    sa.Column('headers', sa.JSON(), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('job_id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=True),
    sa.Column('replayed_at', domain.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('replay_result', sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('callback_dead_letters', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_callback_dead_letters_job_id'), ['job_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('callback_dead_letters', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_callback_dead_letters_job_id'))
    op.drop_table('callback_dead_letters')
    with op.batch_alter_table('robot_jobs', schema=None) as batch_op:
        batch_op.drop_column('summary_published_at')
    with op.batch_alter_table('robot_job_items', schema=None) as batch_op:
        batch_op.drop_column('resolved_by')
