"""Who may do what, and how much: the API's tokens and roles (401, 403), the approver the log records, the
broadcaster's tokens (4401), and the limits (413, 429, the servers' timeouts and message sizes). Every refusal is
checked to leave nothing on the commands stream, so nothing refused can reach the log."""

import asyncio
import json
import time
from collections.abc import AsyncIterator

import pytest
from nats.js.client import JetStreamContext
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from contracts.auth import Role
from contracts.topology import Topology
from services.api.app import create_app as create_api
from services.broadcaster.app import create_app as create_broadcaster
from services.broadcaster.settings import BroadcasterSettings
from services.launcher.nats_server import free_port
from tests.conftest import TEST_TOKENS, bearer
from tests.integration.serving import served
from tests.integration.test_api import (  # noqa: F401 (fixtures)
    api_client,
    commands_published,
    orchestrator,
    seeded,
)

pytestmark = [pytest.mark.integration, pytest.mark.index_databases("sqlite")]  # (who may do what: not the index's)

WORKFLOW = "w1"  # in the read model, so that a command on it is published; no orchestrator answers (?wait=0)
COMMAND_REQUESTS = [("/workflows", "create")] + [
    (f"/workflows/{WORKFLOW}/{kind}", kind)
    for kind in ["process", "approve", "reject", "cancel", "terminate", "retry", "archive"]
]
# The policy, spelled out here rather than read from the code it checks.
COMMANDS_OF_ROLE = {
    "requester": {"create", "process", "cancel"},
    "approver": {"approve", "reject"},
    "operator": {"cancel", "terminate", "retry", "archive"},
}
READS = ["/workflows", f"/workflows/{WORKFLOW}", f"/workflows/{WORKFLOW}/events", "/types", "/config", "/me"]


@pytest.fixture
async def anonymous(nats_url, topology: Topology, js: JetStreamContext, settings_for, seed):
    """A client of the API that sends no token; the read model holds WORKFLOW."""
    await seed(js, topology, seeded(WORKFLOW, 0))
    async with api_client(settings_for(nats_url, topology), holder=None) as client:
        yield client


# 401: no token, or not one of ours


@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        ({}, "a token is needed: send the header 'Authorization: Bearer <token>'"),
        ({"Authorization": "Bearer test-token-nobody"}, "the token is not valid"),
        ({"Authorization": f"Basic {TEST_TOKENS['admin']}"}, "a token is needed"),
        ({"Authorization": "Bearer "}, "a token is needed"),
    ],
)
async def test_every_command_and_read_without_a_valid_token_answers_401_and_publishes_nothing(
    anonymous, js, topology, headers, detail
):
    for path, _ in COMMAND_REQUESTS:
        response = await anonymous.post(path, params={"wait": 0}, json={}, headers=headers)
        assert response.status_code == 401, (path, response.text)
        assert response.json()["code"] == "unauthorized" and response.json()["detail"].startswith(detail)
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    for path in READS:
        response = await anonymous.get(path, headers=headers)
        assert response.status_code == 401, (path, response.text)

    assert await commands_published(js, topology) == 0


async def test_health_metrics_the_api_description_and_the_web_page_need_no_token(anonymous):
    for path in ["/healthz", "/metrics", "/schema/openapi.json", "/"]:
        response = await anonymous.get(path)
        assert response.status_code == 200, (path, response.text)


# 403: a token without the role


@pytest.mark.parametrize("holder", list(COMMANDS_OF_ROLE))  # the holder of a test token with that role alone
async def test_each_role_sends_exactly_its_commands_and_the_rest_answer_403_unpublished(
    anonymous, js, topology, holder
):
    allowed = 0
    for path, kind in COMMAND_REQUESTS:
        response = await anonymous.post(path, params={"wait": 0}, headers=bearer(holder))
        if kind in COMMANDS_OF_ROLE[holder]:
            assert response.status_code == 202, (kind, response.text)
            allowed += 1
        else:
            assert response.status_code == 403, (kind, response.text)
            needed = " or ".join(sorted(role for role, kinds in COMMANDS_OF_ROLE.items() if kind in kinds))
            assert response.json() == {
                "title": "Forbidden",
                "status": 403,
                "detail": f"{holder} may not {kind}: it takes the role {needed}",
                "code": "forbidden",
            }

    assert allowed > 0
    assert await commands_published(js, topology) == allowed


