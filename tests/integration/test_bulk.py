"""Bulk actions against a real nats-server: `POST /workflows/bulk/{action}` with a filter of `GET /workflows` runs one
ordinary command per matching workflow in the background; `GET /bulk/{id}`, the broadcaster's `/ws?bulk=<id>` and
`wf bulk` report its progress; an API process stopped midway (cleanly, or killed) leaves it to another, which finishes
it with nothing applied twice. The fake orchestrator (tests/integration/fake_orchestrator.py) answers the commands;
a gated one holds them, so a bulk can be caught midway."""

import asyncio
import json
import re
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from litestar import Litestar
from nats.js.client import JetStreamContext
from websockets.asyncio.client import connect as open_socket
from websockets.exceptions import ConnectionClosed

from contracts.auth import Role, TokenHolder
from contracts.bulk import BulkRecord, command_id, ids_key, meta_key
from contracts.events import CommandRejected, WorkflowCancelled
from contracts.ids import new_id
from contracts.state import Bookkeeping, InfraStatus, WorkflowState
from contracts.topology import Topology
from runtime.eventlog import read_events
from runtime.tokens import write_tokens_file
from services.api.app import create_app as create_api
from services.api.settings import ApiSettings
from services.broadcaster.app import create_app as create_broadcaster
from services.broadcaster.settings import BroadcasterSettings
from services.cli.main import main as wf
from services.launcher.nats_server import free_port
from tests.conftest import TEST_TOKENS, bearer, eventually
from tests.integration.conftest import running
from tests.integration.fake_orchestrator import FakeOrchestrator
from tests.integration.serving import served

pytestmark = pytest.mark.integration

FINISHED_WITHIN_S = 30.0


class GatedOrchestrator(FakeOrchestrator):
    """Answers the first `answer_first` commands at once, and holds the others until `gate` is set."""

    def __init__(self, js: JetStreamContext, topology: Topology, answer_first: int = 0) -> None:
        super().__init__(js, topology)
        self.answer_first, self.taken = answer_first, 0
        self.gate = asyncio.Event()

    async def _answer(self, message) -> None:
        self.taken += 1
        if self.taken > self.answer_first:
            await self.gate.wait()
        await super()._answer(message)


@pytest.fixture
async def orchestrator(js: JetStreamContext, topology: Topology) -> AsyncIterator[FakeOrchestrator]:
    async with FakeOrchestrator(js, topology) as fake:
        yield fake


@pytest.fixture
async def gated(js: JetStreamContext, topology: Topology) -> AsyncIterator[GatedOrchestrator]:
    async with GatedOrchestrator(js, topology) as fake:
        yield fake
        fake.gate.set()


def workflow(workflow_id: str, minute: int, business_state: str = "Unprocessed", **fields) -> WorkflowState:
    infra = InfraStatus.WAITING_FOR_EVENT
    created_at = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=minute)
    return WorkflowState(
        id=workflow_id,
        type="approval",
        business_state=business_state,
        infra_status=infra,
        bookkeeping=Bookkeeping(started=True),
        created_at=created_at,
        updated_at=created_at,
        **fields,
    )


async def finished(api: httpx.AsyncClient, bulk_id: str) -> dict:
    """The bulk's report once it has finished."""

    async def report() -> dict | None:
        body = (await api.get(f"/bulk/{bulk_id}")).json()
        return body if body["finished_at"] else None

    return await eventually(report, FINISHED_WITHIN_S)


async def bulk_record(js: JetStreamContext, topology: Topology, bulk_id: str) -> BulkRecord:
    entry = await (await js.key_value(topology.bulk_bucket)).get(meta_key(bulk_id))
    assert entry.value is not None
    return BulkRecord.model_validate_json(entry.value)


async def stored(js: JetStreamContext, stream: str) -> int:
    return (await js.stream_info(stream)).state.messages


async def assert_each_applied_once(
    js: JetStreamContext, topology: Topology, bulk_id: str, ids: list[str], fake: FakeOrchestrator
) -> None:
    """Each workflow's log holds exactly one cancel, caused by the bulk's command, and no refusal; the orchestrator
    was handed each command once."""
    for workflow_id in ids:
        events = [recorded.event for recorded in await read_events(js, topology, workflow_id)]
        assert [type(event) for event in events] == [WorkflowCancelled], (workflow_id, events)
        assert events[0].causation_id == command_id(bulk_id, workflow_id)
        assert not any(isinstance(event, CommandRejected) for event in events)
    sent = Counter(command.message_id for command in fake.received)
    assert sent == Counter({command_id(bulk_id, workflow_id): 1 for workflow_id in ids})


