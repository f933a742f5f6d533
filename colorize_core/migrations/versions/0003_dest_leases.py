"""dest leases: the job writing to a destination now

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 09:40:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('dest_leases',
    sa.Column('dest', sa.Text(), nullable=False),
    sa.Column('job_id', sa.String(length=36), nullable=False),
    sa.Column('holder', sa.JSON(), nullable=False),
    sa.Column('acquired_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('renewed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('renewals', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('dest')
    )


def downgrade() -> None:
    op.drop_table('dest_leases')
