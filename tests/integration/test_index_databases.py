"""What the index's two databases could disagree on, shown to come out the same on each (the `index_url` fixture runs
these on SQLite and on PostgreSQL): the schema the migration makes, times given with other offsets, ties in a keyset
page, text PostgreSQL cannot hold. Two mean something on one only, and say why."""

import asyncio
from datetime import UTC, datetime, timedelta, timezone

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import make_url

from contracts.index import metadata
from contracts.state import InfraStatus, WorkflowState
from contracts.types import WorkflowTypeInfo
from runtime.index_db import connect
from services.api.search import Cursor
from services.indexer.projection import migrate
from tests.conftest import publish_type_info

pytestmark = pytest.mark.integration

MOMENT = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)
NOTE = WorkflowTypeInfo(
    name="note", title="Note", initial="Open", states=[], transitions=[], search_fields={"author": "text"}
)


def note(workflow_id: str, created_at: datetime = MOMENT, **fields) -> WorkflowState:
    return WorkflowState(
        id=workflow_id,
        type="note",
        business_state="Open",
        created_at=created_at,
        updated_at=created_at,
        infra_status=InfraStatus.WAITING_FOR_EVENT,
        **fields,
    )


@pytest.fixture
async def types(js, topology):
    await publish_type_info(js, topology, NOTE)


async def ids(api, query: str) -> list[str]:
    response = await api.get(f"/workflows?{query}")
    assert response.status_code == 200, response.text
    return [workflow["id"] for workflow in response.json()]


async def test_the_migration_makes_the_tables_the_contract_declares_and_running_it_again_changes_nothing(index_url):
    for _ in range(2):
        await asyncio.to_thread(migrate, index_url)
    engine = connect(index_url)
    try:
        async with engine.connect() as connection:
            differences = await connection.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync), metadata)
            )
    finally:
        await engine.dispose()
    assert differences == []


async def test_times_with_other_offsets_are_ordered_and_filtered_as_the_instants_they_are(api, js, topology, seed):
    plus_five, minus_five = timezone(timedelta(hours=5)), timezone(timedelta(hours=-5))
    await seed(
        js,
        topology,
        note("early", datetime(2026, 12, 1, 10, 0, tzinfo=plus_five)),  # 05:00 UTC
        note("late", MOMENT),  # 06:00 UTC
        note("middle", datetime(2026, 12, 1, 0, 30, tzinfo=minus_five)),
    )  # 05:30 UTC
    assert await ids(api, "") == ["late", "middle", "early"]
    assert await ids(api, "created_after=2026-12-01T05:15:00Z") == ["late", "middle"]
    assert await ids(api, "created_before=2026-12-01T10:10:00%2B05:00") == ["early"]
    listed = {workflow["id"]: workflow for workflow in (await api.get("/workflows")).json()}
    assert datetime.fromisoformat(listed["early"]["created_at"]) == datetime(2026, 12, 1, 5, 0, tzinfo=UTC)


@pytest.mark.parametrize("sort", ["-created_at", "created_at", "-updated_at"])
async def test_pages_through_workflows_of_the_same_moment_go_by_id_without_repeats_or_gaps(
    api, js, topology, seed, sort
):
    await seed(js, topology, *(note(f"w{n}") for n in range(5)))
    seen, query = [], f"/workflows?sort={sort}&limit=2"
    while query:
        page = await api.get(query)
        assert page.status_code == 200, page.text
        seen += [workflow["id"] for workflow in page.json()]
        cursor = page.headers.get("X-Next-Cursor")
        query = cursor and f"/workflows?sort={sort}&limit=2&cursor={cursor}"
    assert seen == sorted((f"w{n}" for n in range(5)), reverse=sort.startswith("-"))


async def test_a_search_text_with_a_nul_is_indexed_with_a_stand_in_and_the_index_goes_on(
    api, js, topology, seed, types
):
    await seed(
        js, topology, note("nul", search_values={"author": "a\x00b"}), note("plain", search_values={"author": "c"})
    )
    assert await ids(api, "author=a%EF%BF%BDb") == ["nul"]  # NUL, which PostgreSQL's text cannot hold, as U+FFFD
    assert await ids(api, "author=c") == ["plain"]


@pytest.mark.parametrize(
    "query",
    [
        "author=a%00b",
        "business_state=%00",
        "waiting_for=x%00",
        "type=%00",
        f"cursor={Cursor('created_at', MOMENT, 'w' + chr(0)).encode()}",
    ],
)
@pytest.mark.index_databases("sqlite")  # refused before any database is asked (PostgreSQL would fail on a NUL: a 500)
async def test_a_filter_with_a_nul_answers_400(api, types, query):
    response = await api.get(f"/workflows?{query}")
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "bad_filter"


@pytest.mark.index_databases("postgresql")  # SQLite has no server to drop connections
async def test_connections_the_server_dropped_are_replaced_before_they_fail_a_request(
    api, js, topology, seed, postgres, index_url
):
    await seed(js, topology, note("before"))
    assert await ids(api, "") == ["before"]  # the API's and the indexer's pools now hold connections
    dropped = make_url(index_url).username  # (as a restart of the server, or an idle timeout between, would)
    postgres.sql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{dropped}'")
    await seed(js, topology, note("after", MOMENT + timedelta(minutes=1)))
    assert await ids(api, "") == ["after", "before"]
