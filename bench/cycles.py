"""2–3. Full approval cycles per second, and what one cycle puts through the broker.

A closed-loop load generator keeps a fixed number of workflows in flight. It publishes commands straight to NATS (as
any client may) and follows the committed events (an ordered consumer on the events stream, as the broadcaster does;
a core NATS subscription would also see the events of an atomic batch the stream then refused):
`WorkflowStarted` → process; `request_approval` → approve; `approve` (Finished) or `fail` (Error) ends the cycle and
starts the next workflow. After the measured
window it stops starting workflows and lets the ones in flight end, so the stream deltas over the whole scenario
divide exactly by the cycles run."""

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass, field

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import DeliverPolicy
from nats.js.client import JetStreamContext

from bench.system import (
    CpuMeter,
    System,
    connected,
    drop_topology,
    http_get,
    new_topology,
    say,
    start_workers,
    stream_last_seq,
    subscribe_to_everything,
    wait_http_ok,
    wait_until,
)
from contracts.commands import ApproveWorkflow, CreateWorkflow, ProcessWorkflow
from contracts.topology import Topology
from runtime.index_db import connect
from services.indexer.projection import IndexProjection
from services.notifier.catcher import WebhookCatcher

BATCH_COMMITS = "wf_event_batch_commits_total"

DRAIN_TIMEOUT_S = 30.0
BENCH_INBOX = "_BENCH"  # the load generator's own replies, told apart from the services' when counting the wire
SERVICE_CONSUMERS = {"orchestrator", "processor"}


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


class CycleDriver:
    """Drives approval cycles. With `leave_waiting`, it does not approve: each cycle ends at Waiting For Approval,
    and it starts workflows until that many wait."""

    def __init__(self, nc: Client, topology: Topology, in_flight: int, leave_waiting: int | None = None) -> None:
        self.nc, self.js, self.topology = nc, nc.jetstream(), topology
        self.in_flight, self.leave_waiting = in_flight, leave_waiting
        self.launching = True
        self.launched = self.finished = self.errored_output = self.errored_other = self.waiting = 0
        self.rejections: Counter[str] = Counter()
        self.decisions: set[str] = set()  # commands that appended events
        self.client_commands = 0
        self.publish_failures = 0
        self.cycle_seconds: list[float] = []
        self._open: dict[str, float] = {}  # workflow id -> when its create was sent
        self._run = new_topology("w").prefix  # unique workflow ids per driver

    @property
    def ended(self) -> int:
        return self.finished + self.errored_output + self.errored_other

    @property
    def open(self) -> int:
        return len(self._open)

    async def start(self) -> None:
        await self.js.subscribe(
            self.topology.events_subject(),
            stream=self.topology.events_stream,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.NEW,
            cb=self._on_event,
        )
        for _ in range(min(self.in_flight, self.leave_waiting or self.in_flight)):
            await self._launch()

    async def drain(self, timeout_s: float = DRAIN_TIMEOUT_S) -> None:
        """Start no more workflows; wait for those in flight to end (or wait for approval, when not approving)."""
        self.launching = False

        async def settled() -> bool:
            return not self._open

        await wait_until(settled, timeout_s, f"{self.open} workflows in flight to end")

    async def _send(self, command) -> None:
        future = await self.js.publish_async(
            self.topology.commands_subject(command.workflow_id),
            command.model_dump_json().encode(),
            headers={"Nats-Msg-Id": command.message_id},
        )
        future.add_done_callback(self._count_failure)
        self.client_commands += 1

    def _count_failure(self, future: asyncio.Future) -> None:
        if future.cancelled() or future.exception() is not None:
            self.publish_failures += 1

    async def _launch(self) -> None:
        self.launched += 1
        workflow_id = f"{self._run}-{self.launched}"
        self._open[workflow_id] = time.perf_counter()
        await self._send(CreateWorkflow(message_id=f"{workflow_id}-create", workflow_id=workflow_id))

    async def _end(self, workflow_id: str) -> None:
        began = self._open.pop(workflow_id, None)
        if began is not None:
            self.cycle_seconds.append(time.perf_counter() - began)
        enough = self.leave_waiting is not None and self.waiting + self.open >= self.leave_waiting
        if self.launching and not enough:
            await self._launch()

    async def _on_event(self, message: Msg) -> None:
        event = json.loads(message.data)
        kind, workflow_id = event["type"], event["workflow_id"]
        if workflow_id not in self._open:
            return
        self.decisions.add(event["causation_id"])
        if kind == "WorkflowStarted":
            await self._send(ProcessWorkflow(message_id=f"{workflow_id}-process", workflow_id=workflow_id))
        elif kind == "CommandRejected":
            self.rejections[event["code"]] += 1
        elif kind == "TransitionTaken":
            trigger = event["trigger"]
            if trigger == "request_approval":
                if self.leave_waiting is not None:
                    self.waiting += 1
                    return await self._end(workflow_id)
                await self._send(
                    ApproveWorkflow(message_id=f"{workflow_id}-approve", workflow_id=workflow_id, approver="bench")
                )
            elif trigger == "approve":
                self.finished += 1
                await self._end(workflow_id)
            elif trigger == "fail":
                # The step's output was not above the threshold, or every try to send its job failed.
                if event.get("note", "").startswith("Output"):
                    self.errored_output += 1
                else:
                    self.errored_other += 1
                await self._end(workflow_id)