@asynccontextmanager
async def api_app(settings) -> AsyncIterator[tuple[Litestar, httpx.AsyncClient]]:
    """The API in the test's loop, with the app (to see which bulks it runs) and a client as `admin`."""
    app = create_api(settings)
    # The ASGI types of httpx and of Litestar differ (both are ASGI 3): the type checker is told to let it be.
    transport = httpx.ASGITransport(app=app)  # pyright: ignore[reportArgumentType]
    async with running(app), httpx.AsyncClient(transport=transport, base_url="http://api", headers=bearer()) as client:

        async def healthy() -> bool:
            return (await client.get("/healthz")).status_code == 200

        await eventually(healthy)
        yield app, client


# starting one, and what it does


async def test_a_bulk_cancel_cancels_each_matching_workflow_once_and_reports_it(api, js, topology, seed, orchestrator):
    ids = [f"w{minute}" for minute in range(5)]
    others = [workflow("other-type", 5).model_copy(update={"type": "expense"}), workflow("archived", 6, archived=True)]
    await seed(js, topology, *(workflow(workflow_id, minute) for minute, workflow_id in enumerate(ids)), *others)

    started = await api.post("/workflows/bulk/cancel?type=approval", json={"reason": "tidy up"})

    assert started.status_code == 202, started.text
    body = started.json()
    assert started.headers["Location"] == f"/bulk/{body['id']}"
    assert {key: body[key] for key in ("action", "filter", "by", "total", "refused")} == {
        "action": "cancel",
        "filter": "type=approval",
        "by": "admin",
        "total": 5,
        "refused": [],
    }
    report = await finished(api, body["id"])
    assert (report["done"], report["refused"], report["remaining"], report["stopped"]) == (5, [], 0, None)
    await assert_each_applied_once(js, topology, body["id"], ids, orchestrator)
    assert {command.reason for command in orchestrator.received} == {"tidy up"}
    record = await bulk_record(js, topology, body["id"])
    assert (record.position, record.lease_holder, record.lease_until) == (5, None, None)
    listed = (await api.get("/workflows?type=approval&business_state=Cancelled")).json()
    assert sorted(item["id"] for item in listed) == ids

    async def nobody_listens() -> bool:  # a stream keeps at most 1 000 consumers: those of each outcome must go
        streams = (topology.events_stream, topology.kv_stream(topology.state_bucket))
        consumers = [info for stream in streams for info in await js.consumers_info(stream)]
        return not [info for info in consumers if info.config.deliver_subject]

    await eventually(nobody_listens, 10)


async def test_a_refused_command_is_reported_with_its_reason_and_the_others_go_on(
    api, js, topology, seed, orchestrator
):
    waiting = [workflow(f"wait{minute}", minute, "Waiting For Approval") for minute in range(3)]
    await seed(js, topology, *waiting, workflow("fresh", 9))

    started = await api.post("/workflows/bulk/approve", json={"comment": "all fine"}, headers=bearer("ann"))

    assert started.status_code == 202, started.text
    report = await finished(api, started.json()["id"])
    assert (report["total"], report["done"], report["remaining"], report["by"]) == (4, 3, 0, "ann")
    assert report["refused"] == [
        {"workflow_id": "fresh", "code": "not_allowed", "reason": "cannot approve a workflow in state Unprocessed"}
    ]
    approvals = [command for command in orchestrator.received if command.kind == "approve"]
    assert {(command.approver, command.comment) for command in approvals} == {("ann", "all fine")}  # as the caller
    for state in waiting:
        assert (await api.get(f"/workflows/{state.id}")).json()["business_state"] == "Finished"


async def test_a_filter_that_matches_nothing_finishes_at_once(api):
    started = await api.post("/workflows/bulk/archive?business_state=Finished")

    assert started.status_code == 202, started.text
    assert (started.json()["total"], started.json()["remaining"]) == (0, 0)
    assert started.json()["finished_at"] is not None


# refused before anything starts


