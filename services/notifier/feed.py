"""The notifier's intake: the event log (a durable consumer, in order) and the reminders the broker fires.

Each event is acked once what it tells (rules.py) is queued as deliveries, one per matching subscription, on the
deliveries stream, each with a message id made of its idempotency key: an event handled again (the notifier died
before its ack) queues nothing twice within the broker's duplicate window, and beyond it, the same key again."""

import asyncio
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.client import JetStreamContext
from nats.js.errors import KeyNotFoundError
from pydantic import ValidationError

from contracts.definitions import PublishedType, version_key
from contracts.events import EVENT, Event, RecordedEvent, WorkflowCreated, WorkflowMigrated
from contracts.notifications import Delivery, Notification, Subscription
from contracts.state import WorkflowState
from contracts.topology import Topology
from contracts.types import WorkflowTypeInfo
from runtime.eventlog import current_entries, left_since
from services.notifier.metrics import NotifierMetrics
from services.notifier.rules import matches, notifications_of, reminded, reminder_of

log = logging.getLogger("notifier")

BATCH = 100
FETCH_WAIT_S = 1.0
RETRY_S = 1.0
SUBSCRIPTIONS_REFRESH_S = 1.0
WORKFLOW_TYPES_KEPT = 100_000  # workflow id -> its type version, for the events that do not say it
NAME_KEPT = 200  # the longest input text kept: a name a wait may be for


@asynccontextmanager
async def pulling(js: JetStreamContext, durable: str, stream: str) -> AsyncIterator[JetStreamContext.PullSubscription]:
    """A pull subscription on a durable consumer, unsubscribed when left (else the connection's drain waits on it)."""
    pull = await js.pull_subscribe_bind(durable, stream=stream)
    try:
        yield pull
    finally:
        try:
            await pull.unsubscribe()
        except NatsError:  # gone with the connection
            pass


async def fetched(pull: JetStreamContext.PullSubscription, batch: int) -> list[Msg]:
    """What the consumer hands out within FETCH_WAIT_S: none when nothing came."""
    try:
        return await pull.fetch(batch, timeout=FETCH_WAIT_S)
    except (NatsTimeoutError, TimeoutError):  # (nats-py raises either when nothing came)
        return []


class Subscriptions:
    """The subscriptions as the bucket holds them, read again every second."""

    def __init__(self, js: JetStreamContext, topology: Topology) -> None:
        self.js, self.topology = js, topology
        self.by_id: dict[str, Subscription] = {}
        self.loaded = asyncio.Event()

    async def run(self) -> None:
        while True:
            try:
                entries = await current_entries(self.js, self.topology, self.topology.subscriptions_bucket)
                self.by_id = {key: Subscription.model_validate_json(value) for key, value in entries.items()}
                self.loaded.set()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the next round tries again
                log.warning("could not read the subscriptions: %s", error)
            await asyncio.sleep(SUBSCRIPTIONS_REFRESH_S)

    def matching(self, notification: Notification) -> list[Subscription]:
        return [subscription for subscription in self.by_id.values() if matches(subscription, notification)]


@dataclass(frozen=True)
class Instance:
    """What the notifier keeps of a workflow: its type's name and version, and the text fields of its input (a wait
    may be for the person one of them names)."""

    type_name: str
    version: int
    named: dict[str, str]

    @classmethod
    def of(cls, type_name: str, version: int, given: dict[str, Any]) -> "Instance":
        named = {key: value for key, value in given.items() if isinstance(value, str) and len(value) <= NAME_KEPT}
        return cls(type_name, version, named)


class Types:
    """Each type version's description (from the types bucket), and which type version each workflow runs on."""

    def __init__(self, js: JetStreamContext, topology: Topology) -> None:
        self.js, self.topology = js, topology
        self.described: dict[tuple[str, int], WorkflowTypeInfo] = {}  # versions never change: kept for good
        self.of_workflow: OrderedDict[str, Instance] = OrderedDict()

    def saw(self, workflow_id: str, instance: Instance) -> None:
        self.of_workflow[workflow_id] = instance
        self.of_workflow.move_to_end(workflow_id)
        if len(self.of_workflow) > WORKFLOW_TYPES_KEPT:
            self.of_workflow.popitem(last=False)

    def saw_event(self, event: Event) -> None:
        if isinstance(event, WorkflowCreated):
            self.saw(event.workflow_id, Instance.of(event.workflow_type, event.type_version, event.input))
        elif isinstance(event, WorkflowMigrated) and (known := self.of_workflow.get(event.workflow_id)):
            self.saw(event.workflow_id, replace(known, version=event.to_version))

    async def of(self, workflow_id: str) -> tuple[WorkflowTypeInfo, Instance] | None:
        instance = self.of_workflow.get(workflow_id) or await self._in_read_model(workflow_id)
        if instance is None or (info := await self.described_as(instance.type_name, instance.version)) is None:
            return None
        return info, instance

    async def described_as(self, name: str, version: int) -> WorkflowTypeInfo | None:
        if kept := self.described.get((name, version)):
            return kept
        try:
            entry = await (await self.js.key_value(self.topology.types_bucket)).get(version_key(name, version))
        except KeyNotFoundError:
            return None
        assert entry.value is not None  # a get's entry has its value; nats-py types it optional
        info = PublishedType.model_validate_json(entry.value).info
        self.described[name, version] = info
        return info

    async def _in_read_model(self, workflow_id: str) -> Instance | None:
        try:
            entry = await (await self.js.key_value(self.topology.state_bucket)).get(workflow_id)
        except KeyNotFoundError:
            return None
        assert entry.value is not None
        state = WorkflowState.model_validate_json(entry.value)
        if not state.type:
            return None
        instance = Instance.of(state.type, state.type_version, state.context.get("input", {}))
        self.saw(workflow_id, instance)
        return instance


