"""The HTTP API against a real nats-server. No orchestrator runs here: where a command needs an outcome, a small fake
plays the orchestrator's part (tests/integration/fake_orchestrator.py), so these tests pin down the API's side of the
contract only.

The app runs in the test's own event loop (httpx's ASGITransport plus the app's lifespan): Litestar's AsyncTestClient
runs the app on a portal thread and blocks the test's loop for each request, so the test could not play the
orchestrator while a request waits for an outcome."""

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from nats.js.client import JetStreamContext

from contracts.commands import COMMAND, CreateWorkflow
from contracts.state import Bookkeeping, InfraStatus, WorkflowState
from contracts.topology import Topology
from contracts.types import StateInfo, TransitionInfo, WorkflowTypeInfo
from services.api import settings as api_settings
from services.api.settings import ApiSettings
from services.launcher.nats_server import free_port
from services.orchestrator.domain.engine import Context
from services.orchestrator.domain.types import SHIPPED
from services.orchestrator.store import ConcurrencyConflict, JetStreamEventStore
from tests.conftest import bearer, publish_type_info
from tests.integration.conftest import INDEX_DATABASES, api_client, eventually, indexed
from tests.integration.fake_orchestrator import FakeOrchestrator

# Only the tests that list read the index: they run on each database it supports (EVERY_DATABASE), the others, which
# never reach it, on SQLite alone.
pytestmark = [pytest.mark.integration, pytest.mark.index_databases("sqlite")]
EVERY_DATABASE = pytest.mark.index_databases(*INDEX_DATABASES)

BAD_WORKFLOW_IDS = ["a.b", "*", ">", "a b", "x" * 65]


@pytest.fixture
async def orchestrator(js: JetStreamContext, topology: Topology) -> AsyncIterator[FakeOrchestrator]:
    async with FakeOrchestrator(js, topology) as fake:
        yield fake


async def commands_published(js: JetStreamContext, topology: Topology) -> int:
    return (await js.stream_info(topology.commands_stream)).state.messages


# create and read


async def test_create_answers_201_with_the_workflow_view_once_applied(api, orchestrator):
    response = await api.post("/workflows", json={"type": "approval", "input": {"amount": 12}})

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["outcome"] == "accepted" and body["duplicate"] is False
    workflow = body["workflow"]
    assert workflow["id"] == body["workflow_id"]
    assert workflow["type"] == "approval"
    assert workflow["business_state"] == "Unprocessed"
    assert workflow["infra_status"] == "Waiting For Event"
    assert "bookkeeping" not in workflow and "applied_commands" not in workflow
    for field in ("output", "attempt", "created_at", "updated_at", "last_sequence", "error", "context"):
        assert field in workflow
    assert orchestrator.received[0].message_id == body["command_id"]

    fetched = await api.get(f"/workflows/{body['workflow_id']}")
    assert fetched.status_code == 200
    assert fetched.json() == workflow


async def test_create_with_a_client_chosen_id_uses_it(api, orchestrator):
    response = await api.post("/workflows", json={"type": "approval", "workflow_id": "order-42"})

    assert response.status_code == 201, response.text
    assert response.json()["workflow"]["id"] == "order-42"


async def test_create_without_a_body_creates_an_approval(api, orchestrator):
    response = await api.post("/workflows")

    assert response.status_code == 201, response.text
    assert orchestrator.received[0].workflow_type == "approval"


async def test_events_lists_the_log_with_stream_sequences(api, orchestrator, js, topology):
    created = (await api.post("/workflows", json={"type": "approval"})).json()
    workflow_id = created["workflow_id"]
    await api.post(f"/workflows/{workflow_id}/process")

    response = await api.get(f"/workflows/{workflow_id}/events")

    assert response.status_code == 200
    events = response.json()
    assert [item["event"]["type"] for item in events] == ["WorkflowCreated", "TransitionTaken"]
    assert events[0]["event"]["causation_id"] == created["command_id"]
    last = await js.get_last_msg(topology.events_stream, topology.events_subject(workflow_id))
    assert events[-1]["sequence"] == last.seq
    assert events[0]["sequence"] < events[1]["sequence"]