@pytest.mark.parametrize(
    ("holder", "action"),
    [("approver", "cancel"), ("requester", "approve"), ("operator", "reject"), ("requester", "retry")],
)
async def test_a_role_the_caller_lacks_answers_403_and_starts_nothing(api, js, topology, seed, holder, action):
    await seed(js, topology, workflow("w1", 0))

    response = await api.post(f"/workflows/bulk/{action}", headers=bearer(holder))

    assert response.status_code == 403, response.text
    assert response.json()["code"] == "forbidden"
    assert await stored(js, topology.kv_stream(topology.bulk_bucket)) == 0
    assert await stored(js, topology.commands_stream) == 0


@pytest.mark.parametrize(
    ("query", "detail"),
    [
        ("nonsense=1", "nonsense: not a filter"),
        ("infra_status=Sleeping", "infra_status: 'Sleeping' is not one of"),
        ("amount>>3", "amount: not a filter"),
        ("archived=maybe", "archived: true or false"),
        ("type=approval&type=expense", "type: given twice"),
        ("sort=name", "sort: 'name' is not one of"),
        ("limit=5", "limit: a bulk acts on every workflow the filter matches"),
        ("cursor=abc", "cursor: a bulk acts on every workflow the filter matches"),
    ],
)
async def test_a_bad_filter_answers_400_naming_it_and_starts_nothing(api, js, topology, query, detail):
    response = await api.post(f"/workflows/bulk/cancel?{query}")

    assert response.status_code == 400, response.text
    assert response.json()["code"] == "bad_filter"
    assert response.json()["detail"].startswith(detail), response.json()["detail"]
    assert await stored(js, topology.kv_stream(topology.bulk_bucket)) == 0


@pytest.mark.parametrize(
    ("path", "body", "status", "detail"),
    [
        (
            "/workflows/bulk/destroy",
            None,
            404,
            "no bulk action 'destroy': one of cancel, approve, reject, retry, archive",
        ),
        ("/workflows/bulk/cancel", {"comment": "x"}, 422, "body comment: cancel takes reason"),
        ("/workflows/bulk/approve", {"reason": "x"}, 422, "body reason: approve takes comment"),
        ("/workflows/bulk/archive", {"reason": "x"}, 422, "body reason: archive takes nothing"),
        ("/workflows/bulk/cancel", {"why": "x"}, 422, "body why"),
    ],
)
async def test_a_bad_action_or_body_answers_4xx_and_starts_nothing(api, js, topology, path, body, status, detail):
    response = await api.post(path, json=body)

    assert response.status_code == status, response.text
    assert response.json()["detail"].startswith(detail)
    assert await stored(js, topology.kv_stream(topology.bulk_bucket)) == 0


async def test_an_unknown_bulk_answers_404_and_a_malformed_id_422(api):
    unknown = await api.get(f"/bulk/{new_id()}")
    malformed = await api.get("/bulk/not-a-bulk")

    assert (unknown.status_code, unknown.json()["code"]) == (404, "unknown_bulk")
    assert (malformed.status_code, malformed.json()["code"]) == (422, "invalid")


async def test_more_workflows_than_a_bulk_may_take_answers_400(nats_url, topology, js, seed, settings_for):
    await seed(js, topology, *(workflow(f"w{minute}", minute) for minute in range(3)))
    async with api_app(settings_for(nats_url, topology, WF_BULK_MAX="2", WF_API_MAX_PAGE="1")) as (_, api):
        response = await api.post("/workflows/bulk/cancel")

    assert response.status_code == 400, response.text
    assert "more than 2 workflows" in response.json()["detail"]
    assert await stored(js, topology.kv_stream(topology.bulk_bucket)) == 0


# progress on the WebSocket


@pytest.fixture
async def broadcaster(nats_url, topology, js, tokens_file) -> AsyncIterator[str]:
    settings = BroadcasterSettings(NATS_URL=nats_url, WF_PREFIX=topology.prefix, WF_API_TOKENS_FILE=tokens_file)
    async with served(create_broadcaster(settings)) as address:
        yield f"ws://{address}/ws"