@dataclass
class StreamCounts:
    """Messages each stream has ever stored (last sequences)."""

    commands: int
    events: int
    jobs: int
    kv_puts: int

    @classmethod
    async def read(cls, js: JetStreamContext, topology: Topology) -> "StreamCounts":
        return cls(
            commands=await stream_last_seq(js, topology.commands_stream),
            events=await stream_last_seq(js, topology.events_stream),
            jobs=await stream_last_seq(js, topology.jobs_stream),
            kv_puts=await stream_last_seq(js, f"KV_{topology.state_bucket}"),
        )


@dataclass
class PerCycle:
    """Messages stored per cycle, by what they are."""

    client_commands: float
    results: float  # the processor's CompleteJob commands: one per job
    timer_messages: float  # retry and timeout timers scheduled, and the retries fired
    events: float
    jobs: float
    kv_puts: float
    timers_left: float  # step-timeout timers still scheduled at the end: each will fire later as a no-op command
    decisions: float  # commands that appended events
    atomic_commits: float  # atomic batches committed (one disk sync each; decisions append together in one)

    @property
    def stored(self) -> float:
        return self.client_commands + self.results + self.timer_messages + self.events + self.jobs + self.kv_puts


@dataclass
class CycleResult:
    replicas: int
    send_failure_rate: float
    in_flight: int
    measured_s: float
    cycles_per_s: float
    finished: int  # in the measured window
    errored_output: int
    errored_other: int
    cycle_p50_ms: float
    cycle_p95_ms: float
    total_cycles: int  # over the whole scenario, drained
    rejections: dict[str, int]
    per_cycle: PerCycle
    cpu: dict[str, float] = field(default_factory=dict)  # % of one core, by process group, in the measured window
    wire: dict[str, float] = field(default_factory=dict)  # wire messages per cycle, by kind (the counted run only)
    index: "IndexFigures | None" = None  # with an indexer running beside (the query side's figures)
    notified: float | None = None  # with the notifier running beside: notifications delivered per cycle


@dataclass
class IndexFigures:
    lag_p50_ms: float  # a decision's row committed in the index after it (the indexer's own histogram)
    lag_p99_ms: float
    rebuild_events: int  # the events behind the read model it rebuilt the index from
    rebuild_s: float

    @property
    def rebuild_events_per_s(self) -> float:
        return self.rebuild_events / self.rebuild_s