# commands


async def test_process_answers_200_with_the_view_that_shows_it(api, orchestrator):
    workflow_id = (await api.post("/workflows", json={"type": "approval"})).json()["workflow_id"]

    response = await api.post(f"/workflows/{workflow_id}/process")

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["outcome"] == "accepted"
    assert body["workflow"]["business_state"] == "Sending To Queue"
    assert body["workflow"]["infra_status"] == "Processing Step"
    assert (await api.get(f"/workflows/{workflow_id}")).json()["business_state"] == "Sending To Queue"


async def test_a_rejected_command_answers_409_with_the_reason(api, orchestrator):
    workflow_id = (await api.post("/workflows", json={"type": "approval"})).json()["workflow_id"]

    response = await api.post(
        f"/workflows/{workflow_id}/approve", json={"approver": "ada", "comment": "fine"}, headers=bearer("ada")
    )

    assert response.status_code == 409, response.text
    assert response.json() == {
        "title": "Conflict",
        "status": 409,
        "detail": "cannot approve a workflow in state Unprocessed",
        "code": "not_allowed",
    }
    assert orchestrator.received[-1].approver == "ada"


async def test_creating_an_existing_id_answers_409(api, orchestrator):
    await api.post("/workflows", json={"type": "approval", "workflow_id": "twice"})

    response = await api.post("/workflows", json={"type": "approval", "workflow_id": "twice"})

    assert response.status_code == 409
    assert response.json()["code"] == "already_exists"


async def test_an_unknown_type_answers_422_with_the_reason(api, orchestrator):
    response = await api.post("/workflows", json={"type": "mystery"})

    assert response.status_code == 422
    assert response.json() == {
        "title": "Unprocessable Entity",
        "status": 422,
        "detail": "no workflow type 'mystery'",
        "code": "unknown_type",
    }


async def test_no_outcome_within_the_timeout_answers_202_pending(nats_url, topology, js, settings_for):
    async with api_client(settings_for(nats_url, topology, WF_COMMAND_TIMEOUT_S="0.2")) as api:
        response = await api.post("/workflows", json={"type": "approval", "workflow_id": "nobody-listens"})

    assert response.status_code == 202
    body = response.json()
    assert body["outcome"] == "pending" and body["workflow_id"] == "nobody-listens" and body["workflow"] is None
    assert await commands_published(js, topology) == 1


async def test_a_repeated_idempotency_key_is_applied_once_and_answers_duplicate(api, orchestrator):
    workflow_id = (await api.post("/workflows", json={"type": "approval"})).json()["workflow_id"]
    headers = {"Idempotency-Key": "process-once"}

    first = await api.post(f"/workflows/{workflow_id}/process", headers=headers)
    again = await api.post(f"/workflows/{workflow_id}/process", headers=headers)

    assert first.status_code == 200 and first.json()["duplicate"] is False
    assert again.status_code == 200, again.text
    assert again.json()["duplicate"] is True
    assert again.json()["command_id"] == "process-once"
    assert again.json()["workflow"] == first.json()["workflow"]
    assert [command.kind for command in orchestrator.received] == ["create", "process"]


async def test_a_repeated_rejected_command_gets_the_same_rejection(api, orchestrator):
    workflow_id = (await api.post("/workflows", json={"type": "approval"})).json()["workflow_id"]
    headers = {"Idempotency-Key": "approve-too-early"}

    first = await api.post(f"/workflows/{workflow_id}/approve", headers=headers)
    again = await api.post(f"/workflows/{workflow_id}/approve", headers=headers)

    assert first.status_code == again.status_code == 409
    assert again.json() == first.json()
    assert [command.kind for command in orchestrator.received] == ["create", "approve"]


