"""The event store: each workflow's log on its own subject of the events stream, and its snapshot in the read model.

Appends are optimistic: a decision is appended only if the log still ends where the decision's state ended,
all of its events at once (an atomic batch), or not at all. Each event is linked into the log's hash chain as it is
appended (contracts/chain.py)."""

import asyncio
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Protocol

from nats.aio.client import Client
from nats.js.client import JetStreamContext
from nats.js.errors import BadRequestError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from contracts.chain import anchor, digest
from contracts.events import Event, RecordedEvent
from contracts.state import WorkflowState
from contracts.topology import Topology
from runtime.eventlog import last_sequence, read_events, recorded_event
from services.orchestrator.domain.engine import Decision, Engine
from services.orchestrator.domain.types import SHIPPED

WRONG_LAST_SEQUENCE = 10071
# Another writer shows itself by a conflict: after one, loads read the log's end again for this long.
CHECK_THE_LOG_AFTER_CONFLICT_S = 60.0


class ConcurrencyConflict(Exception):
    """Another writer appended to the workflow after the state the decision was based on."""


class EventStore(Protocol):
    async def load(self, workflow_id: str) -> WorkflowState: ...

    async def append(self, decision: Decision) -> WorkflowState: ...

    async def save(self, state: WorkflowState) -> None: ...


class JetStreamEventStore:
    def __init__(
        self,
        nc: Client,
        js: JetStreamContext,
        kv: KeyValue,
        topology: Topology,
        on_batch_commit: Callable[[], None] = lambda: None,
        engine: Engine = SHIPPED,
    ) -> None:
        self.nc, self.js, self.kv, self.topology, self.engine = nc, js, kv, topology, engine
        self.batches = SharedBatches(nc, js, on_batch_commit)
        self.snapshots = RecentSnapshots()
        self.conflict_seen_at = float("-inf")  # (monotonic)

    async def load(self, workflow_id: str) -> WorkflowState:
        """The snapshot (this process's last one if it has it), then only the events after it.

        A state this process saved is the log's end unless another writer appended since. While no other writer has
        shown itself, it is taken as is, and nothing is read: were it stale after all, the append's guard refuses
        the decision (a conflict), and loads check the log's end again for a while."""
        remembered = self.snapshots.get(workflow_id)
        if remembered and remembered.is_log_end and not self._other_writer_seen_lately():
            return remembered.state
        state = remembered.state if remembered else await self._stored_state(workflow_id)
        return self.engine.fold(
            state, await read_events(self.js, self.topology, workflow_id, after=state.last_sequence)
        )

    async def append(self, decision: Decision) -> WorkflowState:
        """The decision's events, after the sequence it was based on, all or none; the state they make."""
        state, events = decision.state, decision.events
        if not events:
            # Nothing to append, yet "nothing to do" (a timer no longer owed) holds only on the log's end: checked
            # as an append's guard would be, or a timer owed since would be dropped on a state that missed it.
            if (last := await last_sequence(self.js, self.topology, state.id)) != state.last_sequence:
                self.conflict_seen_at = time.monotonic()
                raise ConcurrencyConflict(f"wrong last sequence: {last}")
            return state
        subject = self.topology.events_subject(state.id)
        payloads = linked(events, state.bookkeeping.chain_head or await self._head_of_unchained_log(state))
        try:
            if len(payloads) == 1:
                # One event is atomic by itself, and a plain publish costs no disk sync.
                first = await self._publish(subject, payloads[0], _guard(state.last_sequence))
            else:
                first = await self.batches.append(subject, state.last_sequence, payloads)
        except ConcurrencyConflict:
            self.conflict_seen_at = time.monotonic()
            raise
        self.snapshots.fell_behind_the_log(state.id)  # until the state appended now is saved
        return decision.recorded(first + len(events) - 1, digest(payloads[-1]))  # stored contiguously

    async def save(self, state: WorkflowState) -> None:
        """Write the read model, never moving it backwards when writers race (compare-and-set on the revision). The
        state saved is the log's end: what the last append or load left."""
        if not state.exists:
            return
        data = state.model_dump_json().encode()
        known = self.snapshots.get(state.id)
        while True:
            try:
                if known is None:
                    revision = await self.kv.create(state.id, data)
                elif known.state.last_sequence < state.last_sequence:
                    revision = await self.kv.update(state.id, data, last=known.revision)
                else:
                    return
                self.snapshots.put(state.id, Snapshot(state, revision, is_log_end=True))
                return
            except KeyWrongLastSequenceError:
                known = await self._stored_snapshot(state.id)  # another writer saved meanwhile: compare with theirs

    async def _head_of_unchained_log(self, state: WorkflowState) -> str:
        """What the next event links to when the state does not know it: the anchor of an empty log, or the hash of
        the last event of a log whose snapshot was saved before events were chained."""
        if state.last_sequence == 0:
            return anchor(state.id)
        message = await self.js.get_msg(self.topology.events_stream, seq=state.last_sequence, direct=True)
        assert message.data is not None  # a stored event has its bytes; nats-py types them optional
        return digest(message.data)

    def _other_writer_seen_lately(self) -> bool:
        return time.monotonic() - self.conflict_seen_at < CHECK_THE_LOG_AFTER_CONFLICT_S

    async def _stored_state(self, workflow_id: str) -> WorkflowState:
        known = await self._stored_snapshot(workflow_id)
        return known.state if known else WorkflowState(id=workflow_id)

    async def _stored_snapshot(self, workflow_id: str) -> "Snapshot | None":
        try:
            entry = await self.kv.get(workflow_id)
        except KeyNotFoundError:
            self.snapshots.forget(workflow_id)
            return None
        assert entry.value is not None and entry.revision is not None  # a get's entry has both; nats-py: optional
        snapshot = Snapshot(WorkflowState.model_validate_json(entry.value), entry.revision, is_log_end=False)
        self.snapshots.put(workflow_id, snapshot)
        return snapshot

    async def _publish(self, subject: str, payload: bytes, headers: dict[str, str]) -> int:
        try:
            return (await self.js.publish(subject, payload, headers=headers)).seq
        except BadRequestError as error:
            raise _conflict_or(error) from error