class Outbox:
    """Queues deliveries and schedules reminders, each idempotently."""

    def __init__(
        self, js: JetStreamContext, topology: Topology, subscriptions: Subscriptions, metrics: NotifierMetrics
    ) -> None:
        self.js, self.topology, self.subscriptions, self.metrics = js, topology, subscriptions, metrics

    async def deliver(self, notification: Notification) -> None:
        for subscription in self.subscriptions.matching(notification):
            delivery = Delivery(subscription_id=subscription.id, notification=notification)
            await self.js.publish(
                self.topology.deliveries_subject(subscription.id),
                delivery.model_dump_json().encode(),
                headers={"Nats-Msg-Id": delivery.idempotency_key},
            )
            self.metrics.queued.labels(kind=notification.kind).inc()

    async def schedule(self, waiting: Notification, due_at: datetime) -> None:
        """A wait's reminder: its notification, which the broker publishes to the reminders subject at `due_at`."""
        due = due_at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        headers = {
            "Nats-Msg-Id": f"{waiting.workflow_id}.{waiting.entered_sequence}.remind",
            "Nats-Schedule": f"@at {due}",
            "Nats-Schedule-Target": self.topology.reminders_subject(waiting.workflow_id),
        }
        subject = self.topology.reminder_schedule_subject(waiting.workflow_id, waiting.entered_sequence)
        await self.js.publish(subject, waiting.model_dump_json().encode(), headers=headers)


class EventFeed:
    """Follows the log through the notifier's durable consumer, one batch at a time, in order."""

    def __init__(self, js: JetStreamContext, topology: Topology, types: Types, outbox: Outbox) -> None:
        self.js, self.topology, self.types, self.outbox = js, topology, types, outbox

    async def run(self) -> None:
        await self.outbox.subscriptions.loaded.wait()  # else what it handled first would match no one
        while True:
            try:
                await self._follow()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("following the log stopped; reading on from the consumer's place")
                await asyncio.sleep(RETRY_S)

    async def _follow(self) -> None:
        durable, stream = self.topology.notifier_consumer().durable_name or "", self.topology.events_stream
        async with pulling(self.js, durable, stream) as pull:
            while True:
                await self._handle_all(await fetched(pull, BATCH))

    async def _handle_all(self, messages: list[Msg]) -> None:
        for index, message in enumerate(messages):
            try:
                await self.handle(message.metadata.sequence.stream, message.data)
            except Exception:
                # Later events of the batch wait for this one: given back in order, tried again.
                for unhandled in messages[index:]:
                    await unhandled.nak(delay=RETRY_S)
                raise
            await message.ack()

    async def handle(self, sequence: int, data: bytes) -> None:
        try:
            recorded = RecordedEvent(sequence=sequence, event=EVENT.validate_json(data))  # (no hash: not needed)
        except ValidationError as error:  # never written by the orchestrator: nothing to tell
            log.error("event %d of the log is unreadable, told no one: %s", sequence, error)
            return
        event = recorded.event
        self.types.saw_event(event)
        if (known := await self.types.of(event.workflow_id)) is None:
            return
        declared, instance = known
        told = notifications_of(recorded, declared, instance.named)
        for notification in told:
            await self.outbox.deliver(notification)
        if reminder := reminder_of(recorded, told):
            await self.outbox.schedule(*reminder)


class ReminderFeed:
    """Takes the reminders the broker fires; one whose workflow has left the state since tells no one."""

    def __init__(self, js: JetStreamContext, topology: Topology, types: Types, outbox: Outbox) -> None:
        self.js, self.topology, self.types, self.outbox = js, topology, types, outbox

    async def run(self) -> None:
        durable, stream = self.topology.reminders_consumer().durable_name or "", self.topology.notify_stream
        await self.outbox.subscriptions.loaded.wait()
        while True:
            try:
                async with pulling(self.js, durable, stream) as pull:
                    while True:
                        for message in await fetched(pull, BATCH):
                            await self.handle(message.data)
                            await message.ack()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("taking reminders stopped; starting again")
                await asyncio.sleep(RETRY_S)

    async def handle(self, data: bytes) -> None:
        try:
            waiting = Notification.model_validate_json(data)
        except ValidationError as error:
            log.error("an unreadable reminder, dropped: %s", error)
            return
        if await left_since(self.js, self.topology, waiting.workflow_id, waiting.entered_sequence):
            return
        known = await self.types.of(waiting.workflow_id)
        title = known[0].title if known else waiting.workflow_type
        await self.outbox.deliver(reminded(waiting, title, datetime.now(UTC)))