async def test_create_with_start_creates_and_processes_in_one_call(api, orchestrator):
    response = await api.post("/workflows", json={"type": "approval", "start": True})

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["workflow"]["business_state"] == "Sending To Queue"
    # One command, decided at once: nothing can come between creating and processing.
    assert [(command.kind, command.start) for command in orchestrator.received] == [("create", True)]
    assert body["command_id"] == orchestrator.received[0].message_id
    assert orchestrator.received[0].workflow_id == body["workflow_id"]


async def test_create_with_start_of_an_existing_id_is_refused_and_changes_nothing(api, orchestrator):
    await api.post("/workflows", json={"workflow_id": "taken"})

    response = await api.post("/workflows", json={"workflow_id": "taken", "start": True})

    assert response.status_code == 409
    assert response.json() == {
        "title": "Conflict",
        "status": 409,
        "detail": "workflow taken already exists",
        "code": "already_exists",
    }
    assert (await api.get("/workflows/taken")).json()["business_state"] == "Unprocessed"


async def test_create_with_start_of_an_unknown_type_answers_the_creates_rejection(api, orchestrator):
    response = await api.post("/workflows", json={"type": "mystery", "start": True})

    assert response.status_code == 422
    assert response.json()["code"] == "unknown_type"


async def test_wait_zero_answers_202_at_once_and_the_command_still_applies(api, orchestrator):
    workflow_id = (await api.post("/workflows", json={"type": "approval"})).json()["workflow_id"]

    response = await api.post(f"/workflows/{workflow_id}/process?wait=0")

    assert response.status_code == 202, response.text
    body = response.json()
    assert (body["outcome"], body["workflow"]) == ("pending", None)

    async def applied() -> bool:
        return (await api.get(f"/workflows/{workflow_id}")).json()["business_state"] == "Sending To Queue"

    await eventually(applied)
    assert orchestrator.received[-1].message_id == body["command_id"]


async def test_a_wait_shorter_than_the_default_is_all_a_request_waits(api, js, topology):
    started = asyncio.get_running_loop().time()  # nobody answers: the default wait (5 s) would pass otherwise

    response = await api.post("/workflows?wait=0.2", json={"type": "approval"})

    assert response.status_code == 202
    assert asyncio.get_running_loop().time() - started < 2
    assert await commands_published(js, topology) == 1


@pytest.mark.parametrize("wait", ["-1", "61", "soon"])
async def test_a_bad_wait_answers_422(api, orchestrator, js, topology, wait):
    response = await api.post(f"/workflows?wait={wait}", json={"type": "approval"})

    assert response.status_code == 422, response.text
    assert "query wait" in response.json()["detail"]
    assert await commands_published(js, topology) == 0


@EVERY_DATABASE
async def test_a_cancelled_workflow_once_archived_leaves_the_default_list(api, orchestrator, indexer, js, topology):
    workflow_id = (await api.post("/workflows", json={"type": "approval"})).json()["workflow_id"]

    cancelled = await api.post(f"/workflows/{workflow_id}/cancel", json={"reason": "no longer needed"})
    archived = await api.post(f"/workflows/{workflow_id}/archive")

    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["workflow"]["business_state"] == "Cancelled"
    assert cancelled.json()["workflow"]["infra_status"] == "Cancelled"
    assert orchestrator.received[1].reason == "no longer needed"
    assert archived.status_code == 200, archived.text
    assert archived.json()["workflow"]["archived"] is True
    await indexed(indexer, js, topology)  # the list is the index's: it may lag the answer a moment
    assert (await api.get("/workflows")).json() == []
    assert [workflow["id"] for workflow in (await api.get("/workflows?archived=true")).json()] == [workflow_id]