async def test_the_websocket_relays_a_bulks_progress_and_refusals_then_closes_when_it_finishes(
    api, js, topology, seed, gated, broadcaster
):
    await seed(
        js,
        topology,
        *(workflow(f"wait{minute}", minute, "Waiting For Approval") for minute in range(3)),
        workflow("fresh", 9),
    )
    bulk_id = (await api.post("/workflows/bulk/approve")).json()["id"]

    messages = []
    async with open_socket(f"{broadcaster}?bulk={bulk_id}", additional_headers=bearer()) as socket:
        messages.append(json.loads(await socket.recv()))  # where it stands as the client joins: nothing answered yet
        gated.gate.set()
        try:
            async for text in socket:
                messages.append(json.loads(text))
        except ConnectionClosed:
            pass
        closed = (socket.close_code, socket.close_reason)

    assert closed == (1000, "the bulk has finished")
    first, last = messages[0], messages[-1]
    assert (first["type"], first["id"], first["total"], first["done"], first["finished_at"]) == (
        "bulk",
        bulk_id,
        4,
        0,
        None,
    )
    assert (last["type"], last["done"], last["refused"], last["remaining"]) == ("bulk", 3, 1, 0)
    assert last["finished_at"] is not None and "token_digest" not in last and "lease_holder" not in last
    refusals = [message for message in messages if message["type"] == "bulk_refused"]
    assert {(item["bulk_id"], item["workflow_id"], item["code"]) for item in refusals} == {
        (bulk_id, "fresh", "not_allowed")
    }
    assert messages.index(refusals[0]) < len(messages) - 1  # before the report that counts it
    done = [message["done"] for message in messages if message["type"] == "bulk"]
    assert done == sorted(done)


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("bulk=nope", "bulk: String should match pattern"),
        (f"bulk={'0' * 32}", f"bulk: no bulk {'0' * 32}"),
        (f"bulk={'0' * 32}&since=3", "bulk: follows a bulk action"),
    ],
)
async def test_the_websocket_refuses_an_unknown_or_malformed_bulk(broadcaster, query, reason):
    async with open_socket(f"{broadcaster}?{query}", additional_headers=bearer()) as socket:
        with pytest.raises(ConnectionClosed):
            await socket.recv()

    assert socket.close_code == 1008, socket.close_reason
    assert socket.close_reason is not None and socket.close_reason.startswith(reason), socket.close_reason


# stopped midway


async def test_an_api_stopped_midway_releases_the_bulk_and_the_next_finishes_it_applying_nothing_twice(
    nats_url, topology, js, seed, settings_for, indexer
):
    ids = [f"w{minute:02}" for minute in range(12)]
    await seed(js, topology, *(workflow(workflow_id, minute) for minute, workflow_id in enumerate(ids)))
    settings = settings_for(nats_url, topology, WF_BULK_CONCURRENCY="4", WF_COMMAND_TIMEOUT_S="1")
    async with GatedOrchestrator(js, topology, answer_first=5) as fake:
        async with api_app(settings) as (first, api):
            bulk_id = (await api.post("/workflows/bulk/cancel")).json()["id"]
            await eventually(lambda: len(fake.received) == 5 and fake.taken > 5)  # the rest is held, in flight
        record = await bulk_record(js, topology, bulk_id)
        assert record.finished_at is None and record.lease_holder is None  # released on the way out
        assert record.position < len(ids)

        async with api_app(settings) as (second, api):
            await eventually(lambda: second.state.bulks.runs(bulk_id))  # taken over at once: the lease was released
            fake.gate.set()
            report = await finished(api, bulk_id)

        assert (report["done"], report["refused"], report["remaining"]) == (12, [], 0)
        await assert_each_applied_once(js, topology, bulk_id, ids, fake)


