"""The query side's index: one row per workflow in a SQL database (SQLite by default, PostgreSQL when WF_INDEX_URL
names one), kept by the indexer from the read model's changes and read by the API for lists, searches and inboxes.

What the indexer writes and the API reads is this layout, so it is a contract like the streams'. A row records the
log sequence it reflects (`last_sequence`) and never goes backwards. Its children hold what a workflow is found by:
the values of its type's search fields, and who may answer it now."""

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    MetaData,
    String,
    Table,
)

from contracts.state import WorkflowState

EARLIEST = datetime.min.replace(tzinfo=UTC)

metadata = MetaData()

workflows = Table(
    "workflows",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("type", String(64), nullable=False),
    Column("business_state", String(128)),
    Column("infra_status", String(32), nullable=False),
    Column("archived", Boolean, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("deadline_at", DateTime(timezone=True)),
    Column("last_sequence", BigInteger, nullable=False),  # the log sequence the row reflects: it never goes back
    Column("view", JSON, nullable=False),  # the workflow as the API shows it (the read model's public view)
    # Lists are newest first, by (created_at, id), within archived or not, and by any one of the generic filters.
    Index("workflows_listed", "archived", "created_at", "id"),
    Index("workflows_by_updated", "archived", "updated_at", "id"),
    Index("workflows_by_type", "archived", "type", "created_at", "id"),
    Index("workflows_by_business_state", "archived", "business_state", "created_at", "id"),
    Index("workflows_by_infra_status", "archived", "infra_status", "created_at", "id"),
    Index("workflows_by_deadline", "deadline_at"),
)

search_values = Table(
    "workflow_search_values",
    metadata,
    Column("workflow_id", String(64), ForeignKey("workflows.id", ondelete="CASCADE"), primary_key=True),
    Column("name", String(64), primary_key=True),
    Column("number", Float),
    Column("text", String(200)),
    Index("search_by_number", "name", "number", "workflow_id"),
    Index("search_by_text", "name", "text", "workflow_id"),
)

waiting_for = Table(
    "workflow_waiting_for",
    metadata,
    Column("workflow_id", String(64), ForeignKey("workflows.id", ondelete="CASCADE"), primary_key=True),
    Column("actor", String(128), primary_key=True),  # a name, or "role:<role>"
    Index("waiting_by_actor", "actor", "workflow_id"),
)

# Where the index stands: READ_MODEL_POSITION is the sequence of the read model's stream it has applied up to (it
# resumes after it, and a reset to 0 rebuilds it); LOG_POSITION the highest log sequence among the states applied.
position = Table(
    "index_position",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("sequence", BigInteger, nullable=False),
)
READ_MODEL_POSITION, LOG_POSITION = "read_model", "log"


def utc(moment: datetime | None) -> datetime | None:
    return moment.astimezone(UTC) if moment else None


def workflow_row(state: WorkflowState) -> dict[str, Any]:
    view = state.public_view()
    return {
        "id": state.id,
        "type": state.type,
        "business_state": state.business_state,
        "infra_status": state.infra_status.value,
        "archived": state.archived,
        "created_at": utc(state.created_at) or EARLIEST,
        "updated_at": utc(state.updated_at or state.created_at) or EARLIEST,
        "deadline_at": utc(state.deadline_at),
        "last_sequence": state.last_sequence,
        "view": view,
    }


def search_value_rows(state: WorkflowState) -> list[dict[str, Any]]:
    return [
        {
            "workflow_id": state.id,
            "name": name,
            "number": value if isinstance(value, float) else None,
            "text": storable_text(value) if isinstance(value, str) else None,
        }
        for name, value in sorted(state.search_values.items())
    ]


def storable_text(text: str) -> str:
    """Text as every database can hold it: PostgreSQL's text cannot hold NUL (a write of one fails), so NUL is kept
    as U+FFFD, the replacement character, on either database (no filter can name NUL: the API refuses one)."""
    return text.replace("\x00", "\ufffd")


def waiting_for_rows(state: WorkflowState) -> list[dict[str, Any]]:
    return [{"workflow_id": state.id, "actor": actor} for actor in state.waiting_for]