async def settled_counts(js: JetStreamContext, topology: Topology) -> StreamCounts:
    """The counts once they stop moving: the read model is saved just after the last event is appended."""
    counts = await StreamCounts.read(js, topology)
    while True:
        await asyncio.sleep(0.3)
        again = await StreamCounts.read(js, topology)
        if again == counts:
            return counts
        counts = again


def per_cycle(
    before: StreamCounts, after: StreamCounts, driver: CycleDriver, timers_left: int, batch_commits: int
) -> PerCycle:
    cycles = driver.ended
    jobs = after.jobs - before.jobs
    commands = after.commands - before.commands
    return PerCycle(
        client_commands=driver.client_commands / cycles,
        results=jobs / cycles,
        timer_messages=(commands - driver.client_commands - jobs) / cycles,
        events=(after.events - before.events) / cycles,
        jobs=jobs / cycles,
        kv_puts=(after.kv_puts - before.kv_puts) / cycles,
        timers_left=timers_left / cycles,
        decisions=len(driver.decisions) / cycles,
        atomic_commits=batch_commits / cycles,
    )


def batch_commits(orchestrators) -> int:
    """The atomic batches the orchestrators committed since they started, from their /metrics."""
    total = 0
    for orchestrator in orchestrators:
        page = http_get(f"http://127.0.0.1:{orchestrator.port}/metrics") or ""
        total += sum(int(float(line.split()[1])) for line in page.splitlines() if line.startswith(BATCH_COMMITS + " "))
    return total


class WireCounter:
    """Every message the broker routes in the account (a `>` subscription sees them all), by kind."""

    def __init__(self, topology: Topology) -> None:
        self.prefix = topology.prefix
        self.counts: Counter[str] = Counter()

    def kind(self, subject: str, reply: str) -> str | None:
        head = subject.split(".", 3)
        if head[0] == BENCH_INBOX or subject.startswith("$JS.FC."):
            return None  # the load generator's own traffic: its acks, its consumer's flow control
        if reply.startswith("$JS.ACK."):
            # A message delivered to a consumer carries its original subject; the reply names the consumer. The
            # bench's own consumer of the events (what the broadcaster would add: one per event) is left out.
            tokens = reply.split(".")
            return "delivery to a consumer" if SERVICE_CONSUMERS & set(tokens[2:7]) else None
        if head[0] == self.prefix or head[0] == "$KV":
            return "publish to a stream"
        if head[0].startswith("_INBOX"):  # _INBOX, or a service's own _INBOX_<service>
            return "reply"
        if subject.startswith("$JS.API.DIRECT.GET."):
            return "direct get (last event)"
        if subject.startswith("$JS.API.STREAM.MSG.GET."):
            return "message get (KV read)"
        if subject.startswith("$JS.API.CONSUMER.MSG.NEXT."):
            return "pull request"
        if subject.startswith("$JS.ACK."):
            return "ack"
        if subject.startswith("$JS.EVENT."):
            return "advisory"
        if subject.startswith("$JS.API."):
            return "other JetStream API"
        return "other"

    async def on_message(self, message: Msg) -> None:
        if kind := self.kind(message.subject, message.reply or ""):
            self.counts[kind] += 1


