"""The event store: each workflow's log on its own subject of the events stream, and its snapshot in the read model.

Appends are optimistic: a decision is appended only if the log still ends where the decision's state ended,
all of its events at once (an atomic batch), or not at all."""

import uuid
from typing import Protocol

from nats.aio.client import Client
from nats.js.client import JetStreamContext
from nats.js.errors import BadRequestError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from contracts.eventlog import read_events
from contracts.events import Event, RecordedEvent
from contracts.state import WorkflowState
from contracts.topology import Topology
from services.orchestrator.domain.engine import fold

WRONG_LAST_SEQUENCE = 10071


class ConcurrencyConflict(Exception):
    """Another writer appended to the workflow after the state the decision was based on."""


class EventStore(Protocol):
    async def load(self, workflow_id: str) -> WorkflowState: ...

    async def append(self, state: WorkflowState, events: list[Event]) -> WorkflowState: ...

    async def save(self, state: WorkflowState) -> None: ...


class JetStreamEventStore:
    def __init__(self, nc: Client, js: JetStreamContext, kv: KeyValue, topology: Topology) -> None:
        self.nc, self.js, self.kv, self.topology = nc, js, kv, topology

    async def load(self, workflow_id: str) -> WorkflowState:
        """The snapshot, then only the events after it."""
        snapshot = await self._snapshot(workflow_id)
        state = snapshot[0] if snapshot else WorkflowState(id=workflow_id)
        return fold(state, await read_events(self.js, self.topology, workflow_id, after=state.last_sequence))

    async def append(self, state: WorkflowState, events: list[Event]) -> WorkflowState:
        if not events:
            return state
        subject = self.topology.events_subject(state.id)
        guard = {"Nats-Expected-Last-Subject-Sequence": str(state.last_sequence)}
        # One event is atomic by itself. Several go as one atomic batch, whose commit costs a disk sync (measured
        # ~3 ms here, against ~0.15 ms for a plain publish), so a single event is not wrapped in one.
        batch_id = uuid.uuid4().hex
        for number, event in enumerate(events[:-1], 1):
            headers = {"Nats-Batch-Id": batch_id, "Nats-Batch-Sequence": str(number)} | (guard if number == 1 else {})
            await self.nc.publish(subject, event.model_dump_json().encode(), headers=headers)
        commit = {"Nats-Batch-Id": batch_id, "Nats-Batch-Sequence": str(len(events)), "Nats-Batch-Commit": "1"}
        headers = commit if len(events) > 1 else guard
        try:
            ack = await self.js.publish(subject, events[-1].model_dump_json().encode(), headers=headers)
        except BadRequestError as error:
            if error.err_code == WRONG_LAST_SEQUENCE:
                raise ConcurrencyConflict(error.description) from error
            raise
        # A committed batch is stored contiguously, ending at the acked sequence.
        first = ack.seq - len(events) + 1
        return fold(state, [RecordedEvent(sequence=first + i, event=e) for i, e in enumerate(events)])

    async def save(self, state: WorkflowState) -> None:
        """Write the read model, never moving it backwards when writers race (compare-and-set on the revision)."""
        if not state.exists:
            return
        data = state.model_dump_json().encode()
        while True:
            snapshot = await self._snapshot(state.id)
            try:
                if snapshot is None:
                    await self.kv.create(state.id, data)
                elif snapshot[0].last_sequence < state.last_sequence:
                    await self.kv.update(state.id, data, last=snapshot[1])
                return
            except KeyWrongLastSequenceError:
                continue

    async def _snapshot(self, workflow_id: str) -> tuple[WorkflowState, int] | None:
        try:
            entry = await self.kv.get(workflow_id)
        except KeyNotFoundError:
            return None
        return WorkflowState.model_validate_json(entry.value), entry.revision


class InMemoryEventStore:
    """The same contract in memory, for tests of the orchestrator's logic without a broker."""

    def __init__(self) -> None:
        self.logs: dict[str, list[RecordedEvent]] = {}
        self.snapshots: dict[str, WorkflowState] = {}
        self.sequence = 0

    async def load(self, workflow_id: str) -> WorkflowState:
        state = self.snapshots.get(workflow_id, WorkflowState(id=workflow_id))
        return fold(state, [r for r in self.logs.get(workflow_id, []) if r.sequence > state.last_sequence])

    async def append(self, state: WorkflowState, events: list[Event]) -> WorkflowState:
        log = self.logs.setdefault(state.id, [])
        if (log[-1].sequence if log else 0) != state.last_sequence:
            raise ConcurrencyConflict(f"wrong last sequence: {log[-1].sequence}")
        recorded = []
        for event in events:
            self.sequence += 1
            recorded.append(RecordedEvent(sequence=self.sequence, event=event))
        log.extend(recorded)
        return fold(state, recorded)

    async def save(self, state: WorkflowState) -> None:
        current = self.snapshots.get(state.id)
        if state.exists and (current is None or current.last_sequence < state.last_sequence):
            self.snapshots[state.id] = state
