"""The notifier's intake: the event log (a durable consumer, in order) and the reminders the broker fires.

Each event is acked once what it tells (rules.py) is queued as deliveries, one per matching subscription, on the
deliveries stream, each with a message id made of its idempotency key: an event handled again (the notifier died
before its ack) queues nothing twice within the broker's duplicate window, and beyond it, the same key again."""

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.client import JetStreamContext
from nats.js.errors import KeyNotFoundError
from pydantic import ValidationError

from contracts.events import EVENT, RecordedEvent, WorkflowCreated
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
TYPES_KEPT_S = 30.0
WORKFLOW_TYPES_KEPT = 100_000  # workflow id -> its type, for the events that do not say it


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


class Types:
    """Each workflow's type description (from the types bucket), and which type each workflow is."""

    def __init__(self, js: JetStreamContext, topology: Topology) -> None:
        self.js, self.topology = js, topology
        self.described: dict[str, tuple[float, WorkflowTypeInfo]] = {}
        self.of_workflow: OrderedDict[str, str] = OrderedDict()

    def saw_created(self, workflow_id: str, workflow_type: str) -> None:
        self.of_workflow[workflow_id] = workflow_type
        if len(self.of_workflow) > WORKFLOW_TYPES_KEPT:
            self.of_workflow.popitem(last=False)

    async def of(self, workflow_id: str) -> WorkflowTypeInfo | None:
        name = self.of_workflow.get(workflow_id) or await self._type_in_read_model(workflow_id)
        return await self.described_as(name) if name else None

    async def described_as(self, name: str) -> WorkflowTypeInfo | None:
        kept = self.described.get(name)
        if kept and time.monotonic() - kept[0] < TYPES_KEPT_S:
            return kept[1]
        try:
            entry = await (await self.js.key_value(self.topology.types_bucket)).get(name)
        except KeyNotFoundError:
            return None
        assert entry.value is not None  # a get's entry has its value; nats-py types it optional
        info = WorkflowTypeInfo.model_validate_json(entry.value)
        self.described[name] = (time.monotonic(), info)
        return info

    async def _type_in_read_model(self, workflow_id: str) -> str | None:
        try:
            entry = await (await self.js.key_value(self.topology.state_bucket)).get(workflow_id)
        except KeyNotFoundError:
            return None
        assert entry.value is not None
        name = WorkflowState.model_validate_json(entry.value).type
        if name:
            self.saw_created(workflow_id, name)
        return name


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
        if isinstance(event, WorkflowCreated):
            self.types.saw_created(event.workflow_id, event.workflow_type)
        declared = await self.types.of(event.workflow_id)
        if declared is None:
            return
        told = notifications_of(recorded, declared)
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
        declared = await self.types.described_as(waiting.workflow_type)
        title = declared.title if declared else waiting.workflow_type
        await self.outbox.deliver(reminded(waiting, title, datetime.now(UTC)))
