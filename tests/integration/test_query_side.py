"""The query side: the indexer keeps the index from the read model, and the API finds workflows there by the generic
fields, by the search fields their types declare, and by who may answer them now. Run on every database the index
supports (the `index_url` fixture)."""

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import OperationalError

from contracts.commands import CreateWorkflow, ProcessWorkflow
from contracts.index import position, search_values, waiting_for, workflow_row, workflows
from contracts.state import Bookkeeping, InfraStatus, WorkflowState
from contracts.types import WorkflowTypeInfo
from runtime.index_db import connect
from services.indexer.app import create_app as create_indexer
from services.indexer.settings import IndexerSettings
from services.orchestrator.domain.engine import Context
from services.orchestrator.domain.types import SHIPPED
from services.orchestrator.maintenance import check
from services.orchestrator.store import JetStreamEventStore
from tests.conftest import bearer, eventually, publish_type_info
from tests.integration.conftest import indexed, running

pytestmark = pytest.mark.integration

START = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
EXPENSE = WorkflowTypeInfo(
    name="expense",
    title="Expense",
    initial="Draft",
    states=[],
    transitions=[],
    search_fields={"amount": "number", "requester": "text"},
)
APPROVAL = WorkflowTypeInfo(
    name="approval",
    title="Approval",
    initial="Unprocessed",
    states=[],
    transitions=[],
    search_fields={"output": "number"},
)


def expense(workflow_id: str, minute: int, amount: float, requester: str, **fields) -> WorkflowState:
    moment = START + timedelta(minutes=minute)
    fields = {
        "business_state": "Manager Approval",
        "infra_status": InfraStatus.WAITING_FOR_EVENT,
        "waiting_for": ("role:approver",),
        "last_sequence": minute + 1,
        **fields,
    }
    return WorkflowState(
        id=workflow_id,
        type="expense",
        created_at=moment,
        updated_at=moment,
        bookkeeping=Bookkeeping(started=True),
        search_values={"amount": amount, "requester": requester},
        **fields,
    )


@pytest.fixture
async def types(js, topology):
    """The types as the orchestrator publishes them: what the API checks search fields against."""
    for info in (EXPENSE, APPROVAL):
        await publish_type_info(js, topology, info)


@pytest.fixture
async def expenses(js, topology, seed, types):
    await seed(
        js,
        topology,
        expense("e1", 1, 120.0, "ann"),
        expense("e2", 2, 2500.0, "bob"),
        expense("e3", 3, 1000.0, "ann", business_state="Finance Approval", waiting_for=("fin-ann", "fin-cy")),
        expense("e4", 4, 40.0, "cy", business_state="Paid", infra_status=InfraStatus.COMPLETED, waiting_for=()),
    )


async def ids(api, query: str, headers: dict | None = None) -> list[str]:
    response = await api.get(f"/workflows?{query}", headers=headers)
    assert response.status_code == 200, response.text
    return [workflow["id"] for workflow in response.json()]


@pytest.mark.parametrize(
    ("query", "found"),
    [
        ("type=expense", ["e4", "e3", "e2", "e1"]),
        ("type=expense&amount>=1000", ["e3", "e2"]),
        ("amount>1000", ["e2"]),
        ("amount<=120&sort=created_at", ["e1", "e4"]),
        ("amount<1000&amount>100", ["e1"]),
        ("amount=2500", ["e2"]),
        ("amount!=2500&type=expense", ["e4", "e3", "e1"]),
        ("requester=ann", ["e3", "e1"]),
        ("requester!=ann", ["e4", "e2"]),
        ("requester=ann&amount>=500", ["e3"]),
        ("requester=nobody", []),
        ("waiting_for=fin-ann", ["e3"]),
        ("waiting_for=fin-bob", []),
        ("waiting_for=role:approver&waiting_for=fin-cy", ["e3", "e2", "e1"]),
        ("business_state=Paid", ["e4"]),
        ("infra_status=Completed", ["e4"]),
        ("created_after=2026-12-01T09:02:00Z", ["e4", "e3", "e2"]),
        ("created_before=2026-12-01T09:03:00%2B00:00", ["e2", "e1"]),
        ("created_after=2026-12-02", []),
        ("updated_after=2026-12-01&sort=-updated_at&limit=2", ["e4", "e3"]),
    ],
)
async def test_a_search_by_generic_and_declared_fields_finds_exactly_what_matches(api, expenses, query, found):
    assert await ids(api, query) == found


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("colour=red", "colour: not a filter"),
        ("output>=0.5&type=expense", "output: not a filter"),  # the approval type's, not the expense's
        ("requester>=ann", "requester is text: compare it with = or !=, not >="),
        ("amount>=lots", "amount is a number: 'lots' is not one"),
        ("amount>=nan", "amount: 'nan' is not a finite number"),
        ("type>=expense", "type: takes = only, not >="),
        ("created_after=yesterday", "created_after: 'yesterday' is not a date"),
        ("created_after=9999-12-31T23:59:59-05:00", "created_after: '9999-12-31T23:59:59-05:00' is not a date"),
        ("sort=amount", "sort: 'amount' is not one of created_at, updated_at"),
        ("limit=1&limit=2", "limit: given twice"),
        ("amount~5", "'amount~5': a filter is name=value"),
    ],
)
async def test_a_bad_filter_answers_400_naming_what_is_wrong(api, expenses, query, named):
    response = await api.get(f"/workflows?{query}")
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "bad_filter"
    assert named in response.json()["detail"]


