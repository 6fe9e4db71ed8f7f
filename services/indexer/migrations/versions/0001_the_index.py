"""The index: a row per workflow, its search values, who it waits for, and the position taken in.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "workflows",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("business_state", sa.String(128)),
        sa.Column("infra_status", sa.String(32), nullable=False),
        sa.Column("archived", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deadline_at", sa.DateTime(timezone=True)),
        sa.Column("last_sequence", sa.BigInteger, nullable=False),
        sa.Column("view", sa.JSON, nullable=False),
    )
    op.create_index("workflows_listed", "workflows", ["archived", "created_at", "id"])
    op.create_index("workflows_by_updated", "workflows", ["archived", "updated_at", "id"])
    op.create_index("workflows_by_type", "workflows", ["archived", "type", "created_at", "id"])
    op.create_index("workflows_by_business_state", "workflows", ["archived", "business_state", "created_at", "id"])
    op.create_index("workflows_by_infra_status", "workflows", ["archived", "infra_status", "created_at", "id"])
    op.create_index("workflows_by_deadline", "workflows", ["deadline_at"])
    op.create_table(
        "workflow_search_values",
        sa.Column("workflow_id", sa.String(64), sa.ForeignKey("workflows.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("number", sa.Float),
        sa.Column("text", sa.String(200)),
    )
    op.create_index("search_by_number", "workflow_search_values", ["name", "number", "workflow_id"])
    op.create_index("search_by_text", "workflow_search_values", ["name", "text", "workflow_id"])
    op.create_table(
        "workflow_waiting_for",
        sa.Column("workflow_id", sa.String(64), sa.ForeignKey("workflows.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("actor", sa.String(128), primary_key=True),
    )
    op.create_index("waiting_by_actor", "workflow_waiting_for", ["actor", "workflow_id"])
    op.create_table(
        "index_position",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("sequence", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    for table in ("index_position", "workflow_waiting_for", "workflow_search_values", "workflows"):
        op.drop_table(table)
