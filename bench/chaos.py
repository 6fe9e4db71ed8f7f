"""`python -m bench.chaos [--workflows 1000] [--seed N]`: nothing is lost when every process crashes.

One nats-server of its own (temp store) and the services as child processes: 2 orchestrators, 2 processors, the api,
the broadcaster and the notifier (with a webhook subscription to everything, to a receiver of the run's own), with every simulated failure on (25 % of the sends to the queue fail; the processor answers some
jobs with a transient error, some with a non-retryable one, and runs some past the step's timeout). The workflows are
started at a steady rate and driven to an end over raw NATS (bench.fleet; a share are rejected once, processed again,
then approved). Meanwhile each service is killed with -9 once, at a random moment while workflows are being started,
and started again at once; so is nats-server, on the same port and store. A WebSocket client follows the broadcaster
all along, as a browser would, resuming from the last sequence it saw. At the end the invariant checker reads the
whole log.

Prints progress, then the figures: workflows started, finished, errored, lost (started - ended: must be 0), illegal
transitions, commands applied twice, commands never answered, read-model mismatches, events the WebSocket client
missed or got twice, notifications lost or unexpected, and for each kill how long until the process answered again (healthy) and did its work again
(working). Writes them to <out>/chaos.json, the processes' logs to <out>/chaos-logs/. Exit code 0 when nothing was
lost or broken."""

import argparse
import asyncio
import itertools
import json
import random
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml
from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.js.client import JetStreamContext
from websockets.asyncio.client import connect
from websockets.exceptions import WebSocketException

from bench.fleet import Fleet
from bench.system import (
    SEED,
    Service,
    System,
    catching,
    connected,
    http_get,
    new_topology,
    say,
    subscribe_to_everything,
    wait_http_ok,
)
from contracts.definitions import ApplyType, PublishedType, TypeApplied, version_key
from contracts.events import WorkflowCreated, WorkflowMigrated
from contracts.types import WorkflowTypeInfo
from runtime.eventlog import read_events
from runtime.streams import UNAVAILABLE, ensure_topology
from services.notifier.catcher import WebhookCatcher
from services.notifier.rules import notifications_of
from services.orchestrator.domain.types import SHIPPED_DOCUMENTS
from services.orchestrator.maintenance import Report, check

NATS = "nats-server"
# Every simulated failure on. Slow runs take 3 s, past the workflows' step timeout: abandoned, tried again.
FAILURES = {
    "orchestrator": {"WF_SEND_FAILURE_RATE": "0.25"},
    "processor": {
        "WF_PROCESSOR_TRANSIENT_ERROR_RATE": "0.1",
        "WF_PROCESSOR_FATAL_ERROR_RATE": "0.02",
        "WF_PROCESSOR_SLOW_RATE": "0.05",
        "WF_PROCESSOR_SLOW_S": "3",
    },
    "api": {"WF_AUTH": "off"},  # the probes read without a token
    "broadcaster": {"WF_AUTH": "off"},
    "notifier": {"WF_LINK_SECRET": "chaos", "WF_NOTIFY_RETRY_FIRST_S": "0.2", "WF_NOTIFY_RETRY_MAX_S": "1"},
}
NOTIFICATIONS_SETTLE_S = 60.0  # after the workflows ended: the last deliveries arrive
WORKFLOW_INPUT = {"step_timeout_s": 1.5}
RECOVERY_TIMEOUT_S = 60.0
CHECK_SETTLE_S = 20.0  # the read model may trail the log by a decision for a moment: check again until then
FOLLOWER_RECONNECT_S = 0.2
PROGRESS_EVERY_S = 2.0


@dataclass(frozen=True)
class ChaosPlan:
    workflows: int = 1000
    seed: int = SEED
    orchestrators: int = 2
    processors: int = 2
    start_per_s: float = 25.0  # workflows started each second: work is in flight all along
    reject_share: float = 0.2  # of the workflows, rejected once before being approved
    kill_between: tuple[float, float] = (0.1, 0.9)  # each kill comes at a random share of the time spent starting
    publish_at: float = 0.5  # a new version of the approval type is published at this share of the time spent starting
    deadline_s: float = 900.0
    sweep_interval_s: float = 0.5