async def test_retry_and_terminate_are_sent_and_refused_like_any_command(api, orchestrator):
    workflow_id = (await api.post("/workflows", json={"type": "approval"})).json()["workflow_id"]

    retried = await api.post(f"/workflows/{workflow_id}/retry", headers={"Idempotency-Key": "retry-1"})
    terminated = await api.post(f"/workflows/{workflow_id}/terminate", json={"reason": "stuck"})

    assert retried.status_code == terminated.status_code == 409
    assert retried.json()["detail"] == "cannot retry a workflow in state Unprocessed"
    assert [command.kind for command in orchestrator.received] == ["create", "retry", "terminate"]
    assert orchestrator.received[1].message_id == "retry-1" and orchestrator.received[2].reason == "stuck"


# unknown workflows and bad input: 4xx with the reason, never 5xx, nothing published


COMMANDS_ON_EXISTING = ["process", "approve", "reject", "cancel", "terminate", "retry", "archive"]


@pytest.mark.parametrize("command", COMMANDS_ON_EXISTING)
async def test_a_command_for_an_unknown_workflow_answers_404_and_publishes_nothing(api, js, topology, command):
    response = await api.post(f"/workflows/never-created/{command}")

    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json() == {
        "title": "Not Found",
        "status": 404,
        "detail": "workflow never-created not found",
        "code": "unknown_workflow",
    }
    assert await commands_published(js, topology) == 0


async def test_an_unknown_workflow_answers_404_on_get_and_events(api):
    for path in ("/workflows/never-created", "/workflows/never-created/events"):
        response = await api.get(path)
        assert response.status_code == 404, path
        assert response.json()["code"] == "unknown_workflow"


@pytest.mark.parametrize("workflow_id", BAD_WORKFLOW_IDS)
async def test_a_bad_workflow_id_in_the_path_answers_422_and_publishes_nothing(api, js, topology, workflow_id):
    for method, path in [
        ("GET", ""),
        ("GET", "/events"),
        *[("POST", f"/{command}") for command in COMMANDS_ON_EXISTING],
    ]:
        response = await api.request(method, f"/workflows/{workflow_id}{path}")
        assert response.status_code == 422, (method, path, response.text)
        body = response.json()
        assert body["code"] == "invalid"
        assert "path workflow_id" in body["detail"], body
    assert await commands_published(js, topology) == 0


@pytest.mark.parametrize(
    ("request_kwargs", "reason"),
    [
        ({"json": {"type": "approval", "colour": "red"}}, "body colour: Extra inputs are not permitted"),
        ({"json": {"type": 7}}, "body type: Input should be a valid string"),
        ({"json": {"type": "Not A Type!"}}, "body type: String should match pattern"),
        ({"json": {"type": "approval", "input": [1, 2]}}, "body input: Input should be a valid dictionary"),
        ({"json": {"type": "approval", "workflow_id": "a.b"}}, "body workflow_id: String should match pattern"),
        ({"json": ["approval"]}, "body"),
    ],
)
async def test_a_bad_create_body_answers_422_with_the_reason(api, js, topology, request_kwargs, reason):
    response = await api.post("/workflows", **request_kwargs)

    assert response.status_code == 422, response.text
    assert reason in response.json()["detail"]
    assert await commands_published(js, topology) == 0


async def test_malformed_json_answers_400(api, js, topology):
    response = await api.post("/workflows", content=b"{not json", headers={"content-type": "application/json"})

    assert response.status_code == 400
    assert "JSON is malformed" in response.json()["detail"]
    assert await commands_published(js, topology) == 0


async def test_bad_decision_bodies_and_keys_answer_422(api, orchestrator, js, topology):
    workflow_id = (await api.post("/workflows", json={"type": "approval"})).json()["workflow_id"]
    cases = [
        ("approve", {"json": {"approver": ""}}, "body approver: String should have at least 1 character"),
        ("approve", {"json": {"approver": "ada", "signed": True}}, "body signed: Extra inputs are not permitted"),
        ("reject", {"json": {"reason": "x" * 2001}}, "body reason: String should have at most 2000 characters"),
        ("process", {"headers": {"Idempotency-Key": "has space"}}, "header idempotency_key"),
    ]
    for command, request_kwargs, reason in cases:
        response = await api.post(f"/workflows/{workflow_id}/{command}", **request_kwargs)
        assert response.status_code == 422, (command, response.text)
        assert reason in response.json()["detail"], response.json()
    assert [command.kind for command in orchestrator.received] == ["create"]


