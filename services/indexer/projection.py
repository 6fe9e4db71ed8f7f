"""The projection: the read model's changes, applied to the index (contracts/index.py) a batch at a time.

Each batch is one transaction: the rows, and the position it brings the index to. So a batch is applied whole or not
at all, and a restart resumes right after the last one applied. A row never goes backwards: a state older than the
row (by the log sequence it reflects) changes nothing, so applying the same changes twice changes nothing either."""

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import delete, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from contracts.index import (
    LOG_POSITION,
    READ_MODEL_POSITION,
    position,
    search_value_rows,
    search_values,
    waiting_for,
    waiting_for_rows,
    workflow_row,
    workflows,
)
from contracts.state import WorkflowState

MIGRATIONS = Path(__file__).with_name("migrations")


def migrate(url: str) -> None:
    """Bring the index's schema to the newest revision (Alembic; runs its own event loop: call it in a thread)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url)
    command.upgrade(config, "head")


@dataclass(frozen=True)
class Change:
    """One entry of the read model's stream: a workflow's state, or None when it was removed."""

    sequence: int  # in the read model's stream
    workflow_id: str
    state: WorkflowState | None
    written_at: datetime | None = None  # when the broker stored it in the read model


class PositionMoved(Exception):
    """Another writer (or a reset, to rebuild) moved the index's position: read it again and go on from there."""


class IndexProjection:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
        # One statement for every batch (compiled once; its rows go as parameter sets): insert the rows, or update
        # those the index holds at an older log sequence; it returns the ids it wrote.
        statement = self._insert(workflows)
        self._newer = statement.on_conflict_do_update(
            index_elements=[workflows.c.id],
            set_={column.name: statement.excluded[column.name] for column in workflows.columns if column.name != "id"},
            where=workflows.c.last_sequence < statement.excluded.last_sequence,
        ).returning(workflows.c.id)

    async def position(self) -> int:
        """The read model's stream sequence the index has applied up to (0: nothing yet)."""
        async with self.engine.connect() as connection:
            found = await connection.scalar(select(position.c.sequence).where(position.c.name == READ_MODEL_POSITION))
        return found or 0

    async def apply(self, after: int, changes: list[Change]) -> None:
        """Apply changes that follow position `after`, and move the position to the last of them."""
        latest: dict[str, Change] = {}
        for change in changes:  # within a batch only a workflow's last change matters
            latest[change.workflow_id] = change
        async with self.engine.begin() as connection:
            await self._move_position(connection, after, changes[-1].sequence)
            states = [change.state for change in latest.values() if change.state is not None]
            removed = [change.workflow_id for change in latest.values() if change.state is None]
            if removed:
                await self._remove(connection, removed)
            if states:
                await self._upsert(connection, states)

    async def _move_position(self, connection: AsyncConnection, after: int, to: int) -> None:
        moved = await connection.execute(
            update(position)
            .where(position.c.name == READ_MODEL_POSITION, position.c.sequence == after)
            .values(sequence=to)
        )
        if moved.rowcount == 1:
            return
        if (
            after == 0
            and await connection.scalar(select(position.c.sequence).where(position.c.name == READ_MODEL_POSITION))
            is None
        ):
            await connection.execute(insert(position).values(name=READ_MODEL_POSITION, sequence=to))
            return
        raise PositionMoved(f"the index is no longer at {after}")

    async def _remove(self, connection: AsyncConnection, workflow_ids: list[str]) -> None:
        for table in (search_values, waiting_for):
            await connection.execute(delete(table).where(table.c.workflow_id.in_(workflow_ids)))
        await connection.execute(delete(workflows).where(workflows.c.id.in_(workflow_ids)))

    async def _upsert(self, connection: AsyncConnection, states: list[WorkflowState]) -> None:
        """Write the rows of states newer than what the index holds; replace those rows' children."""
        changed = set((await connection.execute(self._newer, [workflow_row(state) for state in states])).scalars())
        if not changed:
            return
        newer = [state for state in states if state.id in changed]
        for table, rows_of in ((search_values, search_value_rows), (waiting_for, waiting_for_rows)):
            await connection.execute(delete(table).where(table.c.workflow_id.in_(changed)))
            if children := [row for state in newer for row in rows_of(state)]:
                await connection.execute(insert(table), children)
        highest = max(state.last_sequence for state in newer)
        log_position = self._insert(position).values(name=LOG_POSITION, sequence=highest)
        await connection.execute(
            log_position.on_conflict_do_update(
                index_elements=[position.c.name],
                set_={"sequence": log_position.excluded.sequence},
                where=position.c.sequence < log_position.excluded.sequence,
            )
        )

    async def reset(self) -> None:
        """Empty the index: the indexer then builds it again from the start of the read model's stream."""
        async with self.engine.begin() as connection:
            for table in (search_values, waiting_for, workflows, position):
                await connection.execute(delete(table))