@dataclass
class Kill:
    target: str  # an instance ("orchestrator-1", "api") or nats-server
    due_at_s: float  # since the first workflow was started
    killed_at_s: float | None = None
    ended_then: int | None = None
    healthy_after_s: float | None = None  # answers again: /healthz, or nats-server takes connections
    working_after_s: float | None = None  # does its work again (None: there was none left to do)
    live_after_s: float | None = None  # an event appended after the kill reached the WebSocket client


@dataclass
class ChaosResult:
    plan: dict
    started: int = 0
    finished: int = 0
    errored: int = 0
    lost: int = 0  # started - ended
    events: int = 0
    illegal: list[str] = field(default_factory=list)
    applied_twice: list[str] = field(default_factory=list)
    unanswered: list[str] = field(default_factory=list)
    read_model_mismatches: list[str] = field(default_factory=list)
    broken_chains: list[str] = field(default_factory=list)
    websocket_events: int = 0
    websocket_missing: int = 0
    websocket_duplicates: int = 0
    websocket_out_of_order: int = 0
    websocket_connections: int = 0
    # A webhook subscription to everything: what the log says it should be told (notifier/rules.py), against what
    # the catcher took (once per idempotency key); a key sent again after a kill is a repeat, not a loss.
    notifications_expected: int = 0
    notifications_delivered: int = 0
    notifications_lost: int = 0
    notifications_unexpected: int = 0
    notifications_repeated: int = 0
    kills: list[Kill] = field(default_factory=list)
    published_version: int | None = None  # the approval version published mid-run (None: it was not)
    on_version: dict[int, int] = field(default_factory=dict)  # how many workflows ran on each approval version
    total_s: float = 0.0

    @property
    def problems(self) -> list[str]:
        counts = {
            "lost": self.lost,
            "illegal": len(self.illegal),
            "applied twice": len(self.applied_twice),
            "unanswered": len(self.unanswered),
            "read-model mismatches": len(self.read_model_mismatches),
            "broken chains": len(self.broken_chains),
            "websocket missing": self.websocket_missing,
            "websocket duplicates": self.websocket_duplicates,
            "websocket out of order": self.websocket_out_of_order,
            "notifications lost": self.notifications_lost,
            "notifications unexpected": self.notifications_unexpected,
            "not killed": sum(kill.killed_at_s is None for kill in self.kills),
            "type version not published": self.published_version is None,
            "published version unused": self.published_version is not None
            and not self.on_version.get(self.published_version),
            "not recovered": sum(kill.killed_at_s is not None and kill.healthy_after_s is None for kill in self.kills),
        }
        return [f"{count} {what}" for what, count in counts.items() if count]

    @property
    def ok(self) -> bool:
        return not self.problems


class LogFollower:
    """A browser's view of the log: one WebSocket client of the broadcaster for the whole run, resuming with `since` =
    the last sequence it was sent whenever its connection drops. Every event must reach it once, in order."""

    def __init__(self, url: Callable[[], str]) -> None:
        self.url = url
        self.position = 0  # every event up to this sequence has been sent to it
        self.sequences: list[int] = []
        self.last_event = 0
        self.connections = 0
        self.connected_at = 0.0  # time.monotonic() of the current connection
        self.received_at = 0.0  # of the last event

    async def follow(self) -> None:
        while True:
            try:
                async with connect(f"{self.url()}?since={self.position}", open_timeout=2, max_queue=None) as socket:
                    self.connections += 1
                    self.connected_at = time.monotonic()
                    async for text in socket:
                        self._take(json.loads(text))
            except (OSError, TimeoutError, WebSocketException):
                pass  # the broadcaster is down, or restarting, or closed on us: resume from the position
            await asyncio.sleep(FOLLOWER_RECONNECT_S)

    def _take(self, message: dict) -> None:
        if message.get("type") != "heartbeat":
            self.sequences.append(message["sequence"])
            self.last_event, self.received_at = message["sequence"], time.monotonic()
        self.position = message["sequence"]

    def received_since(self, moment: float) -> bool:
        """An event came over a connection opened after `moment`."""
        return self.connected_at > moment and self.received_at > self.connected_at