async def test_a_command_over_the_size_limit_answers_413(api, js, topology):
    response = await api.post("/workflows", json={"type": "approval", "input": {"blob": "x" * 70_000}})

    assert response.status_code == 413
    assert await commands_published(js, topology) == 0


# listing


@EVERY_DATABASE
async def test_list_is_newest_first_and_filters_by_either_state(api, js, topology, indexer):
    kv = await js.key_value(topology.state_bucket)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    seeded = [
        ("first", "Unprocessed", InfraStatus.WAITING_FOR_EVENT),
        ("second", "Waiting For Approval", InfraStatus.WAITING_FOR_EVENT),
        ("third", "Error", InfraStatus.ERRORED),
    ]
    for minutes, (workflow_id, business_state, infra_status) in enumerate(seeded):
        state = WorkflowState(
            id=workflow_id,
            type="approval",
            business_state=business_state,
            infra_status=infra_status,
            created_at=start + timedelta(minutes=minutes),
            bookkeeping=Bookkeeping(applied_commands=("c",)),
        )
        await kv.put(workflow_id, state.model_dump_json().encode())
    await indexed(indexer, js, topology)

    async def ids(query: str) -> list[str]:
        response = await api.get(f"/workflows{query}")
        assert response.status_code == 200, response.text
        return [workflow["id"] for workflow in response.json()]

    assert await ids("") == ["third", "second", "first"]
    assert await ids("?infra_status=Waiting%20For%20Event") == ["second", "first"]
    assert await ids("?business_state=Error") == ["third"]
    assert await ids("?business_state=Unprocessed&infra_status=Errored") == []
    assert await ids("?limit=1") == ["third"]
    assert {"bookkeeping", "applied_commands"}.isdisjoint((await api.get("/workflows")).json()[0])
    bad = await api.get("/workflows?infra_status=Sleeping")
    assert bad.status_code == 400 and bad.json()["detail"].startswith("infra_status: 'Sleeping' is not one of")


@EVERY_DATABASE
async def test_list_is_empty_before_any_workflow(api):
    response = await api.get("/workflows")

    assert response.status_code == 200
    assert response.json() == []


def seeded(workflow_id: str, minute: int, **fields) -> WorkflowState:
    created_at = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=minute)
    fields = {"type": "approval", "business_state": "Unprocessed", **fields}
    return WorkflowState(id=workflow_id, created_at=created_at, **fields)


def next_link(response: httpx.Response) -> str | None:
    link = response.headers.get("Link")
    if link is None:
        return None
    assert link.endswith('>; rel="next"'), link
    return link[1 : link.index(">")]


@EVERY_DATABASE
async def test_list_pages_follow_the_next_cursor_without_repeats_or_gaps(api, js, topology, seed):
    await seed(js, topology, *(seeded(f"w{minute}", minute) for minute in range(5)))

    first = await api.get("/workflows?limit=2")
    await seed(js, topology, seeded("w5", 5))  # created meanwhile: on no later page, and it shifts nothing
    second = await api.get(next_link(first))
    third = await api.get(next_link(second))

    assert [[item["id"] for item in page.json()] for page in (first, second, third)] == [
        ["w4", "w3"],
        ["w2", "w1"],
        ["w0"],
    ]
    cursor = first.headers["X-Next-Cursor"]
    assert next_link(first) == f"/workflows?limit=2&cursor={cursor}"
    assert (await api.get(f"/workflows?limit=2&cursor={cursor}")).json() == second.json()
    assert "X-Next-Cursor" not in third.headers and next_link(third) is None