async def test_an_api_killed_midway_leaves_the_bulk_to_its_restart_once_the_lease_runs_out(
    nats_url, topology, js, seed, start_service, indexer, index_url
):
    ids = [f"w{minute:02}" for minute in range(12)]
    await seed(js, topology, *(workflow(workflow_id, minute) for minute, workflow_id in enumerate(ids)))
    settings = {"WF_BULK_CONCURRENCY": "4", "WF_COMMAND_TIMEOUT_S": "1", "WF_BULK_LEASE_S": "2"}
    settings["WF_INDEX_URL"] = index_url  # the test's, which the indexer keeps
    async with GatedOrchestrator(js, topology, answer_first=5) as fake:
        port = free_port()
        killed = start_service("api", nats_url, topology, WF_API_PORT=str(port), **settings)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=bearer()) as api:
            await eventually(lambda: healthy(api), FINISHED_WITHIN_S)
            bulk_id = (await api.post("/workflows/bulk/cancel")).json()["id"]
            await eventually(lambda: len(fake.received) == 5 and fake.taken > 5)
            holder = (await bulk_record(js, topology, bulk_id)).lease_holder
            killed.stop(kill=True)
        record = await bulk_record(js, topology, bulk_id)
        assert record.finished_at is None and record.lease_holder == holder  # not released: it died holding it

        port = free_port()
        start_service("api", nats_url, topology, WF_API_PORT=str(port), **settings)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=bearer()) as api:

            async def taken_over() -> bool:
                return (await bulk_record(js, topology, bulk_id)).lease_holder not in (None, holder)

            await eventually(taken_over, FINISHED_WITHIN_S)
            fake.gate.set()
            report = await finished(api, bulk_id)

        assert (report["done"], report["refused"], report["remaining"]) == (12, [], 0)
        await assert_each_applied_once(js, topology, bulk_id, ids, fake)


async def healthy(api: httpx.AsyncClient) -> bool:
    try:
        return (await api.get("/healthz")).status_code == 200
    except httpx.HTTPError:
        return False


async def test_two_api_processes_never_both_run_an_abandoned_bulk(nats_url, topology, js, seed, settings_for):
    ids = [f"w{minute}" for minute in range(6)]
    await seed(js, topology, *(workflow(workflow_id, minute) for minute, workflow_id in enumerate(ids)))
    bulk_id, long_ago = new_id(), datetime.now(UTC) - timedelta(minutes=1)
    abandoned = BulkRecord(
        id=bulk_id,
        action="cancel",
        filter="",
        by="admin",
        total=len(ids),
        chunks=1,
        started_at=long_ago,
        lease_holder="a-process-that-died",
        lease_until=long_ago,
    )
    settings = settings_for(nats_url, topology, WF_BULK_LEASE_S="1")
    async with GatedOrchestrator(js, topology) as fake, api_app(settings) as (a, api), api_app(settings) as (b, _):
        runners = (a.state.bulks, b.state.bulks)
        kv = await js.key_value(topology.bulk_bucket)
        await kv.put(ids_key(bulk_id, 0), json.dumps(ids).encode())
        await kv.put(meta_key(bulk_id), abandoned.model_dump_json().encode())

        await asyncio.gather(*(runner.take_over_abandoned() for runner in runners))  # both see it abandoned at once

        def running() -> list:
            return [runner for runner in runners if runner.runs(bulk_id)]

        assert len(running()) == 1
        runner, renewals = running()[0], set()

        async def renewed_often() -> bool:  # meanwhile each process looks for abandoned bulks twice a lease
            assert running() == [runner]
            record = await bulk_record(js, topology, bulk_id)
            assert record.lease_holder == runner.holder
            renewals.add(record.lease_until)
            return len(renewals) >= 4

        await eventually(renewed_often, FINISHED_WITHIN_S)
        fake.gate.set()
        report = await finished(api, bulk_id)

    assert (report["done"], report["refused"], report["remaining"]) == (6, [], 0)
    await assert_each_applied_once(js, topology, bulk_id, ids, fake)


async def test_a_bulk_stops_when_the_token_that_started_it_is_revoked(
    nats_url, topology, js, seed, index_url, indexer, tmp_path
):
    ids = [f"w{minute}" for minute in range(6)]
    await seed(js, topology, *(workflow(workflow_id, minute) for minute, workflow_id in enumerate(ids)))
    carl = {"Authorization": "Bearer carls-token"}
    holders = {
        "carls-token": TokenHolder(name="carl", roles=frozenset({Role.OPERATOR})),
        TEST_TOKENS["admin"]: TokenHolder(name="admin", roles=frozenset(Role)),
    }
    tokens_file = tmp_path / "tokens.json"
    write_tokens_file(tokens_file, holders)
    settings = ApiSettings(
        NATS_URL=nats_url,
        WF_PREFIX=topology.prefix,
        WF_API_TOKENS_FILE=tokens_file,
        WF_INDEX_URL=index_url,
        WF_BULK_CONCURRENCY=2,
    )
    async with GatedOrchestrator(js, topology, answer_first=2) as fake, api_app(settings) as (_, api):
        bulk_id = (await api.post("/workflows/bulk/cancel", headers=carl)).json()["id"]
        await eventually(lambda: fake.taken > 2)  # its second batch is in flight
        del holders["carls-token"]
        write_tokens_file(tokens_file, holders)

        async def revoked() -> bool:  # the API has read the file again (at most a second on)
            return (await api.get("/me", headers=carl)).status_code == 401

        await eventually(revoked)
        fake.gate.set()
        report = await finished(api, bulk_id)

    assert report["stopped"] == "stopped: the token carl started it with is no longer valid"
    assert (report["done"], report["refused"], report["remaining"]) == (4, [], 2)  # the batch in flight, no more
    assert len(fake.received) == 4