class Chaos:
    """The run: the processes, the kills and their recoveries, the workflows."""

    def __init__(self, system: System, plan: ChaosPlan, catcher: WebhookCatcher, catcher_url: str) -> None:
        self.system, self.plan = system, plan
        self.catcher, self.catcher_url = catcher, catcher_url
        self.topology = new_topology("chaos")
        self.random = random.Random(plan.seed)
        self.instances: dict[str, Service] = {}
        self.follower = LogFollower(lambda: f"ws://127.0.0.1:{self.instances['broadcaster'].port}/ws")
        self.started_at = time.monotonic()
        self.all_ended = asyncio.Event()
        self.js: JetStreamContext | None = None
        self.client: Client | None = None
        self.events_seen = 0
        self.published: int | None = None

    def start(self, instance: str) -> Service:
        name, _, number = instance.partition("-")
        env = FAILURES[name] | {"WF_SEED": str(self.plan.seed)}
        self.instances[instance] = self.system.start_service(name, self.topology, int(number or 1), **env)
        return self.instances[instance]

    def plan_kills(self) -> list[Kill]:
        """Every instance and nats-server, each at a random moment while the workflows are being started."""
        starting_s = self.plan.workflows / self.plan.start_per_s
        low, high = self.plan.kill_between
        moments = {target: round(self.random.uniform(low, high) * starting_s, 1) for target in [*self.instances, NATS]}
        return sorted((Kill(target, due_at_s) for target, due_at_s in moments.items()), key=lambda kill: kill.due_at_s)

    def elapsed(self) -> float:
        return time.monotonic() - self.started_at

    async def events_stored(self) -> int | None:
        assert self.js is not None, "connected in run()"
        try:
            return (await self.js.stream_info(self.topology.events_stream)).state.last_seq
        except UNAVAILABLE:
            return None

    async def crash(self, kill: Kill, fleet: Fleet) -> None:
        """At its moment, kill -9 the target and start it again at once, then time its recovery. `events_then` is the
        log's end once the target is down: the events after it were appended after the kill."""
        await asyncio.sleep(kill.due_at_s - self.elapsed())
        kill.ended_then, kill.killed_at_s = len(fleet.ended), round(self.elapsed(), 2)
        killed_at = time.monotonic()
        say(f"{kill.killed_at_s:6.1f} s  kill -9 {kill.target} ({kill.ended_then} ended)")
        if kill.target == NATS:
            self.system.server.stop(kill=True)
            await asyncio.to_thread(self.system.server.start)  # it takes connections once this returns
            kill.healthy_after_s = round(time.monotonic() - killed_at, 2)
            await seconds_until(self.events_stored, killed_at)  # the driver's connection is back
            events_then = await self.events_stored() or self.events_seen
            working = self._appending_since(events_then)
        else:
            self.system.kill(self.instances[kill.target])
            events_then = await self.events_stored() or self.events_seen
            service = self.start(kill.target)
            kill.healthy_after_s = await seconds_until(self._healthy(service), killed_at)
            working = self._working(kill, service, killed_at)
        kill.working_after_s = await seconds_until(working, killed_at, unless=self.all_ended)
        # The starts go on after every kill: some event always comes after it.
        kill.live_after_s = await seconds_until(lambda: self.follower.last_event > events_then, killed_at)
        say(
            f"{self.elapsed():6.1f} s  {kill.target}: healthy after {kill.healthy_after_s} s, working after "
            f"{kill.working_after_s} s, events live on the WebSocket after {kill.live_after_s} s"
        )

    def _healthy(self, service: Service) -> Callable[[], Awaitable[bool]]:
        async def answers() -> bool:
            return await asyncio.to_thread(http_get, f"http://127.0.0.1:{service.port}/healthz") is not None

        return answers

    def _working(self, kill: Kill, service: Service, killed_at: float) -> Callable[[], bool | Awaitable[bool]]:
        """Orchestrator and processor: their /metrics count a command or job handled; api: it reads a workflow;
        broadcaster: the follower got an event from it."""
        name = kill.target.partition("-")[0]
        if name == "broadcaster":
            return lambda: self.follower.received_since(killed_at)
        paths = {"orchestrator": "/metrics", "processor": "/metrics", "notifier": "/metrics", "api": "/workflows/wf-0"}
        path = paths[name]
        counters = {
            "orchestrator": "wf_commands_total{",
            "processor": "wf_jobs_total{",
            "notifier": "wf_notifications_delivered_total{",
        }
        counter = counters.get(name)

        async def works() -> bool:
            body = await asyncio.to_thread(http_get, f"http://127.0.0.1:{service.port}{path}")
            return body is not None and (counter is None or _counted(body, counter) > 0)

        return works

    def _appending_since(self, events_then: int) -> Callable[[], Awaitable[bool]]:
        async def appending() -> bool:
            return (await self.events_stored() or 0) > events_then

        return appending

    async def after_sweep(self, fleet: Fleet, last_said: list[float]) -> None:
        """Say how far the run is, now and then."""
        self.events_seen = await self.events_stored() or self.events_seen
        if time.monotonic() - last_said[0] >= PROGRESS_EVERY_S:
            last_said[0] = time.monotonic()
            created = sum(state is not None for state in fleet.states.values())
            say(
                f"{self.elapsed():6.1f} s  {created} created, {len(fleet.ended)} ended (finished "
                f"{fleet.count('Finished')}, errored {fleet.count('Error')}), {self.events_seen} events, "
                f"WebSocket client at {self.follower.position}"
            )

    async def run(self) -> ChaosResult:
        result = ChaosResult(plan=asdict(self.plan))
        for name, count in (("orchestrator", self.plan.orchestrators), ("processor", self.plan.processors)):
            for number in range(1, count + 1):
                self.start(f"{name}-{number}")
        self.start("api")
        self.start("broadcaster")
        self.start("notifier")
        result.kills = self.plan_kills()
        say("kills planned (s after the first start): " + ", ".join(f"{k.target} {k.due_at_s}" for k in result.kills))
        async with connected(
            self.system.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2, error_cb=_connection_trouble
        ) as client:
            self.js, self.client = client.jetstream(timeout=5), client
            await ensure_topology(self.js, self.topology)
            await subscribe_to_everything(self.js, self.topology, self.catcher_url)
            following = asyncio.create_task(self.follower.follow())
            for service in self.instances.values():  # every process is up before anything is killed
                await wait_http_ok(f"http://127.0.0.1:{service.port}/healthz", service)
            await seconds_until(lambda: self.follower.connections > 0, time.monotonic())
            fleet = await self.drive(result.kills)
            say(f"{self.elapsed():6.1f} s  checking the log")
            report = await settled_check(self.js, self.topology, fleet.sent_commands)
            await seconds_until(lambda: self.follower.position >= report.events, time.monotonic())
            following.cancel()
            expected = await expected_notifications(self.js, self.topology, fleet.states)
            await seconds_until(lambda: expected <= self.notified(), time.monotonic(), timeout_s=NOTIFICATIONS_SETTLE_S)
        self.tally(result, fleet, report)
        result.notifications_expected, result.notifications_delivered = len(expected), len(self.catcher.taken)
        result.notifications_lost = len(expected - self.notified())
        result.notifications_unexpected = len(self.notified() - expected)
        result.notifications_repeated = self.catcher.repeats
        return result

    def notified(self) -> set[str]:
        return {json.loads(body)["notification"]["id"] for _, body in self.catcher.taken.values()}

    async def drive(self, kills: list[Kill]) -> Fleet:
        """Start the workflows at the plan's pace and drive them to an end, the kills coming at their moments."""
        plan = self.plan
        ids = [f"wf-{i}" for i in range(plan.workflows)]
        to_reject = self.random.sample(ids, round(plan.reject_share * plan.workflows))
        assert self.js is not None, "connected in run()"
        bucket = await self.js.key_value(self.topology.state_bucket)
        fleet = Fleet(self.js, bucket, self.topology, ids, plan.sweep_interval_s, to_reject, WORKFLOW_INPUT)
        say(f"starting {plan.workflows} workflows, {plan.start_per_s:g}/s ({len(to_reject)} to be rejected once)")
        self.started_at = time.monotonic()
        last_said = [self.started_at]
        starting = asyncio.create_task(fleet.start_all(plan.start_per_s))
        crashes = [asyncio.create_task(self.crash(kill, fleet)) for kill in kills]
        crashes.append(asyncio.create_task(self.publish_version()))
        try:
            await fleet.run_until(plan.workflows, plan.deadline_s, lambda _: self.after_sweep(fleet, last_said))
        except AssertionError as late:
            say(str(late)[:2000])  # the figures say how many were lost
        self.all_ended.set()
        await asyncio.gather(starting, *crashes)
        return fleet

    async def publish_version(self) -> None:
        """Mid-run, publish the approval type again with one more try for its step, as `wf types apply` would: the
        workflows started from then on run on it, the others finish on theirs."""
        await asyncio.sleep(self.plan.publish_at * self.plan.workflows / self.plan.start_per_s - self.elapsed())
        document = yaml.safe_load((SHIPPED_DOCUMENTS / "approval.yaml").read_text())
        document["states"]["Sending To Queue"]["retry"]["max_tries"] += 1
        request = ApplyType(definition=document, published_by="chaos").model_dump_json().encode()
        assert self.client is not None, "connected in run()"
        for _ in range(60):  # through the kills: an orchestrator answers again within seconds
            try:
                reply = await self.client.request(self.topology.types_apply_subject(), request, timeout=5)
            except (NatsError, TimeoutError):
                await asyncio.sleep(1)
                continue
            applied = TypeApplied.model_validate_json(reply.data)
            say(f"{self.elapsed():6.1f} s  approval version {applied.version}: {applied.outcome}")
            self.published = applied.version if applied.outcome == "published" else None
            return

    def tally(self, result: ChaosResult, fleet: Fleet, report: Report) -> None:
        result.started = sum(f"{wf}-create" in sent for wf, sent in fleet.sent.items())  # creates the broker stored
        result.finished, result.errored = fleet.count("Finished"), fleet.count("Error")
        result.lost = result.started - result.finished - result.errored
        result.events = report.events
        result.illegal, result.applied_twice = report.illegal, report.applied_twice
        result.unanswered, result.read_model_mismatches = report.unanswered, report.read_model_mismatches
        result.broken_chains = report.broken_chains
        result.published_version = self.published
        result.on_version = dict(Counter(state.type_version for state in fleet.states.values() if state))
        received = self.follower.sequences  # the log as checked, and any event a late job result appended since
        result.websocket_events, result.websocket_connections = len(received), self.follower.connections
        expected = range(1, max(self.follower.position, report.events) + 1)
        result.websocket_missing = len(set(expected) - set(received))
        result.websocket_duplicates = len(received) - len(set(received))
        result.websocket_out_of_order = sum(later <= earlier for earlier, later in itertools.pairwise(received))
        result.total_s = round(self.elapsed(), 1)