async def test_any_valid_token_reads(anonymous):
    for holder in ["requester", "approver", "operator"]:
        for path in READS:
            response = await anonymous.get(path, headers=bearer(holder))
            assert response.status_code == 200, (holder, path, response.text)


async def test_me_names_the_tokens_holder_and_roles(anonymous):
    response = await anonymous.get("/me", headers=bearer("fin-ann"))

    assert response.json() == {"name": "fin-ann", "roles": ["approver"], "groups": [], "authenticated": True}


# the approver the log records


@pytest.mark.parametrize("kind", ["approve", "reject"])
async def test_the_decider_recorded_is_the_tokens_holder(api, orchestrator, kind):  # noqa: F811
    workflow_id = (await api.post("/workflows")).json()["workflow_id"]

    unnamed = await api.post(f"/workflows/{workflow_id}/{kind}", headers=bearer("bob"))
    named = await api.post(f"/workflows/{workflow_id}/{kind}", json={"approver": "carol"}, headers=bearer("carol"))

    assert unnamed.status_code == named.status_code == 409  # an Unprocessed workflow: refused by the orchestrator
    decisions = [(command.kind, command.approver) for command in orchestrator.received[1:]]
    assert decisions == [(kind, "bob"), (kind, "carol")]


@pytest.mark.parametrize("kind", ["approve", "reject"])
async def test_deciding_as_someone_else_answers_403_unpublished(anonymous, js, topology, kind):
    response = await anonymous.post(
        f"/workflows/{WORKFLOW}/{kind}", params={"wait": 0}, json={"approver": "director"}, headers=bearer("bob")
    )

    assert response.status_code == 403
    assert response.json()["detail"] == "this token is bob's: it cannot decide as director"
    assert await commands_published(js, topology) == 0


async def test_with_auth_turned_off_anyone_may_do_anything_as_whoever_they_say(
    nats_url,
    topology,
    js,
    settings_for,
    orchestrator,  # noqa: F811
):
    async with api_client(settings_for(nats_url, topology, WF_AUTH="off"), holder=None) as api:
        me = (await api.get("/me")).json()
        workflow_id = (await api.post("/workflows")).json()["workflow_id"]
        response = await api.post(f"/workflows/{workflow_id}/approve", json={"approver": "ann"})

    assert me == {"name": "anonymous", "roles": sorted(Role), "groups": [], "authenticated": False}
    assert response.status_code == 409
    assert orchestrator.received[-1].approver == "ann"


# services without tokens do not start


@pytest.mark.parametrize("service", ["api", "broadcaster"])
@pytest.mark.parametrize(
    ("tokens_file", "complaint"), [("", "no API tokens: set WF_API_TOKENS_FILE"), ("/nowhere.json", "cannot read")]
)
def test_a_service_without_tokens_refuses_to_start_and_says_why(
    nats_url, topology, start_service, service, tokens_file, complaint
):
    ports = {"WF_API_PORT": str(free_port()), "WF_BROADCASTER_PORT": str(free_port())}
    process = start_service(service, nats_url, topology, WF_API_TOKENS_FILE=tokens_file, **ports)

    assert process.process.wait(timeout=20) != 0
    assert f"{service}: not starting: " in process.log_path.read_text()
    assert complaint in process.log_path.read_text()


# limits


async def test_a_body_over_64_kib_answers_413_unpublished_even_without_a_length(anonymous, js, topology):
    async def chunks():
        for _ in range(70):
            yield b"x" * 1024

    response = await anonymous.post(
        "/workflows", content=chunks(), headers={"content-type": "application/json", **bearer("requester")}
    )

    assert response.status_code == 413, response.text
    assert response.json()["code"] == "too_large"
    assert await commands_published(js, topology) == 0


