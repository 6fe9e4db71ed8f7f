"""The broadcaster against a real nats-server, served by a real uvicorn in the test's event loop and read with real
WebSocket clients: a slow client only falls behind when TCP pushes back, which an in-memory test transport never
does (Litestar's test client also blocks the test's loop while it waits for a message)."""

import asyncio
import json
import random
import secrets
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import nats
import pytest
from nats.js.client import JetStreamContext
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as open_socket
from websockets.exceptions import ConnectionClosed

from contracts.asyncapi import asyncapi_document
from contracts.events import WorkflowCreated, WorkflowStarted
from contracts.topology import Topology
from runtime.streams import UNAVAILABLE, ensure_topology
from services.broadcaster.app import create_app
from services.broadcaster.settings import BroadcasterSettings
from services.launcher.nats_server import NatsServer, free_port
from tests.asyncapi_check import AsyncApiCheck
from tests.conftest import bearer
from tests.integration.serving import served

pytestmark = pytest.mark.integration

RECEIVE_TIMEOUT_S = 5.0
STORM_RECEIVE_TIMEOUT_S = 30.0
RESUMED_WITHIN_S = 5.0  # after a nats-server restart


async def eventually(condition: Callable[[], Awaitable[bool]], timeout_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def serving(settings: BroadcasterSettings, wait_ready: bool = True):
    """Run the broadcaster on a free port; yields its `host:port`."""
    return served(create_app(settings), ready=wait_ready)


async def health(address: str) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        return await client.get(f"http://{address}/healthz")


def connect(uri: str, **options):
    """A WebSocket client with a test token (in its Authorization header)."""
    return open_socket(uri, additional_headers=bearer(), **options)


@pytest.fixture
def settings_for(tokens_file):
    """The broadcaster's settings for a server and prefix, accepting the test tokens."""

    def settings(nats_url: str, topology: Topology, **env: Any) -> BroadcasterSettings:  # env: read as pydantic does
        return BroadcasterSettings(NATS_URL=nats_url, WF_PREFIX=topology.prefix, WF_API_TOKENS_FILE=tokens_file, **env)

    return settings


@pytest.fixture
async def broadcaster(nats_url: str, topology: Topology, js: JetStreamContext, settings_for) -> AsyncIterator[str]:
    async with serving(settings_for(nats_url, topology)) as address:
        yield address


async def append(js: JetStreamContext, topology: Topology, workflow_id: str, blob_size: int = 0) -> int:
    """Append an event to the workflow's log as the orchestrator would; returns its stream sequence."""
    blob = secrets.token_urlsafe(blob_size)[:blob_size]  # random: per-message deflate cannot shrink it
    event = WorkflowCreated(workflow_id=workflow_id, workflow_type="approval", input={"blob": blob})
    ack = await js.publish(topology.events_subject(workflow_id), event.model_dump_json().encode())
    return ack.seq


FEED = AsyncApiCheck(asyncapi_document(Topology()))  # the WebSocket feed's channel, `/ws`


async def receive(client: ClientConnection, timeout_s: float = RECEIVE_TIMEOUT_S) -> dict:
    """The next frame, which must fit the AsyncAPI document's feed (an event with its sequence, or a heartbeat)."""
    frame = await asyncio.wait_for(client.recv(), timeout_s)
    FEED.check("/ws", frame.encode() if isinstance(frame, str) else frame)
    assert not FEED.problems, FEED.problems
    return json.loads(frame)


async def receive_event(client: ClientConnection, timeout_s: float = RECEIVE_TIMEOUT_S) -> dict:
    """The next event, past any heartbeat."""
    while "event" not in (message := await receive(client, timeout_s)):
        assert message["type"] == "heartbeat", message
    return message


async def test_relays_each_event_published_after_connecting_with_its_stream_sequence(broadcaster, js, topology):
    before = await append(js, topology, "before")
    async with connect(f"ws://{broadcaster}/ws") as client:
        started = WorkflowStarted(workflow_id="w1", causation_id="command-1")
        started_sequence = (await js.publish(topology.events_subject("w1"), started.model_dump_json().encode())).seq
        other_sequence = await append(js, topology, "w2")

        position, first, second = await receive(client), await receive(client), await receive(client)

    assert position == {"type": "heartbeat", "sequence": before}  # where it starts: the end of the log
    assert first == {"sequence": started_sequence, "event": started.model_dump(mode="json")}
    assert (second["sequence"], second["event"]["workflow_id"]) == (other_sequence, "w2")


async def test_follows_one_workflow_when_asked(broadcaster, js, topology):
    async with connect(f"ws://{broadcaster}/ws?workflow_id=w1") as one, connect(f"ws://{broadcaster}/ws") as every:
        sequences = [await append(js, topology, workflow_id) for workflow_id in ("w2", "w1", "w2", "w1")]

        followed = [await receive_event(one), await receive_event(one)]
        everything = [await receive_event(every) for _ in sequences]

    assert [item["sequence"] for item in followed] == [sequences[1], sequences[3]]
    assert {item["event"]["workflow_id"] for item in followed} == {"w1"}
    assert [item["sequence"] for item in everything] == sequences


@pytest.mark.parametrize("workflow_id", ["a.b", "*", ">", "a%20b", ""])
async def test_refuses_a_bad_workflow_id_with_the_reason(broadcaster, workflow_id):
    with pytest.raises(ConnectionClosed) as refused:
        async with connect(f"ws://{broadcaster}/ws?workflow_id={workflow_id}") as client:
            await receive(client)

    assert refused.value.rcvd is not None and refused.value.rcvd.code == 1008
    assert refused.value.rcvd.reason.startswith("workflow_id: String should match pattern")


async def slow_reader(address: str) -> socket.socket:
    """A connected socket with a small receive buffer (no autotuning to many MB), so TCP pushes back soon."""
    host, port = address.split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
    return sock


async def test_drops_a_client_that_falls_behind_while_another_keeps_receiving(nats_url, topology, js, settings_for):
    settings = settings_for(nats_url, topology, WF_BROADCASTER_QUEUE_SIZE="4")
    async with serving(settings) as address:
        # The slow client buffers at most one message and reads nothing until the end.
        slow_socket = await slow_reader(address)
        async with (
            connect(f"ws://{address}/ws", sock=slow_socket, max_queue=1) as slow,
            connect(f"ws://{address}/ws") as fast,
        ):
            received: list[int] = []

            async def read_fast() -> None:
                async for message in fast:
                    if "event" in (item := json.loads(message)):
                        received.append(item["sequence"])

            reading = asyncio.create_task(read_fast())
            published: list[int] = []

            async def slow_client_dropped() -> bool:
                # Large events fill the socket buffers quickly; keep appending until the broadcaster gives up.
                published.extend([await append(js, topology, "burst", blob_size=60_000) for _ in range(10)])
                return (await health(address)).json()["clients"] == 1

            await eventually(slow_client_dropped, timeout_s=30)

            async def fast_client_has_all() -> bool:
                assert not reading.done(), reading
                return len(received) >= len(published)

            await eventually(fast_client_has_all)
            reading.cancel()

            slow_received: list[int] = []
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    slow_received.append((await receive_event(slow))["sequence"])

    assert received == published
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
    assert slow_received == published[: len(slow_received)] and len(slow_received) < len(published)


async def test_healthz_reports_ready_and_the_number_of_clients(broadcaster):
    async with connect(f"ws://{broadcaster}/ws"):
        response = await health(broadcaster)

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "clients": 1}