async def expected_notifications(js: JetStreamContext, topology, workflow_ids) -> set[str]:
    """Every notification the workflows' logs call for (services/notifier/rules.py), by id."""
    types = await js.key_value(topology.types_bucket)
    described: dict[tuple[str, int], WorkflowTypeInfo] = {}

    async def version(name: str, number: int) -> WorkflowTypeInfo:
        if (name, number) not in described:
            value = (await types.get(version_key(name, number))).value or b""
            described[name, number] = PublishedType.model_validate_json(value).info
        return described[name, number]

    expected: set[str] = set()
    for workflow_id in workflow_ids:
        log = await read_events(js, topology, workflow_id)
        if not log or not isinstance(created := log[0].event, WorkflowCreated):
            continue
        declared = await version(created.workflow_type, created.type_version)
        for recorded in log:
            if isinstance(recorded.event, WorkflowMigrated):
                declared = await version(created.workflow_type, recorded.event.to_version)
            expected |= {told.id for told in notifications_of(recorded, declared, created.input)}
    return expected


async def settled_check(js: JetStreamContext, topology, sent_commands) -> Report:
    """The checker's report once clean, or as it stands after CHECK_SETTLE_S."""
    deadline = time.monotonic() + CHECK_SETTLE_S
    while not (report := await check(js, topology, sent_commands)).ok and time.monotonic() < deadline:
        await asyncio.sleep(1.0)
    return report