async def run_scenario(
    system: System,
    replicas: int,
    send_failure_rate: float,
    warmup_s: float,
    measure_s: float,
    in_flight: int,
    count_wire: bool = False,
    with_indexer: bool = False,
    catcher: tuple[WebhookCatcher, str] | None = None,
) -> CycleResult:
    """`catcher`: run the notifier beside, with a subscription to every notification delivered to it."""
    topology = new_topology(f"c{replicas}f{int(send_failure_rate * 100)}")
    label = f"cycles ×{replicas} failures {send_failure_rate:g}" + (" (counting the wire)" if count_wire else "")
    label += " with the indexer" if with_indexer else ""
    label += " with the notifier" if catcher else ""
    async with connected(system.url, inbox_prefix=BENCH_INBOX.encode()) as nc, connected(system.url) as spy:
        js = nc.jetstream()
        orchestrators, processors = await start_workers(
            system, js, topology, replicas, WF_SEND_FAILURE_RATE=str(send_failure_rate)
        )
        indexer = IndexerBeside(system, topology) if with_indexer else None
        if indexer:
            await indexer.ready()
        notifier, taken_before = None, 0
        if catcher:
            await subscribe_to_everything(js, topology, catcher[1])
            notifier = system.start_service("notifier", topology, WF_LINK_SECRET="bench")
            await wait_http_ok(f"http://127.0.0.1:{notifier.port}/healthz", notifier)
            taken_before = len(catcher[0].taken)
        say(f"{label}: {replicas} orchestrator(s) + {replicas} processor(s) pulling; driving {in_flight} in flight")
        try:
            wire = WireCounter(topology)
            if count_wire:
                await spy.subscribe(">", cb=wire.on_message)
                await spy.flush()
            before = await StreamCounts.read(js, topology)
            driver = CycleDriver(nc, topology, in_flight)
            await driver.start()
            await asyncio.sleep(warmup_s)
            start_counts = (driver.finished, driver.errored_output, driver.errored_other, len(driver.cycle_seconds))
            started = time.perf_counter()
            groups = {"orchestrator": orchestrators, "processor": processors}
            beside = {"indexer": [indexer.service]} if indexer else {}
            beside |= {"notifier": [notifier]} if notifier else {}
            cpu = CpuMeter(system.pids(**groups, **beside))
            await _progress(driver, measure_s, label, [*orchestrators, *processors])
            elapsed = time.perf_counter() - started
            cpu_shares = cpu.shares()
            finished, errored_output, errored_other = (
                driver.finished - start_counts[0],
                driver.errored_output - start_counts[1],
                driver.errored_other - start_counts[2],
            )
            window = driver.cycle_seconds[start_counts[3] :]
            await driver.drain()
            after = await settled_counts(js, topology)
            timers_left = (await js.stream_info(topology.commands_stream)).state.messages
            if driver.publish_failures:
                raise RuntimeError(f"{driver.publish_failures} commands could not be published")
            result = CycleResult(
                replicas=replicas,
                send_failure_rate=send_failure_rate,
                in_flight=in_flight,
                measured_s=elapsed,
                cycles_per_s=(finished + errored_output + errored_other) / elapsed,
                finished=finished,
                errored_output=errored_output,
                errored_other=errored_other,
                cycle_p50_ms=percentile(window, 0.5) * 1000,
                cycle_p95_ms=percentile(window, 0.95) * 1000,
                total_cycles=driver.ended,
                rejections=dict(driver.rejections),
                per_cycle=per_cycle(before, after, driver, timers_left, batch_commits(orchestrators)),
                cpu=cpu_shares,
                wire={kind: count / driver.ended for kind, count in sorted(wire.counts.items())},
                index=await indexer.figures(js) if indexer else None,
                notified=await _notified(catcher[0], taken_before, driver.ended) if catcher else None,
            )
        finally:
            beside_services = [*([indexer.service] if indexer else []), *([notifier] if notifier else [])]
            system.stop_services([*orchestrators, *processors, *beside_services])
            await drop_topology(js, topology)
    say(
        f"{label}: {result.cycles_per_s:,.1f} cycles/s ({result.finished} finished, "
        f"{result.errored_output} errored on output, {result.errored_other} errored sending); "
        f"cycle p50 {result.cycle_p50_ms:,.0f} ms; {result.per_cycle.stored:.1f} stored messages/cycle"
    )
    say(f"{label}: CPU (% of one core) " + ", ".join(f"{name} {share:.0f}" for name, share in result.cpu.items()))
    return result


