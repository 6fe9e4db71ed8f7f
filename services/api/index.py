"""The API's reads of the index (contracts/index.py): lists and searches, and a person's inbox. Every value of a
request is a bound parameter of the query."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, and_, exists, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts.index import LOG_POSITION, position, search_values, waiting_for, workflows
from services.api.pagination import Page
from services.api.search import Cursor, FieldFilter, Search

COMPARE = {
    "=": lambda column, value: column == value,
    "!=": lambda column, value: column != value,
    ">=": lambda column, value: column >= value,
    "<=": lambda column, value: column <= value,
    ">": lambda column, value: column > value,
    "<": lambda column, value: column < value,
}


class WorkflowIndex:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    @asynccontextmanager
    async def lifespan(self, *_: object) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await self.engine.dispose()

    async def search(self, search: Search) -> tuple[Page[dict[str, Any]], int]:
        """A page of the workflows the search admits, in its order; and the log sequence the index reflects."""
        order = workflows.c[search.sort]
        query = select(workflows.c.view, workflows.c.id, order).where(*self._conditions(search))
        if search.after is not None:
            position_of = tuple_(order, workflows.c.id)
            after = tuple_(search.after.value, search.after.workflow_id)
            query = query.where(position_of < after if search.descending else position_of > after)
        ordering = (order.desc(), workflows.c.id.desc()) if search.descending else (order, workflows.c.id)
        return await self._page(query.order_by(*ordering).limit(search.limit + 1), search)

    async def _page(self, query: Select, search: Search) -> tuple[Page[dict[str, Any]], int]:
        async with self.engine.connect() as connection:
            rows = (await connection.execute(query)).all()
            reflects = await connection.scalar(select(position.c.sequence).where(position.c.name == LOG_POSITION))
        page = rows[: search.limit]
        following = None
        if len(rows) > search.limit:
            last = page[-1]
            following = Cursor(search.sort, _utc(last[2]), last.id).encode()
        return Page([row.view for row in page], following), reflects or 0

    @staticmethod
    def _conditions(search: Search) -> list:
        conditions = [workflows.c.archived == search.archived]
        for name in ("type", "business_state", "infra_status"):
            if (value := getattr(search, name)) is not None:
                conditions.append(workflows.c[name] == value)
        for column, operator, moment in search.times:
            conditions.append(COMPARE[operator](workflows.c[column], moment))
        if search.waiting_for:
            conditions.append(
                exists().where(waiting_for.c.workflow_id == workflows.c.id, waiting_for.c.actor.in_(search.waiting_for))
            )
        conditions += [_field_condition(field) for field in search.fields]
        return conditions


def _field_condition(field: FieldFilter):
    column = search_values.c.number if isinstance(field.value, float) else search_values.c.text
    matches = exists().where(
        search_values.c.workflow_id == workflows.c.id,
        search_values.c.name == field.name,
        COMPARE[field.operator](column, field.value),
    )
    if field.operator == "!=":  # a workflow without the value is not equal to it either
        has_value = exists().where(search_values.c.workflow_id == workflows.c.id, search_values.c.name == field.name)
        return or_(matches, and_(~has_value))
    return matches


def _utc(moment: datetime) -> datetime:
    """SQLite gives times back without their zone; the index stores UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