@EVERY_DATABASE
async def test_list_filters_by_type_and_shows_archived_ones_only_when_asked(api, js, topology, seed):
    await seed(
        js,
        topology,
        seeded("a", 0),
        seeded("b", 1, type="expense"),
        seeded("c", 2, archived=True),
        seeded("d", 3, type="expense", archived=True),
    )

    async def ids(query: str) -> list[str]:
        response = await api.get(f"/workflows{query}")
        assert response.status_code == 200, response.text
        return [workflow["id"] for workflow in response.json()]

    assert await ids("") == ["b", "a"]
    assert await ids("?type=expense") == ["b"]
    assert await ids("?archived=true") == ["d", "c"]
    assert await ids("?archived=true&type=approval") == ["c"]
    assert await ids("?archived=false&type=approval&limit=1") == ["a"]


@EVERY_DATABASE
async def test_list_leaves_out_deleted_keys(api, js, topology, seed, indexer):
    await seed(js, topology, seeded("kept", 0), seeded("gone", 1))
    await (await js.key_value(topology.state_bucket)).delete("gone")
    await indexed(indexer, js, topology)

    response = await api.get("/workflows")

    assert [workflow["id"] for workflow in response.json()] == ["kept"]


@pytest.mark.parametrize(
    "query",
    [
        "cursor=nonsense",
        "cursor=W10",
        "cursor=WyJ5ZXN0ZXJkYXkiLCJ3MSJd",
        "archived=maybe",
        "limit=0",
        "limit=many",
        "sort=name",
    ],
)
async def test_a_bad_list_query_answers_400_naming_the_parameter(api, query):
    response = await api.get(f"/workflows?{query}")

    assert response.status_code == 400, response.text
    assert response.json()["code"] == "bad_filter"
    assert response.json()["detail"].startswith(f"{query.split('=')[0]}: ")


async def test_events_are_paged_by_sequence(api, orchestrator):
    workflow_id = (await api.post("/workflows", json={"type": "approval"})).json()["workflow_id"]
    await api.post(f"/workflows/{workflow_id}/process")
    await api.post(f"/workflows/{workflow_id}/cancel")
    whole = (await api.get(f"/workflows/{workflow_id}/events")).json()

    first = await api.get(f"/workflows/{workflow_id}/events?limit=2")
    second = await api.get(next_link(first))

    assert [item["event"]["type"] for item in whole] == ["WorkflowCreated", "TransitionTaken", "WorkflowCancelled"]
    assert first.json() == whole[:2] and second.json() == whole[2:]
    assert first.headers["X-Next-Cursor"] == str(whole[1]["sequence"])
    assert next_link(first) == f"/workflows/{workflow_id}/events?limit=2&after={whole[1]['sequence']}"
    assert next_link(second) is None
    assert (await api.get(f"/workflows/{workflow_id}/events?after={whole[-1]['sequence']}")).json() == []
    assert (await api.get(f"/workflows/{workflow_id}/events?limit=0")).status_code == 422


# workflow types


def workflow_type(name: str) -> WorkflowTypeInfo:
    return WorkflowTypeInfo(
        name=name,
        title=name.title(),
        initial="Unprocessed",
        states=[
            StateInfo(name="Unprocessed", kind="wait", accepts=["process", "cancel"]),
            StateInfo(name="Finished", kind="succeeded", accepts=["archive"]),
        ],
        transitions=[TransitionInfo(trigger="process", source="Unprocessed", dest="Finished")],
    )


async def test_types_are_listed_by_name_and_read_one_at_a_time(api, js, topology):
    for name in ("expense", "approval"):
        await publish_type_info(js, topology, workflow_type(name))

    listed = await api.get("/types")
    one = await api.get("/types/expense")

    assert listed.status_code == 200
    assert listed.json() == [workflow_type(name).model_dump(mode="json") for name in ("approval", "expense")]
    assert one.status_code == 200 and one.json() == workflow_type("expense").model_dump(mode="json")


