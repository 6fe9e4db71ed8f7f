"""4. Latency from a command's publish to its first event reaching a WebSocket client of the broadcaster.

The command is `create`, the cheapest that yields an event (one decision: WorkflowCreated + WorkflowStarted, no job).
Each sample is timed from just before the publish to the first message whose `event.causation_id` is the command's
id, on three paths: a WebSocket connected to the broadcaster (what a browser sees); for comparison, in the bench
itself, an ordered JetStream consumer on the events stream (what the broadcaster itself consumes: the event once
committed) and a core NATS subscription to the events subjects (which sees an atomic batch's first event when the
orchestrator sends it, before the commit)."""

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import DeliverPolicy
from websockets.asyncio.client import connect

from bench.cycles import percentile
from bench.system import (
    CpuMeter,
    System,
    connected,
    drop_topology,
    new_topology,
    say,
    start_broadcaster,
    wait_consumers,
)
from contracts.commands import CreateWorkflow
from contracts.topology import Topology
from runtime.streams import ensure_topology

SETTLE_TIMEOUT_S = 20.0


@dataclass
class Percentiles:
    samples: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float

    @classmethod
    def of(cls, seconds: list[float]) -> "Percentiles":
        ms = [s * 1000 for s in seconds]
        return cls(len(ms), percentile(ms, 0.50), percentile(ms, 0.95), percentile(ms, 0.99), max(ms, default=0.0))


@dataclass
class LatencyResult:
    load: str  # "fixed" or "saturation"
    offered_per_s: float | None  # the fixed rate; None for the closed loop
    in_flight: int | None  # the closed loop's window
    achieved_per_s: float
    websocket: Percentiles
    stream: Percentiles
    nats: Percentiles
    cpu: dict[str, float]  # % of one core, by process
    store: str = ""  # where the broker's store was, when not the run's own (the disk's share of the latency)

    @property
    def store_suffix(self) -> str:
        """What each label of this measurement ends with: where the store was, when not the run's own."""
        return f", {self.store}" if self.store else ""


class Probe:
    """Publishes creates and times each one's first event, on both paths."""

    def __init__(self, nc: Client, topology: Topology) -> None:
        self.nc, self.js, self.topology = nc, nc.jetstream(), topology
        self.sent_at: dict[str, float] = {}
        self.via_socket: dict[str, float] = {}
        self.via_stream: dict[str, float] = {}
        self.via_nats: dict[str, float] = {}
        # Awaited whenever a command's event reaches the WebSocket.
        self.on_answer: Callable[[], Awaitable[None]] | None = None
        self.socket_open = asyncio.Event()
        self._count = 0
        self._run = new_topology("l").prefix

    async def send(self) -> None:
        self._count += 1
        workflow_id = f"{self._run}-{self._count}"
        command = CreateWorkflow(message_id=f"{workflow_id}-create", workflow_id=workflow_id)
        data, subject = command.model_dump_json().encode(), self.topology.commands_subject(workflow_id)
        self.sent_at[command.message_id] = time.perf_counter()
        # Not awaited: the ack's round trip would otherwise pace the sender.
        await self.js.publish_async(subject, data, headers={"Nats-Msg-Id": command.message_id})

    def _arrived(self, seen: dict[str, float], causation_id: str | None) -> bool:
        if causation_id in self.sent_at and causation_id not in seen:
            seen[causation_id] = time.perf_counter() - self.sent_at[causation_id]
            return True
        return False

    async def on_nats(self, message: Msg) -> None:
        self._arrived(self.via_nats, json.loads(message.data).get("causation_id"))

    async def on_stream(self, message: Msg) -> None:
        self._arrived(self.via_stream, json.loads(message.data).get("causation_id"))

    async def read_socket(self, url: str) -> None:
        async with connect(url, max_queue=None) as socket:
            self.socket_open.set()
            async for text in socket:
                message = json.loads(text)
                event = message.get("event")
                if event and self._arrived(self.via_socket, event.get("causation_id")) and self.on_answer:
                    await self.on_answer()

    async def settled(self, expected: int) -> None:
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        paths = (self.via_socket, self.via_stream, self.via_nats)
        while min(map(len, paths)) < expected and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    def result(
        self, load: str, rate: float | None, window: int | None, elapsed: float, cpu: dict[str, float]
    ) -> LatencyResult:
        missing = len(self.sent_at) - len(self.via_socket)
        if missing:
            say(f"latency: {missing} of {len(self.sent_at)} commands had no event on the WebSocket in time")
        return LatencyResult(
            load=load,
            offered_per_s=rate,
            in_flight=window,
            achieved_per_s=len(self.via_socket) / elapsed,
            websocket=Percentiles.of(list(self.via_socket.values())),
            stream=Percentiles.of(list(self.via_stream.values())),
            nats=Percentiles.of(list(self.via_nats.values())),
            cpu=cpu,
        )