async def test_what_looks_like_sql_is_only_ever_a_value(api, expenses, index_url):
    for query in (
        "requester=ann'%20OR%20'1'='1",
        "requester=ann%22;%20DROP%20TABLE%20workflows;--",
        "business_state=x'%20OR%201=1--",
    ):
        assert await ids(api, query) == []
    assert await ids(api, "type=expense") == ["e4", "e3", "e2", "e1"]  # and the table is still there


async def test_pages_of_a_search_follow_their_cursor_in_the_order_asked(api, expenses):
    first = await api.get("/workflows?type=expense&sort=created_at&limit=3")
    assert [w["id"] for w in first.json()] == ["e1", "e2", "e3"]
    second = await api.get(f"/workflows?type=expense&sort=created_at&limit=3&cursor={first.headers['X-Next-Cursor']}")
    assert [w["id"] for w in second.json()] == ["e4"] and "X-Next-Cursor" not in second.headers
    elsewhere = await api.get(f"/workflows?sort=updated_at&cursor={first.headers['X-Next-Cursor']}")
    assert elsewhere.status_code == 400 and "sorted by created_at" in elsewhere.json()["detail"]


async def test_a_list_says_which_log_sequence_it_reflects(api, expenses):
    response = await api.get("/workflows")
    assert response.headers["X-Index-Sequence"] == "5"  # e4's last_sequence, the highest taken in


async def test_the_inbox_lists_what_waits_for_the_caller_by_name_or_role_longest_first(api, expenses):
    approver = await api.get("/me/inbox", headers=bearer("approver"))  # role approver: e1, e2 (manager approvals)
    assert [w["id"] for w in approver.json()] == ["e1", "e2"]
    fin_ann = await api.get("/me/inbox", headers=bearer("fin-ann"))  # named in e3; also holds the approver role
    assert [w["id"] for w in fin_ann.json()] == ["e1", "e2", "e3"]
    requester = await api.get("/me/inbox", headers=bearer("requester"))
    assert requester.status_code == 200 and requester.json() == []
    filtered = await api.get("/me/inbox?amount>=1000", headers=bearer("fin-ann"))
    assert [w["id"] for w in filtered.json()] == ["e2", "e3"]


async def test_a_row_never_goes_back_and_the_same_change_twice_changes_nothing(api, js, topology, expenses, seed):
    newer = expense(
        "e1",
        1,
        120.0,
        "ann",
        business_state="Rejected",
        infra_status=InfraStatus.COMPLETED,
        waiting_for=(),
        last_sequence=50,
    )
    older = expense("e1", 1, 999.0, "ann", last_sequence=10)
    await seed(js, topology, newer, older, newer)
    found = (await api.get("/workflows/e1")).json()  # (the read model's own answer is the last write: `newer`)
    assert found["business_state"] == "Rejected"
    listed = {w["id"]: w for w in (await api.get("/workflows?type=expense")).json()}
    assert listed["e1"]["business_state"] == "Rejected"
    assert await ids(api, "amount=999") == []
    assert await ids(api, "waiting_for=role:approver") == ["e2"]


async def test_a_workflow_removed_from_the_read_model_leaves_the_index(api, js, topology, expenses, indexer):
    await (await js.key_value(topology.state_bucket)).delete("e2")
    await indexed(indexer, js, topology)
    assert await ids(api, "type=expense") == ["e4", "e3", "e1"]
    assert await ids(api, "amount=2500") == []


async def test_an_indexer_stopped_midway_resumes_where_it_stopped_and_loses_and_doubles_nothing(
    nats_url, js, topology, index_url, types
):
    bucket = await js.key_value(topology.state_bucket)
    settings = IndexerSettings(NATS_URL=nats_url, WF_PREFIX=topology.prefix, WF_INDEX_URL=index_url)
    first_half = [expense(f"r{n}", n, float(n), "ann") for n in range(300)]
    second_half = [expense(f"r{n}", n, float(n), "bob") for n in range(300, 600)]
    app = create_indexer(settings)
    async with running(app):
        for state in first_half:
            await bucket.put(state.id, state.model_dump_json().encode())
        await indexed(app.state.service, js, topology)
        stopped_at = await app.state.service.feed.projection.position()
    for state in second_half:  # while no indexer runs
        await bucket.put(state.id, state.model_dump_json().encode())
    again = create_indexer(settings)
    async with running(again):
        indexer = again.state.service
        assert await indexer.feed.projection.position() == stopped_at  # it starts where it stopped
        await indexed(indexer, js, topology)
        async with indexer.engine.connect() as connection:
            rows = await connection.scalar(select(func.count()).select_from(workflows))
            values = await connection.scalar(select(func.count()).select_from(search_values))
            waiting = await connection.scalar(select(func.count()).select_from(waiting_for))
    assert (rows, values, waiting) == (600, 1200, 600)