async def seconds_until(
    probe: Callable[[], object | Awaitable[object]],
    since: float,
    unless: asyncio.Event | None = None,
    timeout_s: float = RECOVERY_TIMEOUT_S,
) -> float | None:
    """Seconds from `since` (a time.monotonic()) until `probe`, sync or async, holds; None if it did not within
    `timeout_s`, or `unless` was set first."""
    while time.monotonic() - since < timeout_s and not (unless and unless.is_set()):
        value = probe()
        if await value if asyncio.iscoroutine(value) else value:
            return round(time.monotonic() - since, 2)
        await asyncio.sleep(0.1)
    return None


async def _connection_trouble(error: Exception) -> None:
    say(f"{'':9}driver's NATS connection: {error!r}")  # expected while nats-server is down


def _counted(metrics: str, counter: str) -> float:
    """The sum of a Prometheus counter's series (lines `name{labels} value`)."""
    return sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines() if line.startswith(counter))


async def run_chaos(plan: ChaosPlan, out: Path, store_parent: Path | None = None) -> ChaosResult:
    """The whole run on a nats-server and services of its own, stopped on the way out; the figures also go to
    <out>/chaos.json."""
    out.mkdir(parents=True, exist_ok=True)
    system = System(out / "chaos-logs", store_parent).start()
    try:
        async with catching() as (catcher, url):
            result = await Chaos(system, plan, catcher, url).run()
    finally:
        await asyncio.to_thread(system.close)
    (out / "chaos.json").write_text(json.dumps(asdict(result) | {"ok": result.ok}, indent=2))
    return result