async def test_commands_beyond_the_rate_per_token_answer_429_with_retry_after(
    nats_url,
    topology,
    js,
    settings_for,
    seed,
):
    await seed(js, topology, seeded(WORKFLOW, 0))
    async with api_client(settings_for(nats_url, topology, WF_API_COMMANDS_PER_S="2"), holder="requester") as api:
        answers = [await api.post(f"/workflows/{WORKFLOW}/process", params={"wait": 0}) for _ in range(5)]
        limited = next(answer for answer in answers if answer.status_code == 429)
        reads = [await api.get("/workflows") for _ in range(5)]
        other_token = await api.post(f"/workflows/{WORKFLOW}/cancel", params={"wait": 0}, headers=bearer("operator"))

    assert {answer.status_code for answer in answers} == {202, 429}
    assert limited.json() == {
        "title": "Too Many Requests",
        "status": 429,
        "detail": "too many commands: at most 2 a second per token",
        "code": "rate_limited",
    }
    assert limited.headers["Retry-After"] == "1"
    assert {read.status_code for read in reads} == {200}  # reads are not counted
    assert other_token.status_code == 202  # each token has a budget of its own
    assert await commands_published(js, topology) == len([a for a in answers if a.status_code == 202]) + 1


async def test_the_api_server_closes_an_idle_keep_alive_connection(nats_url, topology, js, settings_for):
    async with served(create_api(settings_for(nats_url, topology))) as address:
        host, port = address.split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(f"GET /healthz HTTP/1.1\r\nHost: {address}\r\n\r\n".encode())
        assert (await reader.readline()).startswith(b"HTTP/1.1 200")
        answered = time.monotonic()
        while await asyncio.wait_for(reader.read(4096), timeout=15):  # the rest of the answer, then the close
            pass
        writer.close()

    assert 4 < time.monotonic() - answered < 10


# the broadcaster's WebSocket


@pytest.fixture
async def broadcaster(nats_url: str, topology: Topology, js: JetStreamContext, tokens_file) -> AsyncIterator[str]:
    settings = BroadcasterSettings(NATS_URL=nats_url, WF_PREFIX=topology.prefix, WF_API_TOKENS_FILE=tokens_file)
    async with served(create_broadcaster(settings)) as address:
        yield address


@pytest.mark.parametrize(
    ("query", "headers", "reason"),
    [
        ("", {}, "a token is needed: ?token=<token> or Authorization: Bearer"),
        ("?token=test-token-nobody", {}, "the token is not valid"),
        ("", {"Authorization": "Bearer test-token-nobody"}, "the token is not valid"),
    ],
)
async def test_a_websocket_without_a_valid_token_is_closed_with_4401_and_the_reason(
    broadcaster, query, headers, reason
):
    with pytest.raises(ConnectionClosed) as closed:
        async with connect(f"ws://{broadcaster}/ws{query}", additional_headers=headers) as client:
            await asyncio.wait_for(client.recv(), 5)

    close = closed.value.rcvd
    assert close is not None and (close.code, close.reason) == (4401, reason)


@pytest.mark.parametrize("holder", ["requester", "approver", "operator"])
async def test_any_valid_token_in_the_query_opens_the_websocket(broadcaster, holder):
    async with connect(f"ws://{broadcaster}/ws?since=0&token={TEST_TOKENS[holder]}") as client:
        first = json.loads(await asyncio.wait_for(client.recv(), 5))

    assert first == {"type": "heartbeat", "sequence": 0}


async def test_a_websocket_message_over_64_kib_closes_the_connection_with_1009(broadcaster):
    async with connect(f"ws://{broadcaster}/ws", additional_headers=bearer(), max_size=None) as client:
        await asyncio.wait_for(client.recv(), 5)
        await client.send("x" * 70_000)
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(client.recv(), 5)

    close = closed.value.rcvd
    assert close is not None and close.code == 1009
