"""Hypothesis against the broadcaster's WebSocket (/ws), the real service over a real nats-server: generated query
parameters (tokens, workflow ids, `since` values, unknown ones) and, once a client is in, generated frames (text and
bytes, small and large).

Each connection must get a clear answer: refused with the close code and reason its first wrong parameter calls for
(4401 without a valid token, then 1008 for a workflow id or a `since` it cannot take), or a first heartbeat. A
client's frames are ignored: it still receives the next event. No handshake answers a 5xx, and the broadcaster stays
up and healthy.

Bounded and repeatable: a fixed number of examples, derandomized; no shrinking (a failure costs one example's wait).
Hypothesis runs in a thread of its own and hands each example to the test's event loop."""

import asyncio
import json
from dataclasses import dataclass
from urllib.parse import urlencode

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis import strategies as st
from pydantic import NonNegativeInt, TypeAdapter, ValidationError
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from contracts.ids import WorkflowId
from runtime.observability import SERVER_LIMITS
from services.launcher.nats_server import free_port
from tests.conftest import TEST_TOKENS, ServiceProcess, eventually
from tests.integration.test_broadcaster import append, receive_event

pytestmark = pytest.mark.integration

EXAMPLES = 60
ANSWER_WITHIN_S = 5.0
WORKFLOW_ID, SEQUENCE = TypeAdapter(WorkflowId), TypeAdapter(NonNegativeInt)
TOKEN = TEST_TOKENS["requester"]  # any role: a WebSocket only reads
MAX_FRAME_BYTES = SERVER_LIMITS["ws_max_size"]

texts = st.text(max_size=12)
tokens = st.one_of(st.just(TOKEN), st.just(TOKEN), texts)
workflow_ids = st.one_of(st.sampled_from(["w-a", "w-b"]), st.from_regex(r"\A[A-Za-z0-9_-]{1,64}\Z"), texts)
sinces = st.one_of(st.integers(-5, 10**6).map(str), st.sampled_from(["", "0", "1e3", "0x10", " 3", "٣"]), texts)
queries = st.fixed_dictionaries(
    {},
    optional={"token": tokens, "workflow_id": workflow_ids, "since": sinces, "unknown": texts},
)
too_large = st.just(b"\x00" * (MAX_FRAME_BYTES + 1))
frames = st.lists(st.one_of(st.text(max_size=200), st.binary(max_size=200), too_large), max_size=4)


def valid(adapter: TypeAdapter, value: str) -> bool:
    try:
        adapter.validate_strings(value)
        return True
    except ValidationError:
        return False


def expected_refusal(query: dict[str, str], log_end: int) -> tuple[int, str] | None:
    """The close code and the start of the reason the broadcaster owes this query; None when it owes a heartbeat."""
    if query.get("token") != TOKEN:
        return 4401, "a token is needed" if not query.get("token") else "the token is not valid"
    if "workflow_id" in query and not valid(WORKFLOW_ID, query["workflow_id"]):
        return 1008, "workflow_id: "
    if "since" in query and not valid(SEQUENCE, query["since"]):
        return 1008, "since: "
    if "since" in query and SEQUENCE.validate_strings(query["since"]) > log_end:
        return 1008, f"since {SEQUENCE.validate_strings(query['since'])} is past the end of the log"
    return None


@dataclass
class Broadcaster:
    address: str
    service: ServiceProcess

    async def healthy(self) -> bool:
        assert self.service.is_running, "the broadcaster exited"
        try:
            async with httpx.AsyncClient() as client:
                return (await client.get(f"http://{self.address}/healthz")).status_code == 200
        except httpx.HTTPError:
            return False


@pytest.fixture
async def broadcaster(nats_url, topology, js, start_service):
    port = free_port()
    service = start_service("broadcaster", nats_url, topology, WF_BROADCASTER_PORT=str(port))
    running = Broadcaster(f"127.0.0.1:{port}", service)
    await eventually(running.healthy, timeout_s=30)
    yield running
    assert service.process.poll() is None, "the broadcaster exited"


async def answer_to(address: str, query: dict[str, str], sent_frames: list, js, topology) -> str:
    """How the broadcaster answered a connection with this query, and then these frames from the client."""
    log_end = (await js.stream_info(topology.events_stream)).state.last_seq
    expected = expected_refusal(query, log_end)
    try:
        async with connect(f"ws://{address}/ws?{urlencode(query)}", open_timeout=ANSWER_WITHIN_S) as client:
            first = json.loads(await asyncio.wait_for(client.recv(), ANSWER_WITHIN_S))
            assert expected is None, f"accepted, owed {expected}: {first}"
            start = SEQUENCE.validate_strings(query["since"]) if "since" in query else log_end
            assert first == {"type": "heartbeat", "sequence": start}, first  # where it starts
            for frame in sent_frames:
                await client.send(frame)
            if any(len(frame) > MAX_FRAME_BYTES for frame in sent_frames):
                expected = 1009, "frame exceeds limit"  # a frame larger than the server takes ends the connection
                await asyncio.wait_for(client.recv(), ANSWER_WITHIN_S)
            # The frames changed nothing: the next event of what it follows reaches it.
            sequence = await append(js, topology, query.get("workflow_id", "w-a"))
            while (received := await asyncio.wait_for(receive_event(client), ANSWER_WITHIN_S))["sequence"] < sequence:
                pass
            assert received["sequence"] == sequence, received
            return "served"
    except InvalidStatus as refused:
        status = refused.response.status_code
        assert status < 500, f"the handshake answered {status}"
        return f"handshake refused {status}"
    except ConnectionClosed as closed:
        oversized = any(len(frame) > MAX_FRAME_BYTES for frame in sent_frames)
        if closed.rcvd is None and oversized and isinstance(closed.__cause__, ConnectionError):
            # The broadcaster closes (1009) on reading a too-large frame's header, leaving its payload unread: the
            # kernel then resets the connection, and the reset (or a broken pipe, while still sending) may reach the client
            # before the close frame it sent.
            return "closed 1009"
        assert closed.rcvd is not None, f"closed without a close frame: {closed!r}"
        assert expected is not None, f"closed {closed.rcvd.code} {closed.rcvd.reason!r}, owed a heartbeat"
        assert (closed.rcvd.code, closed.rcvd.reason[: len(expected[1])]) == expected, closed.rcvd
        return f"closed {closed.rcvd.code}"


async def test_every_connection_gets_a_clear_answer_and_frames_from_clients_change_nothing(broadcaster, js, topology):
    await append(js, topology, "w-a")  # a log to resume in
    loop = asyncio.get_running_loop()
    answers: set[str] = set()

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        # hypothesis's HealthCheckMeta.__iter__ is unannotated: pyright takes its items for the metaclass
        suppress_health_check=list(HealthCheck),  # pyright: ignore[reportArgumentType]
    )
    @given(query=queries, sent_frames=frames)
    def every_connection_is_answered(query: dict[str, str], sent_frames: list) -> None:
        note(f"query: {query!r}")
        answer = answer_to(broadcaster.address, query, sent_frames, js, topology)
        answers.add(asyncio.run_coroutine_threadsafe(answer, loop).result(4 * ANSWER_WITHIN_S))

    await asyncio.to_thread(every_connection_is_answered)

    assert answers == {"served", "closed 4401", "closed 1008", "closed 1009"}, answers  # every path was taken
    assert await broadcaster.healthy()