def report_lines(result: ChaosResult) -> list[str]:
    lines = [
        f"workflows started         {result.started}",
        f"  finished                {result.finished}",
        f"  errored                 {result.errored}  (output <= 0.25, retries spent, or a non-retryable error)",
        f"  lost                    {result.lost}",
        f"events in the log         {result.events}",
        f"illegal transitions       {len(result.illegal)}",
        f"commands applied twice    {len(result.applied_twice)}",
        f"commands unanswered       {len(result.unanswered)}",
        f"read-model mismatches     {len(result.read_model_mismatches)}",
        f"broken hash chains        {len(result.broken_chains)}",
        f"WebSocket client          {result.websocket_events} events over {result.websocket_connections} connections: "
        f"{result.websocket_missing} missing, {result.websocket_duplicates} twice, "
        f"{result.websocket_out_of_order} out of order",
        f"notifications (webhook)   {result.notifications_delivered} of {result.notifications_expected} the log asks "
        f"for: {result.notifications_lost} lost, {result.notifications_unexpected} unexpected, "
        f"{result.notifications_repeated} sent again under their key",
        f"approval version published mid-run: {result.published_version or 'none'}; workflows by version: "
        + ", ".join(f"v{version} {count}" for version, count in sorted(result.on_version.items())),
        "kill -9, started again at once             at   healthy after   working after   WebSocket live after",
    ]
    for kill in sorted(result.kills, key=lambda k: k.killed_at_s if k.killed_at_s is not None else float("inf")):
        at = f"{kill.killed_at_s:.1f} s" if kill.killed_at_s is not None else "never"
        healthy = f"{kill.healthy_after_s:.2f} s" if kill.healthy_after_s is not None else "not recovered"
        working = f"{kill.working_after_s:.2f} s" if kill.working_after_s is not None else "no work left"
        live = f"{kill.live_after_s:.2f} s" if kill.live_after_s is not None else "—"
        row = f"  {kill.target:<15} {kill.ended_then or 0:>5} ended".ljust(36)
        lines.append(f"{row}{at:>10}  {healthy:>14}  {working:>14}  {live:>21}")
    lines.append(f"total                     {result.total_s:.1f} s")
    lines.append("OK: nothing lost or broken" if result.ok else "FAILED: " + ", ".join(result.problems))
    for problem in (result.illegal + result.applied_twice + result.unanswered + result.read_model_mismatches)[:20]:
        lines.append(f"  {problem}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").partition("\n")[0])
    parser.add_argument("--workflows", type=int, default=ChaosPlan.workflows)
    parser.add_argument("--seed", type=int, default=SEED, help="of the failures, the kills and the rejections")
    parser.add_argument("--out", type=Path, default=Path("bench/results"), help="where chaos.json and the logs go")
    parser.add_argument("--store-dir", type=Path, help="where nats-server's temp store goes (default: the temp dir)")
    args = parser.parse_args()
    if args.workflows < 1:
        parser.error("--workflows must be at least 1")
    result = asyncio.run(run_chaos(ChaosPlan(workflows=args.workflows, seed=args.seed), args.out, args.store_dir))
    print()
    print("\n".join(report_lines(result)))
    print()
    say(f"wrote {args.out / 'chaos.json'}; the processes' logs are in {args.out / 'chaos-logs'}")
    sys.exit(0 if result.ok else 1)


if __name__ == "__main__":
    main()