async def fixed_rate(probe: Probe, rate: float, seconds: float) -> float:
    """Open loop: a create every 1/rate s, on schedule whatever the answers do."""
    start, count = time.perf_counter(), int(rate * seconds)
    for n in range(count):
        delay = start + n / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        await probe.send()
    await probe.settled(count)
    return time.perf_counter() - start


async def saturation(probe: Probe, window: int, seconds: float) -> float:
    """Closed loop: `window` creates in flight, the next sent as soon as one's event reaches the WebSocket."""
    deadline = time.perf_counter() + seconds

    async def next_one() -> None:
        if time.perf_counter() < deadline:
            await probe.send()

    probe.on_answer = next_one
    start = time.perf_counter()
    for _ in range(window):
        await probe.send()
    await asyncio.sleep(seconds)
    await probe.settled(len(probe.sent_at))
    return time.perf_counter() - start


async def measure(
    system: System, rate: float, window: int, seconds: float, loads=("fixed", "saturation"), store: str = ""
) -> list[LatencyResult]:
    topology = new_topology("lat")
    results = []
    async with connected(system.url) as nc:
        js = nc.jetstream()
        await ensure_topology(js, topology)
        orchestrator = system.start_service("orchestrator", topology, WF_SEND_FAILURE_RATE="0")
        broadcaster, port = await start_broadcaster(system, topology)
        try:
            await wait_consumers(js, topology.commands_stream, "orchestrator", [orchestrator])
            for load in ("warm-up", *loads):
                probe = Probe(nc, topology)
                subscriptions = [
                    await nc.subscribe(topology.events_subject("*"), cb=probe.on_nats),
                    await js.subscribe(
                        topology.events_subject(),
                        stream=topology.events_stream,
                        ordered_consumer=True,
                        deliver_policy=DeliverPolicy.NEW,
                        cb=probe.on_stream,
                    ),
                ]
                reader = asyncio.create_task(probe.read_socket(f"ws://127.0.0.1:{port}/ws"))
                await asyncio.wait_for(probe.socket_open.wait(), 10)
                cpu = CpuMeter(system.pids(orchestrator=[orchestrator], broadcaster=[broadcaster]))
                try:
                    if load == "warm-up":  # the services' first requests (imports, caches) are not measured
                        await fixed_rate(probe, rate / 2, 1.0)
                        continue
                    if load == "fixed":
                        say(f"latency: {rate:g} creates/s for {seconds:g} s, 1 orchestrator, 1 WebSocket client")
                        elapsed = await fixed_rate(probe, rate, seconds)
                        result = probe.result(load, rate, None, elapsed, cpu.shares())
                    else:
                        say(f"latency: saturation, {window} creates in flight for {seconds:g} s")
                        elapsed = await saturation(probe, window, seconds)
                        result = probe.result(load, None, window, elapsed, cpu.shares())
                finally:
                    reader.cancel()
                    await asyncio.gather(reader, return_exceptions=True)
                    for subscription in subscriptions:
                        await subscription.unsubscribe()
                result.store = store
                ws, label = result.websocket, load + result.store_suffix
                say(
                    f"latency ({label}): {result.achieved_per_s:,.0f}/s; WebSocket p50 {ws.p50_ms:.1f} p95 "
                    f"{ws.p95_ms:.1f} p99 {ws.p99_ms:.1f} max {ws.max_ms:.1f} ms; p50 on the stream consumer "
                    f"{result.stream.p50_ms:.1f}, on core NATS {result.nats.p50_ms:.1f} ms"
                )
                say(f"latency ({label}): CPU % " + ", ".join(f"{k} {v:.0f}" for k, v in result.cpu.items()))
                results.append(result)
        finally:
            system.stop_services([orchestrator, broadcaster])
            await drop_topology(js, topology)
    return results