async def test_without_nats_healthz_answers_503_and_clients_are_told_to_come_back(topology, settings_for):
    settings = settings_for(f"nats://127.0.0.1:{free_port()}", topology)
    async with serving(settings, wait_ready=False) as address:
        response = await health(address)
        with pytest.raises(ConnectionClosed) as closed:
            async with connect(f"ws://{address}/ws") as client:
                await receive(client)

    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013


# resuming: ?since=<the last sequence seen> replays the log after it, then goes live


async def test_since_replays_the_events_after_it_then_relays_new_ones(broadcaster, js, topology):
    before = [await append(js, topology, workflow_id) for workflow_id in ("w1", "w2", "w1", "w2")]
    async with connect(f"ws://{broadcaster}/ws?since={before[1]}") as client:
        position = await receive(client)
        replayed = [await receive(client) for _ in before[2:]]
        after = [await append(js, topology, "w3"), await append(js, topology, "w1")]
        live = [await receive(client) for _ in after]

    assert position == {"type": "heartbeat", "sequence": before[1]}
    assert [item["sequence"] for item in replayed + live] == before[2:] + after
    assert [item["event"]["workflow_id"] for item in replayed + live] == ["w1", "w2", "w3", "w1"]


async def test_since_zero_with_a_workflow_id_replays_that_workflows_whole_log(broadcaster, js, topology):
    sequences = [(workflow_id, await append(js, topology, workflow_id)) for workflow_id in ("w1", "w2", "w1")]
    async with connect(f"ws://{broadcaster}/ws?since=0&workflow_id=w1") as client:
        replayed = [await receive_event(client), await receive_event(client)]
        live = await append(js, topology, "w1")
        await append(js, topology, "w2")
        assert (await receive_event(client))["sequence"] == live

    assert [item["sequence"] for item in replayed] == [seq for wf, seq in sequences if wf == "w1"]