async def test_an_unknown_type_answers_404_and_a_bad_name_422(api):
    missing = await api.get("/types/mystery")
    bad = await api.get("/types/Not-A-Type")

    assert (await api.get("/types")).json() == []
    assert missing.status_code == 404
    assert missing.json() == {
        "title": "Not Found",
        "status": 404,
        "detail": "workflow type mystery not found",
        "code": "unknown_type",
    }
    assert bad.status_code == 422 and "path name" in bad.json()["detail"]


# operations


async def test_healthz_answers_200_once_connected(api):
    response = await api.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_without_nats_healthz_and_reads_answer_503(topology, settings_for):
    settings = settings_for(f"nats://127.0.0.1:{free_port()}", topology)
    async with api_client(settings, wait_ready=False) as api:
        health = await api.get("/healthz")
        listing = await api.get("/workflows")

    assert health.status_code == 503
    assert listing.status_code == 503
    assert listing.json()["code"] == "unavailable"


async def test_serves_the_web_page_and_its_config(nats_url, topology, js, settings_for):
    async with api_client(settings_for(nats_url, topology)) as api:
        page = await api.get("/")
        config = await api.get("/config")
        schema = await api.get("/schema/openapi.json")
    async with api_client(settings_for(nats_url, topology, WF_PUBLIC_BROADCASTER_URL="wss://example.test/ws")) as api:
        public = await api.get("/config")

    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    envelope = ["causation_id", "correlation_id", "message_id", "occurred_at", "previous_hash", "schema_version"]
    envelope += ["type", "workflow_id"]
    assert config.json() == {"broadcaster_url": "ws://api.test:8001/ws", "event_envelope": envelope}
    assert public.json() == {"broadcaster_url": "wss://example.test/ws", "event_envelope": envelope}
    assert schema.status_code == 200 and "/workflows/{workflow_id}/approve" in schema.json()["paths"]


def test_the_web_dir_is_the_built_app_when_there_is_one(tmp_path, monkeypatch):
    monkeypatch.delenv("WF_WEB_DIR", raising=False)
    monkeypatch.setattr(api_settings, "PROJECT_WEB_DIR", tmp_path)
    assert ApiSettings().web_dir == tmp_path

    (tmp_path / "dist").mkdir()
    assert ApiSettings().web_dir == tmp_path / "dist"


async def test_the_outcome_is_the_committed_decision_not_one_the_stream_refused(api, nc, js, topology):
    """A core NATS subscriber also sees the events of an append the stream refuses (an orchestrator that lost an
    optimistic-concurrency race and will decide again). The API must answer with what the log recorded."""
    store = JetStreamEventStore(nc, js, await js.key_value(topology.state_bucket), topology)
    context = Context(now=datetime.now(UTC), send_fails=lambda *_: False)
    state = await store.load("raced")
    state = await store.append(SHIPPED.decide(state, CreateWorkflow(workflow_id="raced"), context))
    await store.save(state)

    request = asyncio.create_task(api.post("/workflows/raced/process"))
    pending = await js.pull_subscribe(
        topology.commands_subject("raced"), durable="race", stream=topology.commands_stream
    )
    message = (await pending.fetch(1, timeout=5))[0]
    command = COMMAND.validate_json(message.data)
    await message.ack()

    # The losing decision: a rejection based on a stale state, refused by the stream.
    stale = state.model_copy(
        update={"business_state": "Waiting For Approval", "last_sequence": state.last_sequence - 1}
    )
    with pytest.raises(ConcurrencyConflict):
        await store.append(SHIPPED.decide(stale, command, context))
    # The winning decision, on the true state.
    await store.save(await store.append(SHIPPED.decide(state, command, context)))

    response = await request
    assert response.status_code == 200, response.text
    assert response.json()["workflow"]["business_state"] == "Sending To Queue"
