"""What the integration tests of the API and the query side share: the API and the indexer run in the test's own
event loop (httpx's ASGITransport plus the apps' lifespans) against the session's nats-server, on the test's own
names and the test's own index.

Litestar's AsyncTestClient runs the app on a portal thread and blocks the test's loop for each request, so the test
could not play the orchestrator while a request waits for an outcome: hence the transport."""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import nats
import nats.errors
import pytest
from litestar import Litestar
from nats.js.client import JetStreamContext

from contracts.asyncapi import asyncapi_document
from contracts.state import WorkflowState
from contracts.topology import Topology
from runtime.streams import PROBE_TOKEN
from services.api.app import create_app
from services.api.settings import ApiSettings
from services.indexer.app import Indexer
from services.indexer.app import create_app as create_indexer
from services.indexer.settings import IndexerSettings
from tests.asyncapi_check import AsyncApiCheck
from tests.conftest import bearer


async def eventually(condition: Callable[[], Awaitable[bool]], timeout_s: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


@asynccontextmanager
async def running(app: Litestar) -> AsyncIterator[None]:
    """The app's lifespan, held by a task of its own: pytest-asyncio sets a fixture up and tears it down in different
    tasks, and the lifespan's task group must be left in the task that entered it."""
    started, stop = asyncio.Event(), asyncio.Event()

    async def hold() -> None:
        async with app.lifespan():
            started.set()
            await stop.wait()

    holder = asyncio.create_task(hold())
    await asyncio.wait([holder, asyncio.create_task(started.wait())], return_when=asyncio.FIRST_COMPLETED)
    if holder.done():
        holder.result()  # the start-up failed: raise its error
    try:
        yield
    finally:
        stop.set()
        await holder


@asynccontextmanager
async def api_client(
    settings: ApiSettings, wait_ready: bool = True, holder: str | None = "admin"
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the app, with the test token of `holder` (None: no token)."""
    app = create_app(settings)
    headers = bearer(holder) if holder else {}
    async with (
        running(app),
        httpx.AsyncClient(
            # The ASGI types of httpx and of Litestar differ (both are ASGI 3): the type checker is told to let it be.
            transport=httpx.ASGITransport(app=app),  # pyright: ignore[reportArgumentType]
            base_url="http://api.test",
            headers=headers,
        ) as client,
    ):
        if wait_ready:

            async def healthy() -> bool:
                return (await client.get("/healthz")).status_code == 200

            await eventually(healthy)
        yield client


INDEX_DATABASES = ("sqlite", "postgresql")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "index_databases(*names): the databases the `index_url` fixture runs the test "
        f"on (the closest marker counts); without one, every one: {INDEX_DATABASES}",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test that takes an index (`index_url`, through the indexer or the API's settings too) runs once per database
    the index supports, or on those its closest `index_databases` marker names."""
    if "index_url" in metafunc.fixturenames:
        marker = metafunc.definition.get_closest_marker("index_databases")
        metafunc.parametrize("index_url", marker.args if marker else INDEX_DATABASES, indirect=True)


@pytest.fixture
def index_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """The test's own index (contracts/index.py): what the indexer writes and the API reads. An SQLite file, or a
    schema of its own on the session's PostgreSQL server."""
    if request.param == "postgresql":
        return request.getfixturevalue("postgres_url")
    return f"sqlite+aiosqlite:///{tmp_path / 'index.sqlite'}"


@pytest.fixture
def settings_for(tokens_file, index_url):
    """The API's settings for a server and prefix, accepting the test tokens, reading the test's index."""

    def settings(nats_url: str, topology: Topology, **env: Any) -> ApiSettings:  # env: variables, read as pydantic does
        return ApiSettings(
            NATS_URL=nats_url,
            WF_PREFIX=topology.prefix,
            WF_API_TOKENS_FILE=tokens_file,
            WF_INDEX_URL=index_url,
            **env,
        )

    return settings


@pytest.fixture
async def indexer(nats_url: str, topology: Topology, js: JetStreamContext, index_url: str) -> AsyncIterator[Indexer]:
    """The indexer, in the test's loop, keeping the test's index from its read model."""
    app = create_indexer(IndexerSettings(NATS_URL=nats_url, WF_PREFIX=topology.prefix, WF_INDEX_URL=index_url))
    async with running(app):
        yield app.state.service


@pytest.fixture
async def api(
    nats_url: str, topology: Topology, js: JetStreamContext, settings_for, indexer
) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(settings_for(nats_url, topology)) as client:
        yield client


@pytest.fixture
def seed(indexer: Indexer):
    """Put states into the read model as the orchestrator would, and wait until the index has them."""

    async def put(js: JetStreamContext, topology: Topology, *states: WorkflowState) -> None:
        kv = await js.key_value(topology.state_bucket)
        for state in states:
            await kv.put(state.id, state.model_dump_json().encode())
        await indexed(indexer, js, topology)

    return put


async def indexed(indexer: Indexer, js: JetStreamContext, topology: Topology) -> None:
    """Wait until the index has taken in the whole read model as it is now."""
    last = (await js.stream_info(topology.kv_stream(topology.state_bucket))).state.last_seq

    async def caught_up() -> bool:
        return await indexer.feed.projection.position() >= last

    await eventually(caught_up)


@pytest.fixture(autouse=True)
async def messages_fit_the_asyncapi_document(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """Every message a test of the session's nats-server (its own topology) publishes or receives under its prefix,
    and every state and type written, fits the AsyncAPI document (GET /asyncapi). A test that sends malformed
    messages on purpose, or on subjects no client should use, says so (`@pytest.mark.malformed_messages`) and is not
    checked: what the system publishes in it, every other test checks."""
    checked = "topology" in request.fixturenames and "nats_url" in request.fixturenames
    if not checked or request.node.get_closest_marker("malformed_messages"):
        yield
        return
    topology: Topology = request.getfixturevalue("topology")
    check = AsyncApiCheck(asyncapi_document(topology))
    nc = await nats.connect(request.getfixturevalue("nats_url"))

    seen: list[tuple[str, bytes]] = []

    async def keep(message) -> None:  # checked at the end: a test that publishes fast is not held up
        headers = message.headers or {}
        if headers.get("KV-Operation") in ("DEL", "PURGE") or headers.get("Nats-Expected-Stream") == PROBE_TOKEN:
            return  # a key's removal; a service's probe of a stream it waits for, refused by it (runtime/streams.py)
        seen.append((message.subject, message.data))

    for subjects in (f"{topology.prefix}.>", f"$KV.{topology.state_bucket}.>", f"$KV.{topology.types_bucket}.>"):
        await nc.subscribe(subjects, cb=keep, pending_msgs_limit=0, pending_bytes_limit=0)  # none dropped
    await nc.flush()
    yield
    try:
        await nc.drain()
    except nats.errors.Error:  # it could not parse a subject a test sent on purpose (a vertical tab): what came counts
        await nc.close()
    for subject, data in seen:
        check.check(subject, data)
    problems = check.problems
    assert not problems, "messages that do not fit the AsyncAPI document:\n" + "\n".join(problems[:20])