@pytest.mark.parametrize("workflow_id", [None, "w1"])
async def test_a_client_that_keeps_reconnecting_with_since_gets_the_whole_log_once_in_order(
    nats_url, topology, js, workflow_id, settings_for
):
    """1 000 events are appended while the client disconnects at random points and resumes from the last sequence
    it saw; the pages are small, so resuming crosses page boundaries and the seam with the live feed."""
    settings = settings_for(nats_url, topology, WF_BROADCASTER_REPLAY_PAGE_SIZE="32")
    chance = random.Random(20261125)
    workflows = ["w1", "w2", "w3"]
    appended: list[tuple[int, str]] = []

    async def append_events() -> None:
        for number in range(1000):
            workflow = workflows[number % len(workflows)]
            appended.append((await append(js, topology, workflow), workflow))

    async with serving(settings) as address:
        appending = asyncio.create_task(append_events())
        received: list[int] = []
        connections = 0
        query = f"&workflow_id={workflow_id}" if workflow_id else ""

        def wanted() -> list[int]:
            return [sequence for sequence, workflow in appended if workflow_id in (None, workflow)]

        def caught_up() -> bool:
            return appending.done() and len(received) >= len(wanted())

        while not caught_up():
            last = received[-1] if received else 0
            # No receive limit: a client closing cleanly mid-replay still reads on to the server's close frame.
            client = await connect(f"ws://{address}/ws?since={last}{query}", max_queue=None)
            connections += 1
            try:
                for _ in range(chance.randint(1, 60)):
                    if caught_up():
                        break
                    item = await receive_event(client)
                    assert workflow_id in (None, item["event"]["workflow_id"])
                    received.append(item["sequence"])
            finally:
                if connections % 2:
                    await client.close()
                else:
                    client.transport.abort()  # as when the network drops
        await appending

    assert received == wanted()  # every event of the log, once each, in order
    assert connections > 10


async def test_an_idle_client_gets_heartbeats_with_the_sequence_it_is_up_to(nats_url, topology, js, settings_for):
    async with serving(settings_for(nats_url, topology, WF_BROADCASTER_HEARTBEAT_S="0.1")) as address:
        first = await append(js, topology, "w1")
        async with (
            connect(f"ws://{address}/ws?since=0") as every,
            connect(f"ws://{address}/ws?since=0&workflow_id=w1") as one,
        ):
            assert (await receive_event(every))["sequence"] == (await receive_event(one))["sequence"] == first
            assert await receive(every) == {"type": "heartbeat", "sequence": first}
            other = await append(js, topology, "w2")
            assert (await receive_event(every))["sequence"] == other

            async def heartbeat_after_the_other_workflows_event() -> bool:
                # One workflow's follower is up to date with every event handed out, its own or not.
                return await receive(one) == {"type": "heartbeat", "sequence": other}

            await eventually(heartbeat_after_the_other_workflows_event)


@pytest.mark.parametrize(
    ("since", "reason"),
    [("abc", "since: Input should be a valid integer"), ("-1", "since: Input should be greater than or equal to 0")],
)
async def test_refuses_a_bad_since_with_the_reason(broadcaster, since, reason):
    with pytest.raises(ConnectionClosed) as refused:
        async with connect(f"ws://{broadcaster}/ws?since={since}") as client:
            await receive(client)

    assert refused.value.rcvd is not None and refused.value.rcvd.code == 1008
    assert refused.value.rcvd.reason.startswith(reason)


