"""5. What loading a workflow's state costs as its log grows.

A history is built fast by appending directly: a created and started workflow, then rejected commands (events that
change nothing but the log's length) with `publish_async`, and the folded state saved as its snapshot with the
store's `save`. Then it is loaded the way the orchestrator does (`JetStreamEventStore.load`: the snapshot plus the
events after it) and by a full replay of the log (`runtime.eventlog.read_events` from the start, then the fold)."""

import statistics
import time
from dataclasses import dataclass

from nats.aio.client import Client

from bench.system import drop_topology, new_topology, say
from contracts.chain import digest
from contracts.events import CommandRejected, RecordedEvent, WorkflowCreated, WorkflowStarted
from contracts.state import WorkflowState
from contracts.topology import Topology
from runtime.eventlog import read_events
from runtime.streams import ensure_topology
from services.orchestrator.domain.types import SHIPPED
from services.orchestrator.store import JetStreamEventStore

SNAPSHOT_LOADS = 20


@dataclass
class LoadCost:
    events: int
    snapshot_ms: float  # median of SNAPSHOT_LOADS loads, snapshot + the events after it
    replay_ms: float  # a full replay: every event read from the stream, then folded
    replay_runs: int
    build_s: float
    snapshot_bytes: int


async def build_history(client: Client, store: JetStreamEventStore, topology: Topology, length: int) -> WorkflowState:
    js, workflow_id = client.jetstream(), f"h{length}"
    origin = f"{workflow_id}-create"
    opening = [
        WorkflowCreated(
            message_id=f"{origin}-1", workflow_id=workflow_id, causation_id=origin, workflow_type="approval"
        ),
        WorkflowStarted(message_id=f"{origin}-2", workflow_id=workflow_id, causation_id=origin),
    ]
    state = await store.append(SHIPPED.decision(WorkflowState(id=workflow_id), opening))
    # All rejections are of one command delivered again and again: the log grows, the state's list of applied
    # commands does not (a distinct command per event would grow the snapshot too: see the README).
    rejected = CommandRejected(
        message_id=f"{workflow_id}-again-1",
        workflow_id=workflow_id,
        causation_id=f"{workflow_id}-again",
        command_id=f"{workflow_id}-again",
        command_kind="approve",
        code="not_allowed",
        reason="cannot approve a workflow in state 'Unprocessed' (allowed now: process)",
    )
    payload, subject = rejected.model_dump_json().encode(), topology.events_subject(workflow_id)
    futures = [await js.publish_async(subject, payload) for _ in range(length - len(opening))]
    await js.publish_async_completed()
    appended = [
        RecordedEvent(sequence=future.result().seq, event=rejected, digest=digest(payload)) for future in futures
    ]
    state = SHIPPED.fold(state, appended)
    await store.save(state)
    return state


async def timed(call, runs: int) -> float:
    """The median duration of `runs` calls, in ms."""
    durations = []
    for _ in range(runs):
        start = time.perf_counter()
        await call()
        durations.append(time.perf_counter() - start)
    return statistics.median(durations) * 1000


async def measure(client: Client, lengths: list[int]) -> list[LoadCost]:
    js, topology = client.jetstream(), new_topology("hist")
    await ensure_topology(js, topology)
    store = JetStreamEventStore(client, js, await js.key_value(topology.state_bucket), topology)
    results = []
    try:
        for length in lengths:
            started = time.perf_counter()
            built = await build_history(client, store, topology, length)
            build_s = time.perf_counter() - started

            async def from_snapshot() -> None:
                # A store of its own each time: the snapshot read from the read model (an orchestrator that has not
                # seen this workflow lately), not the one the building store remembers.
                cold = JetStreamEventStore(client, js, store.kv, topology)
                assert (await cold.load(built.id)) == built

            async def full_replay() -> None:
                assert SHIPPED.fold(WorkflowState(id=built.id), await read_events(js, topology, built.id)) == built

            snapshot_ms = await timed(from_snapshot, SNAPSHOT_LOADS)
            replay_runs = 3 if length <= 1_000 else 1
            replay_ms = await timed(full_replay, replay_runs)
            size = len(built.model_dump_json())
            say(
                f"state load: {length:>7,} events: snapshot {snapshot_ms:8.2f} ms, full replay {replay_ms:10.1f} ms "
                f"(built in {build_s:.1f} s; snapshot {size:,} B)"
            )
            results.append(LoadCost(length, snapshot_ms, replay_ms, replay_runs, build_s, size))
    finally:
        await drop_topology(js, topology)
    return results