# wf bulk


@pytest.fixture
async def served_api(nats_url, topology, js, tokens_file, index_url, indexer, broadcaster) -> AsyncIterator[str]:
    settings = {
        "NATS_URL": nats_url,
        "WF_PREFIX": topology.prefix,
        "WF_API_TOKENS_FILE": str(tokens_file),
        "WF_INDEX_URL": index_url,
        "WF_PUBLIC_BROADCASTER_URL": broadcaster,
    }
    async with served(create_api(ApiSettings(**settings))) as address:
        yield f"http://{address}"


async def run_wf(capsys, api_url: str, *argv: str) -> tuple[int, str, str]:
    code = await asyncio.to_thread(wf, ["--url", api_url, "--token", TEST_TOKENS["admin"], *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


async def test_wf_bulk_starts_one_and_follows_it_until_done(served_api, js, topology, seed, orchestrator, capsys):
    await seed(js, topology, *(workflow(f"w{minute}", minute) for minute in range(3)), workflow("done", 4, "Finished"))

    code, out, err = await run_wf(capsys, served_api, "bulk", "cancel", "business_state=Unprocessed", "--reason", "old")

    assert code == 0, err
    lines = out.splitlines()
    bulk_id = lines[0].split()[1].rstrip(":")
    assert lines[0] == f"bulk {bulk_id}: cancel 3 workflows"
    assert lines[-2] == "  3 done, 0 refused, 0 remaining of 3"
    assert lines[-1] == f"bulk {bulk_id}: cancel: 3 done, 0 refused"
    assert err == ""  # followed on the WebSocket
    assert sorted(command.workflow_id for command in orchestrator.received) == ["w0", "w1", "w2"]
    assert {command.reason for command in orchestrator.received} == {"old"}


async def test_wf_bulk_lists_what_was_refused_and_exits_1(served_api, js, topology, seed, orchestrator, capsys):
    await seed(js, topology, workflow("w1", 1), workflow("done", 2, "Finished"))

    code, out, err = await run_wf(capsys, served_api, "bulk", "cancel")

    assert code == 1
    assert re.search(r"^done +not_allowed +cannot cancel a workflow in state Finished$", out, re.MULTILINE), out
    assert out.splitlines()[-1].endswith(": cancel: 1 done, 1 refused")


async def test_wf_bulk_follows_through_the_api_when_the_broadcaster_cannot_be_reached(
    nats_url, topology, js, seed, orchestrator, tokens_file, index_url, indexer, capsys
):
    await seed(js, topology, workflow("w1", 1), workflow("w2", 2))
    nowhere = f"ws://127.0.0.1:{free_port()}/ws"
    settings = ApiSettings(
        NATS_URL=nats_url,
        WF_PREFIX=topology.prefix,
        WF_API_TOKENS_FILE=tokens_file,
        WF_INDEX_URL=index_url,
        WF_PUBLIC_BROADCASTER_URL=nowhere,
    )
    async with served(create_api(settings)) as address:
        code, out, err = await run_wf(capsys, f"http://{address}", "bulk", "cancel", "--json")

    assert code == 0, err
    assert "following the bulk through the API" in err
    report = json.loads(out)
    assert (report["action"], report["done"], report["refused"], report["remaining"]) == ("cancel", 2, [], 0)


async def test_wf_bulk_refuses_a_bad_filter_with_the_servers_reason(served_api, capsys):
    code, _, err = await run_wf(capsys, served_api, "bulk", "archive", "colour=red")

    assert code == 1
    assert err.startswith("wf: colour: not a filter") and "(HTTP 400, bad_filter)" in err