@dataclass(frozen=True)
class Snapshot:
    state: WorkflowState
    revision: int  # of its read-model entry: the next save compares and sets against it
    is_log_end: bool  # saved here after an append or a read of the log; else read from the read model, which may lag


class RecentSnapshots:
    """The snapshots this process saved or read last, so a workflow's next command skips reading the read model. At
    most `size` of them: memory stays flat however many workflows wait. One that another replica has overtaken is
    still a correct start: load folds the events after it, and save then finds the revision moved and reads again."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self.entries: OrderedDict[str, Snapshot] = OrderedDict()

    def get(self, workflow_id: str) -> Snapshot | None:
        if (snapshot := self.entries.get(workflow_id)) is not None:
            self.entries.move_to_end(workflow_id)
        return snapshot

    def put(self, workflow_id: str, snapshot: Snapshot) -> None:
        self.entries[workflow_id] = snapshot
        self.entries.move_to_end(workflow_id)
        while len(self.entries) > self.size:
            self.entries.popitem(last=False)

    def fell_behind_the_log(self, workflow_id: str) -> None:
        if (snapshot := self.entries.get(workflow_id)) is not None and snapshot.is_log_end:
            self.entries[workflow_id] = replace(snapshot, is_log_end=False)

    def forget(self, workflow_id: str) -> None:
        self.entries.pop(workflow_id, None)


@dataclass
class _Append:
    subject: str
    after: int  # the subject's last sequence the decision was based on
    payloads: list[bytes]
    stored_at: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class SharedBatches:
    """Multi-event appends that arrive while a commit is in flight wait, and go together in the next atomic batch.
    The broker syncs the disk once per batch commit (~3 ms here, the same for 2 messages as for 500), so one sync
    then serves many decisions. Each keeps its own guard on its own subject: if any guard fails the broker stores
    none of the batch, and each append is then committed alone to learn which one conflicted."""

    MAX_MESSAGES = 500  # of a batch; the broker allows 1 000

    def __init__(self, nc: Client, js: JetStreamContext, on_commit: Callable[[], None] = lambda: None) -> None:
        self.nc, self.js, self.on_commit = nc, js, on_commit  # on_commit: once per batch sent to be committed
        self.waiting: deque[_Append] = deque()
        self.committer: asyncio.Task | None = None

    async def append(self, subject: str, after: int, payloads: list[bytes]) -> int:
        """Stores the payloads contiguously, after `after` on their subject; returns the first one's sequence."""
        pending = _Append(subject, after, payloads)
        self.waiting.append(pending)
        if self.committer is None or self.committer.done():
            self.committer = asyncio.create_task(self._commit_while_waiting())
        return await pending.stored_at

    async def _commit_while_waiting(self) -> None:
        while self.waiting:
            group = [self.waiting.popleft()]
            size = len(group[0].payloads)
            while self.waiting and size + len(self.waiting[0].payloads) <= self.MAX_MESSAGES:
                size += len(self.waiting[0].payloads)
                group.append(self.waiting.popleft())
            await self._commit(group)

    async def _commit(self, group: list[_Append]) -> None:
        try:
            last = await self._publish_batch(group)
        except ConcurrencyConflict as conflict:
            if len(group) == 1:
                _settle(group[0], error=conflict)
            else:
                for pending in group:
                    await self._commit([pending])
            return
        except Exception as error:  # every waiting decision learns of it
            for pending in group:
                _settle(pending, error=error)
            return
        first = last - sum(len(pending.payloads) for pending in group) + 1  # a batch is stored contiguously
        for pending in group:
            _settle(pending, first=first)
            first += len(pending.payloads)

    async def _publish_batch(self, group: list[_Append]) -> int:
        batch_id = uuid.uuid4().hex
        self.on_commit()
        messages = [
            (pending.subject, payload, _guard(pending.after) if index == 0 else {})
            for pending in group
            for index, payload in enumerate(pending.payloads)
        ]
        for number, (subject, payload, guard) in enumerate(messages[:-1], 1):
            batch = {"Nats-Batch-Id": batch_id, "Nats-Batch-Sequence": str(number)}
            await self.nc.publish(subject, payload, headers=batch | guard)
        subject, payload, guard = messages[-1]
        commit = {"Nats-Batch-Id": batch_id, "Nats-Batch-Sequence": str(len(messages)), "Nats-Batch-Commit": "1"}
        try:
            return (await self.js.publish(subject, payload, headers=commit | guard)).seq
        except BadRequestError as error:
            raise _conflict_or(error) from error


