"""relocations: a destination's (or a source's) records moved to the copy of it elsewhere

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 18:10:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('relocations',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('old', sa.Text(), nullable=False),
    sa.Column('new', sa.Text(), nullable=False),
    sa.Column('flow_run_id', sa.String(length=64), nullable=True),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('items', sa.Integer(), nullable=False),
    sa.Column('outputs', sa.Integer(), nullable=False),
    sa.Column('not_intact', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_relocations_old', 'relocations', ['old'])
    op.create_index('ix_relocations_new', 'relocations', ['new'])


def downgrade() -> None:
    op.drop_index('ix_relocations_new', table_name='relocations')
    op.drop_index('ix_relocations_old', table_name='relocations')
    op.drop_table('relocations')