async def _notified(catcher: WebhookCatcher, before: int, cycles: int) -> float:
    """Notifications delivered per cycle, once the last have arrived."""

    async def settled() -> bool:
        count = len(catcher.taken)
        await asyncio.sleep(1.0)
        return len(catcher.taken) == count

    await wait_until(settled, 60, "the notifications delivered")
    per_cycle = (len(catcher.taken) - before) / cycles
    say(f"notifier: {len(catcher.taken) - before:,} notifications delivered, {per_cycle:.2f} per cycle")
    return per_cycle


async def _progress(driver: CycleDriver, seconds: float, label: str, services) -> None:
    """Wait out the measured window, printing the rate every few seconds."""
    start, last_ended, last_time = time.perf_counter(), driver.ended, time.perf_counter()
    while (now := time.perf_counter()) - start < seconds:
        await asyncio.sleep(min(2.0, seconds - (now - start)))
        for service in services:
            service.check_alive()
        now = time.perf_counter()
        rate = (driver.ended - last_ended) / (now - last_time)
        say(f"{label}:   {now - start:4.1f} s  {rate:7.1f} cycles/s  ({driver.ended} ended)")
        last_ended, last_time = driver.ended, now


class IndexerBeside:
    """The query side's indexer on the scenario's prefix (its index a SQLite file of its own), started with the
    workers: its lag while the cycles run at their peak, then how fast it rebuilds the index from the whole read
    model."""

    def __init__(self, system: System, topology: Topology) -> None:
        self.topology = topology
        self.url = f"sqlite+aiosqlite:///{system.log_dir / f'{topology.prefix}-index.sqlite'}"
        self.service = system.start_service("indexer", topology, WF_INDEX_URL=self.url)

    async def ready(self) -> None:
        await wait_http_ok(f"http://127.0.0.1:{self.service.port}/healthz", self.service)

    async def figures(self, js: JetStreamContext) -> IndexFigures:
        metrics = await asyncio.to_thread(http_get, f"http://127.0.0.1:{self.service.port}/metrics") or ""
        lag_p50, lag_p99 = (histogram_quantile(metrics, "wf_index_lag_seconds", share) * 1000 for share in (0.5, 0.99))
        engine = connect(self.url)
        projection = IndexProjection(engine)
        try:
            end = await stream_last_seq(js, self.topology.kv_stream(self.topology.state_bucket))
            await wait_until(lambda: self._at(projection, end), 60, "the index caught up")
            events = (await js.stream_info(self.topology.events_stream)).state.messages
            await projection.reset()
            started = time.perf_counter()
            await wait_until(lambda: self._at(projection, end), 600, "the index rebuilt")
            rebuild_s = time.perf_counter() - started
        finally:
            await engine.dispose()
        figures = IndexFigures(lag_p50, lag_p99, events, rebuild_s)
        say(
            f"index: lag p50 {lag_p50:.1f} / p99 {lag_p99:.1f} ms; rebuilt from the read model of {events:,} events "
            f"in {rebuild_s:.2f} s ({figures.rebuild_events_per_s:,.0f} events/s)"
        )
        return figures

    @staticmethod
    async def _at(projection: IndexProjection, end: int) -> bool:
        return await projection.position() >= end


def histogram_quantile(metrics: str, name: str, share: float) -> float:
    """A quantile of a Prometheus histogram in text form, interpolated within its bucket as Prometheus does."""
    buckets = []
    for line in metrics.splitlines():
        if line.startswith(f"{name}_bucket{{"):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float(bound), float(line.rsplit(" ", 1)[1])))
    total = buckets[-1][1] if buckets else 0
    if not total:
        return float("nan")
    wanted, lower, below = share * total, 0.0, 0.0
    for bound, cumulative in buckets:
        if cumulative >= wanted:
            if bound == float("inf"):
                return lower
            return lower + (bound - lower) * (wanted - below) / max(cumulative - below, 1e-12)
        lower, below = bound, cumulative
    return lower