async def test_an_index_reset_to_nothing_is_built_again_the_same(
    nats_url, js, topology, index_url, api, expenses, indexer
):
    before = (await api.get("/workflows?type=expense")).json()
    await indexer.feed.projection.reset()
    await indexed(indexer, js, topology)
    assert (await api.get("/workflows?type=expense")).json() == before


async def test_check_proves_the_index_equals_the_replay_of_the_log_and_names_what_differs(nc, js, topology, indexer):
    store = JetStreamEventStore(nc, js, await js.key_value(topology.state_bucket), topology)
    context = Context(now=START, send_fails=lambda *_: False)
    for workflow_id in ("c1", "c2", "c3"):
        for command in (
            CreateWorkflow(workflow_id=workflow_id, workflow_type="expense", input={"amount": 300, "requester": "ann"}),
            ProcessWorkflow(workflow_id=workflow_id),
        ):
            await store.save(await store.append(SHIPPED.decide(await store.load(workflow_id), command, context)))
    await indexed(indexer, js, topology)
    report = await check(js, topology, index_engine=indexer.engine)
    assert report.ok, report.problems

    async with indexer.engine.begin() as connection:
        await connection.execute(update(workflows).where(workflows.c.id == "c1").values(business_state="Paid"))
        await connection.execute(delete(search_values).where(search_values.c.workflow_id == "c2"))
        await connection.execute(delete(waiting_for).where(waiting_for.c.workflow_id == "c3"))
        await connection.execute(delete(workflows).where(workflows.c.id == "c3"))
        row = workflow_row(expense("ghost", 9, 1.0, "nobody"))
        await connection.execute(insert(workflows).values(row))
    assert sorted((await check(js, topology, index_engine=indexer.engine)).index_mismatches) == [
        "c1: the index differs from the replay in business_state",
        "c2: the index differs from the replay in search_value_rows",
        "c3: not in the index",
        "ghost: in the index, but not in the log",
    ]


async def test_the_next_page_link_keeps_filters_with_any_operator(api, expenses):
    first = await api.get("/workflows?amount%3E100&requester=ann&limit=1")
    assert [w["id"] for w in first.json()] == ["e3"]
    link = first.headers["Link"]
    second = await api.get(link[1 : link.index(">")])
    assert second.status_code == 200, second.text
    assert [w["id"] for w in second.json()] == ["e1"]


async def test_an_indexer_killed_mid_stream_and_started_again_loses_and_doubles_nothing(
    nats_url, nc, js, topology, start_service, tmp_path
):
    """A real indexer process, killed with -9 while it is taking in the read model, then started again: the index
    equals the replay of the log (maintenance check), every workflow once. (start_service's index: a SQLite file.)"""
    store = JetStreamEventStore(nc, js, await js.key_value(topology.state_bucket), topology)
    context = Context(now=START, send_fails=lambda *_: False)

    async def created(first: int, count: int) -> None:
        for number in range(first, first + count):
            workflow_id = f"k{number}"
            state = await store.append(
                SHIPPED.decide(
                    WorkflowState(id=workflow_id),
                    CreateWorkflow(
                        workflow_id=workflow_id, workflow_type="expense", input={"amount": number, "requester": "ann"}
                    ),
                    context,
                )
            )
            await store.save(state)

    indexer = start_service("indexer", nats_url, topology)
    engine = connect(f"sqlite+aiosqlite:///{tmp_path / 'index.sqlite'}")
    try:

        async def indexed_some() -> bool:
            try:
                async with engine.connect() as connection:
                    return (await connection.scalar(select(func.count()).select_from(workflows)) or 0) > 0
            except OperationalError:  # not migrated yet
                return False

        writing = asyncio.create_task(created(0, 400))
        await eventually(indexed_some, timeout_s=30)
        indexer.stop(kill=True)  # while the read model is still being written and taken in
        await writing
        start_service("indexer", nats_url, topology)
        end = (await js.stream_info(topology.kv_stream(topology.state_bucket))).state.last_seq

        async def caught_up() -> bool:
            async with engine.connect() as connection:
                at = await connection.scalar(select(position.c.sequence).where(position.c.name == "read_model"))
            return (at or 0) >= end

        await eventually(caught_up, timeout_s=30)
        report = await check(js, topology, index_engine=engine)
        assert report.ok and report.workflows == 400, report.problems
    finally:
        await engine.dispose()


async def test_a_search_by_the_field_of_a_type_published_after_the_api_read_the_types_is_answered_at_once(
    api, js, topology, seed
):
    assert (await api.get("/workflows?amount>=100")).status_code == 400  # no type declares `amount` yet
    await publish_type_info(js, topology, EXPENSE)
    await seed(js, topology, expense("e1", 1, 120.0, "ann"))

    found = await api.get("/workflows?amount>=100")  # within the time the API keeps the types it read

    assert found.status_code == 200, found.text
    assert [view["id"] for view in found.json()] == ["e1"]
