"""The system under measurement: one nats-server of the run's own, and the real services as child processes.

Every scenario gets a prefix of its own (its own streams, subjects and buckets) and its own processes; `System.close`
stops every process the run started, whatever happened."""

import asyncio
import http.client
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import nats
import uvicorn
from nats.aio.client import Client
from nats.js.client import JetStreamContext
from nats.js.errors import NotFoundError

from contracts.ids import new_id
from contracts.notifications import Subscription
from contracts.topology import Topology
from runtime.streams import ensure_topology
from services.launcher.nats_server import DURABLE, NatsServer, free_port
from services.notifier.catcher import WebhookCatcher

PROJECT = Path(__file__).resolve().parent.parent
READY_TIMEOUT_S = 60.0
STOP_GRACE_S = 10.0

# The seed makes a run repeat itself: the same workflows get the same outputs and the same send failures.
SEED = 20261124


def say(line: str) -> None:
    print(f"bench | {line}", flush=True)


def rss_kib(pid: int) -> int:
    """Resident set size of a process, from /proc/<pid>/status (VmRSS, in KiB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU used by named processes over a window, as a share of one core (100 % = one core busy)."""

    def __init__(self, pids: dict[str, list[int]]) -> None:
        self.pids = pids
        self._start = time.perf_counter()
        self._before = {name: sum(cpu_seconds(pid) for pid in group) for name, group in pids.items()}

    def shares(self) -> dict[str, float]:
        elapsed = time.perf_counter() - self._start
        return {
            name: 100 * (sum(cpu_seconds(pid) for pid in group) - self._before[name]) / elapsed
            for name, group in self.pids.items()
        }


@dataclass
class Service:
    name: str
    process: subprocess.Popen
    log_path: Path
    port: int  # of its HTTP side (/healthz, /metrics; the broadcaster's WebSocket)

    @property
    def pid(self) -> int:
        return self.process.pid

    def rss_mib(self) -> float:
        return rss_kib(self.pid) / 1024

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.process.returncode}; see {self.log_path}")


class System:
    """One nats-server for the whole run (temp store), plus the services each scenario starts. The server is durable
    as shipped (every write synced before its ack), unless `sync_interval` says otherwise."""

    def __init__(self, log_dir: Path, store_parent: Path | None = None, sync_interval: str = DURABLE) -> None:
        self.log_dir = log_dir
        self.store_parent = store_parent
        self._store = tempfile.TemporaryDirectory(prefix="wf-bench-", dir=store_parent)
        self.server = NatsServer(
            Path(self._store.name) / "nats", log_file=log_dir / "nats-server.log", sync_interval=sync_interval
        )
        self.services: list[Service] = []

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> "System":
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.server.start()
        say(f"nats-server pid {self.server.pid} at {self.url}, store in {self._store.name}")
        return self

    def start_service(self, name: str, topology: Topology, number: int = 1, **env: str) -> Service:
        port = free_port()  # each replica an HTTP port of its own
        environment = {
            **os.environ,
            "NATS_URL": self.url,
            "WF_PREFIX": topology.prefix,
            "WF_SEED": str(SEED),
            "WF_BIND_HOST": "127.0.0.1",
            f"WF_{name.upper()}_PORT": str(port),
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        log_path = self.log_dir / f"{topology.prefix}-{name}-{number}.log"
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", f"services.{name}"],
                env=environment,
                cwd=PROJECT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a terminal's Ctrl-C reaches the bench only, which stops them in order
            )
        service = Service(name, process, log_path, port)
        self.services.append(service)
        return service

    def stop_services(self, services: list[Service] | None = None) -> None:
        """SIGTERM, then a kill after the grace period."""
        chosen = list(self.services if services is None else services)
        for service in chosen:
            if service.process.poll() is None:
                service.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for service in chosen:
            try:
                service.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                service.process.kill()
                service.process.wait()
            self.services.remove(service)

    def kill(self, service: Service) -> None:
        """kill -9: a crash, with no chance to finish or give anything back."""
        service.process.kill()
        service.process.wait()
        self.services.remove(service)

    def pids(self, **groups: list[Service]) -> dict[str, list[int]]:
        """Process ids by group, with the server's and the bench's own, for a CpuMeter."""
        named = {name: [service.pid for service in services] for name, services in groups.items()}
        return named | {"nats-server": [self.server.pid], "bench": [os.getpid()]}

    def close(self) -> None:
        try:
            self.stop_services()
        finally:
            self.server.stop()
            self._store.cleanup()