def linked(events: list[Event], head: str) -> list[bytes]:
    """The events as they are stored, each carrying the hash of the one before it, the first `head`'s."""
    payloads = []
    for event in events:
        payloads.append(event.model_copy(update={"previous_hash": head}).model_dump_json().encode())
        head = digest(payloads[-1])
    return payloads


def _settle(pending: _Append, first: int | None = None, error: BaseException | None = None) -> None:
    if pending.stored_at.done():  # its decision was cancelled meanwhile (shutting down)
        return
    if error is not None:
        pending.stored_at.set_exception(error)
    else:
        pending.stored_at.set_result(first)


def _guard(after: int) -> dict[str, str]:
    return {"Nats-Expected-Last-Subject-Sequence": str(after)}


def _conflict_or(error: BadRequestError) -> Exception:
    if error.err_code == WRONG_LAST_SEQUENCE:
        return ConcurrencyConflict(error.description)
    return error


class InMemoryEventStore:
    """The same contract in memory, for tests of the orchestrator's logic without a broker."""

    def __init__(self, engine: Engine = SHIPPED) -> None:
        self.engine = engine
        self.logs: dict[str, list[RecordedEvent]] = {}
        self.stored: dict[int, bytes] = {}  # each event's bytes, by sequence, as the log stores them
        self.snapshots: dict[str, WorkflowState] = {}
        self.sequence = 0

    async def load(self, workflow_id: str) -> WorkflowState:
        state = self.snapshots.get(workflow_id, WorkflowState(id=workflow_id))
        return self.engine.fold(state, [r for r in self.logs.get(workflow_id, []) if r.sequence > state.last_sequence])

    async def append(self, decision: Decision) -> WorkflowState:
        state = decision.state
        log = self.logs.setdefault(state.id, [])
        if (log[-1].sequence if log else 0) != state.last_sequence:
            raise ConcurrencyConflict(f"wrong last sequence: {log[-1].sequence}")
        if not decision.events:
            return state
        head = log[-1].digest if log else anchor(state.id)
        assert head is not None  # each event here was recorded from its stored bytes, so has its digest
        for payload in linked(decision.events, head):
            self.sequence += 1
            self.stored[self.sequence] = payload
            log.append(recorded_event(self.sequence, payload))
            head = digest(payload)
        return decision.recorded(self.sequence, head)

    async def save(self, state: WorkflowState) -> None:
        current = self.snapshots.get(state.id)
        if state.exists and (current is None or current.last_sequence < state.last_sequence):
            self.snapshots[state.id] = state