async def test_refuses_a_since_past_the_end_of_the_log(broadcaster, js, topology):
    last = await append(js, topology, "w1")
    with pytest.raises(ConnectionClosed) as refused:
        async with connect(f"ws://{broadcaster}/ws?since={last + 5}") as client:
            await receive(client)

    assert refused.value.rcvd is not None and refused.value.rcvd.code == 1008
    assert refused.value.rcvd.reason.startswith(f"since {last + 5} is past the end of the log ({last})")


async def test_a_reconnect_storm_is_served_in_full_while_the_broadcaster_stays_responsive(
    nats_url, topology, js, start_service
):
    """200 clients resume from 0 at once against a broadcaster process of its own (the clients' work in this
    process must not be what slows it down): each gets the whole log, and /healthz keeps answering quickly."""
    port = free_port()
    start_service(
        "broadcaster",
        nats_url,
        topology,
        WF_BIND_HOST="127.0.0.1",
        WF_BROADCASTER_PORT=str(port),
        WF_BROADCASTER_REPLAY_CONCURRENCY="4",
    )
    address = f"127.0.0.1:{port}"

    async def healthy() -> bool:
        try:
            return (await health(address)).status_code == 200
        except httpx.HTTPError:
            return False

    await eventually(healthy, timeout_s=20)
    sequences = await append_many(js, topology, 300)

    async def resume_from_zero() -> list[int]:
        async with connect(f"ws://{address}/ws?since=0", open_timeout=30) as client:
            # A client may wait its turn for a while: 200 replays share 4 readers (longer on a busy machine).
            return [(await receive_event(client, STORM_RECEIVE_TIMEOUT_S))["sequence"] for _ in sequences]

    storm = asyncio.gather(*(resume_from_zero() for _ in range(200)))
    health_latencies = []
    async with httpx.AsyncClient(timeout=5) as http:
        while not storm.done():
            started = time.monotonic()
            assert (await http.get(f"http://{address}/healthz")).status_code == 200
            health_latencies.append(time.monotonic() - started)
    received = await storm

    assert all(client_received == sequences for client_received in received)
    assert len(health_latencies) >= 3 and max(health_latencies) < 1.0, health_latencies

    async def every_client_let_go() -> bool:
        return (await health(address)).json()["clients"] == 0

    await eventually(every_client_let_go, timeout_s=5)
    # Each replay's reader is gone too: only the live feed still reads the stream.
    assert (await js.stream_info(topology.events_stream)).state.consumer_count == 1


async def append_many(js: JetStreamContext, topology: Topology, count: int) -> list[int]:
    futures = [
        await js.publish_async(
            topology.events_subject(f"w{number % 10}"),
            WorkflowCreated(workflow_id=f"w{number % 10}", workflow_type="approval").model_dump_json().encode(),
        )
        for number in range(count)
    ]
    return [(await future).seq for future in futures]


async def test_events_appended_after_nats_server_restarts_reach_a_connected_client_promptly(
    tmp_path, topology, settings_for
):
    server = NatsServer(tmp_path / "nats").start()
    try:
        nc = await nats.connect(server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.1)
        js = nc.jetstream()
        await ensure_topology(js, topology)
        async with serving(settings_for(server.url, topology)) as address, connect(f"ws://{address}/ws") as client:
            await receive(client)  # the starting position
            await asyncio.to_thread(server.restart, True)  # kill -9, same port and store
            appended = await eventually_appended(js, topology, "after-restart")
            # The broadcaster's consumer notices the restart by missed heartbeats, then resumes where it was.
            relayed = await receive(client, timeout_s=RESUMED_WITHIN_S)
            assert relayed["sequence"] == appended
        await nc.close()
    finally:
        server.stop()


async def eventually_appended(js: JetStreamContext, topology: Topology, workflow_id: str) -> int:
    """Append once the restarted server takes publishes again; the event's sequence."""
    deadline = time.monotonic() + 10
    while True:
        try:
            return await append(js, topology, workflow_id)
        except UNAVAILABLE:
            assert time.monotonic() < deadline, "the restarted server never took the append"
            await asyncio.sleep(0.1)