def new_topology(label: str) -> Topology:
    """Names no other scenario uses (prefixes are at most 16 characters)."""
    return Topology(prefix=f"b{label[:8]}{uuid.uuid4().hex[:6]}")


@asynccontextmanager
async def connected(url: str, **options) -> AsyncIterator[Client]:
    client = await nats.connect(url, **options)
    try:
        yield client
    finally:
        if client.is_connected:
            await client.drain()


async def drop_topology(js: JetStreamContext, topology: Topology) -> None:
    """Delete a finished scenario's streams and buckets: its pending timers then never fire into a later scenario."""
    # (Each config has a name; nats-py types it optional.)
    names = [config.name for config in topology.stream_configs() if config.name]
    names += [f"KV_{topology.state_bucket}", f"KV_{topology.types_bucket}"]
    for name in names:
        try:
            await js.delete_stream(name)
        except NotFoundError:
            pass


async def stream_last_seq(js: JetStreamContext, stream: str) -> int:
    """How many messages the stream has ever stored (its last sequence): unlike the count of messages it holds, this
    also counts what a work queue already removed."""
    return (await js.stream_info(stream)).state.last_seq


async def wait_until(probe, timeout_s: float, what: str, interval_s: float = 0.05):
    deadline = time.monotonic() + timeout_s
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout_s:g} s")
        await asyncio.sleep(interval_s)


async def wait_consumers(js: JetStreamContext, stream: str, durable: str, services: list[Service]) -> None:
    """Until every replica pulls from the shared durable consumer (one waiting pull request each)."""

    async def pulling() -> bool:
        for service in services:
            service.check_alive()
        try:
            info = await js.consumer_info(stream, durable)
        except NotFoundError:
            return False
        return (info.num_waiting or 0) >= len(services)

    await wait_until(pulling, READY_TIMEOUT_S, f"{len(services)} × {durable} pulling from {stream}", 0.02)


def http_get(url: str) -> str | None:
    """The body of a 2xx answer (urllib raises on the others); None for any other answer or none at all."""
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.read().decode()
    except (OSError, http.client.HTTPException):
        return None


async def wait_http_ok(url: str, service: Service) -> None:
    async def healthy() -> bool:
        service.check_alive()
        return await asyncio.to_thread(http_get, url) is not None

    await wait_until(healthy, READY_TIMEOUT_S, f"{url} answering 200", 0.1)


async def start_workers(
    system: System, js: JetStreamContext, topology: Topology, replicas: int, **env: str
) -> tuple[list[Service], list[Service]]:
    """`replicas` orchestrators and as many processors on one prefix, once all of them pull from their queue."""
    await ensure_topology(js, topology)
    orchestrators = [system.start_service("orchestrator", topology, n, **env) for n in range(1, replicas + 1)]
    processors = [system.start_service("processor", topology, n, **env) for n in range(1, replicas + 1)]
    await wait_consumers(js, topology.commands_stream, "orchestrator", orchestrators)
    await wait_consumers(js, topology.jobs_stream, "processor", processors)
    return orchestrators, processors


async def start_broadcaster(system: System, topology: Topology) -> tuple[Service, int]:
    # Open (no tokens): the bench's WebSocket clients measure the feed, not the one token check at their handshake.
    service = system.start_service("broadcaster", topology, WF_AUTH="off")
    await wait_http_ok(f"http://127.0.0.1:{service.port}/healthz", service)
    return service, service.port


@asynccontextmanager
async def catching() -> AsyncIterator[tuple[WebhookCatcher, str]]:
    """A webhook receiver in this process, on a free port: what the notifier delivers to, and its URL."""
    catcher, port = WebhookCatcher(), free_port()
    server = uvicorn.Server(uvicorn.Config(catcher, host="127.0.0.1", port=port, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    try:
        yield catcher, f"http://127.0.0.1:{port}/hooks"
    finally:
        server.should_exit = True
        await serving


async def subscribe_to_everything(js: JetStreamContext, topology: Topology, url: str) -> None:
    """A webhook subscription to every notification, written where the API keeps them."""
    subscription = Subscription.model_validate(
        {"id": new_id(), "owner": "bench", "channel": "webhook", "url": url, "people": []}
        | {"created_at": datetime.now(UTC)}
    )
    bucket = await js.key_value(topology.subscriptions_bucket)
    await bucket.put(subscription.id, subscription.model_dump_json().encode())
