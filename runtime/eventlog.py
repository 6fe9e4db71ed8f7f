"""How a workflow's log is read: the events on its subject, in stream order, with their sequences; and how a
bucket's current entries are read whole."""

from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.client import JetStreamContext
from nats.js.errors import NotFoundError
from nats.js.kv import KV_DEL, KV_OP, KV_PURGE

from contracts.chain import digest
from contracts.events import (
    EVENT,
    RecordedEvent,
    TransitionTaken,
    WorkflowCancelled,
    WorkflowRetried,
    WorkflowTerminated,
)
from contracts.topology import Topology

SCAN_BATCH = 500


async def last_sequence(js: JetStreamContext, topology: Topology, workflow_id: str) -> int:
    """The stream sequence of the workflow's last event; 0 when it has none."""
    try:
        message = await js.get_last_msg(topology.events_stream, topology.events_subject(workflow_id), direct=True)
    except NotFoundError:
        return 0
    assert message.seq is not None  # a stored message has one; nats-py types it optional
    return message.seq


async def read_events(
    js: JetStreamContext, topology: Topology, workflow_id: str, after: int = 0, limit: int | None = None
) -> list[RecordedEvent]:
    """The workflow's events with a sequence above `after`, oldest first (at most `limit` of them)."""
    return [recorded_event(*stored) for stored in await read_stored(js, topology, workflow_id, after, limit)]


async def read_stored(
    js: JetStreamContext, topology: Topology, workflow_id: str, after: int = 0, limit: int | None = None
) -> list[tuple[int, bytes]]:
    """The same as stored: (sequence, the event's bytes), what its hash chain is made of."""
    subject, stream = topology.events_subject(workflow_id), topology.events_stream
    last = await last_sequence(js, topology, workflow_id)
    stored: list[tuple[int, bytes]] = []
    cursor = after + 1
    while cursor <= last and (limit is None or len(stored) < limit):
        message = await js.get_msg(stream, seq=cursor, subject=subject, next=True, direct=True)
        assert message.seq is not None and message.data is not None  # (as above)
        stored.append((message.seq, message.data))
        cursor = message.seq + 1
    return stored


# What takes a workflow out of the state it is in: a waiting state's decision links and reminders are void after one.
LEAVES_THE_STATE = (TransitionTaken, WorkflowRetried, WorkflowCancelled, WorkflowTerminated)


async def left_since(js: JetStreamContext, topology: Topology, workflow_id: str, entered_sequence: int) -> bool:
    """Whether the workflow has left the state that its event at `entered_sequence` entered."""
    after = await read_events(js, topology, workflow_id, after=entered_sequence)
    return any(isinstance(recorded.event, LEAVES_THE_STATE) for recorded in after)


def recorded_event(sequence: int, data: bytes) -> RecordedEvent:
    """An event as read from the log, with the hash of its stored bytes: what the next event's link names."""
    return RecordedEvent(sequence=sequence, event=EVENT.validate_json(data), digest=digest(data))


async def current_entries(js: JetStreamContext, topology: Topology, bucket: str) -> dict[str, bytes]:
    """Every live key of a bucket with its current value, read through a short-lived pull consumer (the last entry
    per key), which delivers nothing before asked, so the count it starts with is exact. (nats-py's `kv.keys()` can
    answer "no keys" when its watcher's end marker overtakes the values, as it did on a busy machine.)"""
    config = ConsumerConfig(
        deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
        ack_policy=AckPolicy.NONE,
        mem_storage=True,
        num_replicas=1,
        inactive_threshold=60.0,
    )
    subscription = await js.pull_subscribe(
        topology.kv_subjects(bucket), stream=topology.kv_stream(bucket), config=config
    )
    entries: dict[str, bytes] = {}
    try:
        pending = (await subscription.consumer_info()).num_pending
        while pending:
            for message in await subscription.fetch(min(SCAN_BATCH, pending), timeout=5):
                pending = message.metadata.num_pending
                key = message.subject.split(".", 2)[2]
                if (message.headers or {}).get(KV_OP) in (KV_DEL, KV_PURGE):
                    entries.pop(key, None)
                else:
                    entries[key] = message.data
    finally:
        await subscription.unsubscribe()
    return entries
