"""The API's application layer: read the read model and the types, send commands and learn their outcome from the
log."""

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from nats.aio.subscription import Subscription
from nats.errors import Error as NatsError
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.client import JetStreamContext
from nats.js.errors import KeyNotFoundError, NotFoundError
from nats.js.kv import KV_DEL, KV_OP, KV_PURGE, KeyValue, StopIterSentinel
from pydantic import ValidationError

from contracts.chain import Link, Verification, verify
from contracts.commands import CommandMessage
from contracts.definitions import ApplyType, PublishedType, TypeApplied, version_key
from contracts.events import EVENT, CommandRejected, Event, RecordedEvent
from contracts.state import WorkflowState
from contracts.topology import MAX_COMMAND_BYTES, export_name
from contracts.types import WorkflowTypeInfo
from runtime.eventlog import read_events, read_stored
from runtime.nats_link import NatsLink
from services.api.errors import CommandRefused, CommandTooLarge, TypeNotFound, WorkflowNotFound, WorkflowRemoved
from services.api.pagination import Page
from services.api.search import BadFilter, Search, parse
from services.api.settings import ApiSettings

log = logging.getLogger(__name__)

SCAN_PAGE_SIZE = 500
SCAN_FETCH_TIMEOUT_S = 5.0
SCAN_IDLE_LIMIT_S = 60.0  # the broker deletes a scan's consumer left this long (its request died midway)
# The broker deletes the consumers a command's outcome is awaited with this long after the API stops listening. Not its
# defaults (5 s; 5 minutes for a KV watch): a stream holds at most 1 000 consumers, and at a few hundred commands a
# second the lingering ones reached that (a bulk action's commands were refused "maximum consumers limit reached").
LISTEN_IDLE_LIMIT_S = 1.0
TYPES_KEPT_S = 5.0  # a new type shows in searches within this long
APPLY_TIMEOUT_S = 10.0  # how long the orchestrators may take to check and publish a type version


@dataclass(frozen=True)
class Outcome:
    command_id: str
    duplicate: bool
    state: WorkflowState | None  # None: no outcome within the wait


async def current_values(js: JetStreamContext, bucket: str, keys: str = ">") -> list[bytes]:
    """The current value of every key that matches `keys` (wildcards allowed), oldest write first. Read through a pull
    consumer (last value per key), which delivers nothing before it is asked, so the count it starts with is exact. A
    KV watcher's "that was all" marker is not: it can come before the values, when the broker sends its answer to the
    count ahead of the values."""
    stream = f"KV_{bucket}"
    config = ConsumerConfig(
        deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
        filter_subject=f"$KV.{bucket}.{keys}",
        ack_policy=AckPolicy.NONE,
        mem_storage=True,
        num_replicas=1,
        inactive_threshold=SCAN_IDLE_LIMIT_S,
    )
    consumer = await js.add_consumer(stream, config)
    values: list[bytes] = []
    try:
        remaining = consumer.num_pending
        if remaining == 0:
            return values
        subscription = await js.pull_subscribe_bind(consumer=consumer.name, stream=stream)
        try:
            while remaining:
                for message in await subscription.fetch(SCAN_PAGE_SIZE, timeout=SCAN_FETCH_TIMEOUT_S):
                    remaining = message.metadata.num_pending
                    if (message.headers or {}).get(KV_OP) not in (KV_DEL, KV_PURGE):
                        values.append(message.data)
        finally:
            await subscription.unsubscribe()
    finally:
        try:
            await js.delete_consumer(stream, consumer.name)
        except NatsError as error:  # the broker deletes it anyway once idle: the answer stands
            log.info("could not delete scan consumer %s (the broker will): %r", consumer.name, error)
    return values


class Workflows:
    def __init__(self, link: NatsLink, settings: ApiSettings) -> None:
        self._link = link
        self._topology = settings.topology
        self._default_wait_s = settings.command_timeout_s
        self._types: list[WorkflowTypeInfo] = []
        self._types_read_at: float | None = None

    async def _bucket(self, name: str) -> KeyValue:
        return await self._link.js.key_value(name)

    # reads

    async def find(self, workflow_id: str) -> WorkflowState | None:
        try:
            entry = await (await self._bucket(self._topology.state_bucket)).get(workflow_id)
        except KeyNotFoundError:
            return None
        return WorkflowState.model_validate_json(entry.value) if entry.value else None

    async def get(self, workflow_id: str) -> WorkflowState:
        state = await self.find(workflow_id)
        if state is None:
            raise await self._missing(workflow_id)
        return state

    async def _missing(self, workflow_id: str) -> Exception:
        """Why a workflow is not there: removed by retention (its export exists), or never known."""
        try:
            exports = await self._link.js.object_store(self._topology.exports_bucket)
            await exports.get_info(export_name(workflow_id))
        except NotFoundError:
            return WorkflowNotFound(workflow_id)
        return WorkflowRemoved(workflow_id, self._topology.exports_bucket, export_name(workflow_id))

    async def events(self, workflow_id: str, after: int, limit: int) -> Page[RecordedEvent]:
        """The workflow's events with a sequence above `after`, oldest first, at most `limit` of them."""
        events = await read_events(self._link.js, self._topology, workflow_id, after=after, limit=limit + 1)
        if not events:
            await self.get(workflow_id)  # 404, or 410 for one removed by retention
        page = events[:limit]
        return Page(page, str(page[-1].sequence) if len(events) > limit else None)

    async def verify(self, workflow_id: str) -> Verification:
        """Walk the hash chain of the workflow's log, up to at least the event the read model folded in last."""
        state = await self.find(workflow_id)
        stored = await read_stored(self._link.js, self._topology, workflow_id)
        if not stored and state is None:
            raise await self._missing(workflow_id)
        head = (state.last_sequence, state.bookkeeping.chain_head) if state and state.bookkeeping.chain_head else None
        return verify(workflow_id, (Link.of(*event) for event in stored), head)

    async def export(self, workflow_id: str) -> bytes:
        """The workflow's log as stored, one event per line: what contracts/chain.py verifies offline."""
        stored = await read_stored(self._link.js, self._topology, workflow_id)
        if not stored:
            await self.get(workflow_id)  # 404 for an unknown workflow
        return b"".join(data + b"\n" for _, data in stored)

    async def published(self, name: str | None = None) -> list[PublishedType]:
        """Every published version (of one type, given its name), oldest first."""
        keys = f"{name}.*" if name else ">"
        values = await current_values(self._link.js, self._topology.types_bucket, keys)
        found = [PublishedType.model_validate_json(value) for value in values]
        return sorted(found, key=lambda published: (published.definition.name, published.version))

    async def types(self) -> list[WorkflowTypeInfo]:
        """Every workflow type, by name, as its latest version describes it."""
        latest = {published.definition.name: published.info for published in await self.published()}
        return [latest[name] for name in sorted(latest)]

    async def known_types(self) -> list[WorkflowTypeInfo]:
        """The types as of at most TYPES_KEPT_S ago: what every search is checked against, read once in a while."""
        now = asyncio.get_running_loop().time()
        if self._types_read_at is None or now - self._types_read_at > TYPES_KEPT_S:
            self._types, self._types_read_at = await self.types(), now
        return self._types

    async def search_of(self, query: str, max_limit: int, default_sort: str = "-created_at") -> Search:
        """The search a query asks for, checked against the types; read again at once when it names a field the types
        kept here lack (a type published since they were read: at start-up, before the orchestrator's)."""
        try:
            return parse(query, await self.known_types(), max_limit, default_sort)
        except BadFilter:
            self._types_read_at = None
            return parse(query, await self.known_types(), max_limit, default_sort)

    async def type_info(self, name: str) -> WorkflowTypeInfo:
        """The latest version of a type."""
        if not (versions := await self.published(name)):
            raise TypeNotFound(name)
        return versions[-1].info

    async def type_version(self, name: str, version: int) -> PublishedType:
        try:
            entry = await (await self._bucket(self._topology.types_bucket)).get(version_key(name, version))
        except KeyNotFoundError:
            raise TypeNotFound(f"{name} version {version}") from None
        if not entry.value:
            raise TypeNotFound(f"{name} version {version}")
        return PublishedType.model_validate_json(entry.value)

    async def require_version(self, name: str, version: int) -> None:
        """Refuse a version of a type that was never published, as the orchestrator would (422, unknown_type)."""
        try:
            await self.type_version(name, version)
        except TypeNotFound:
            raise CommandRefused("unknown_type", f"type '{name}' has no version {version}") from None

    async def apply_type(self, definition: dict[str, Any], published_by: str) -> TypeApplied:
        """Ask the orchestrators to publish a definition as its type's next version."""
        request = ApplyType(definition=definition, published_by=published_by).model_dump_json().encode()
        reply = await self._link.nc.request(self._topology.types_apply_subject(), request, timeout=APPLY_TIMEOUT_S)
        return TypeApplied.model_validate_json(reply.data)

    async def recorded_outcome(self, workflow_id: str, command_id: str) -> Event | None:
        """The first event the command caused, from the log (a CommandRejected when it was refused); None when the
        log holds none."""
        for recorded in await read_events(self._link.js, self._topology, workflow_id):
            if recorded.event.causation_id == command_id:
                return recorded.event
        return None

    # commands

    async def send_to_existing(self, command: CommandMessage, wait_s: float | None) -> Outcome:
        """Send a command for a workflow that must already exist; nothing is published for an unknown one."""
        await self.get(command.workflow_id)
        return await self.send(command, wait_s)

    async def send(self, command: CommandMessage, wait_s: float | None) -> Outcome:
        """Publish a command, then wait up to `wait_s` (None: the default wait; 0: not at all) until the log records
        its outcome and the read model shows it. A rejection raises CommandRefused; no outcome in time gives an
        Outcome without state."""
        payload = command.model_dump_json().encode()
        if len(payload) > MAX_COMMAND_BYTES:
            raise CommandTooLarge(f"the command is {len(payload)} bytes; at most {MAX_COMMAND_BYTES} are accepted")
        wait_s = self._default_wait_s if wait_s is None else wait_s
        deadline = asyncio.get_running_loop().time() + wait_s
        workflow_id, command_id = command.workflow_id, command.message_id
        # Listen before publishing, so the command's first event cannot slip past; and through the stream, not core
        # NATS: a core subscriber also sees the events of a decision whose append the stream refused (a conflict,
        # decided again), which never happened.
        events = await self._committed_events(workflow_id) if wait_s else None
        try:
            ack = await self._link.js.publish(
                self._topology.commands_subject(workflow_id),
                payload,
                stream=self._topology.commands_stream,
                # The broker's dedup is one window for the whole stream; a command's id is the workflow's own (a
                # client may send one Idempotency-Key for two workflows): repeats are of the same workflow only.
                headers={"Nats-Msg-Id": f"{workflow_id}/{command_id}"},
            )
            duplicate = bool(ack.duplicate)
            if events is None:
                return Outcome(command_id, duplicate, None)
            try:
                async with asyncio.timeout_at(deadline):
                    cause = await self._first_event_caused_by(events, workflow_id, command_id, duplicate)
                    if isinstance(cause, CommandRejected):
                        raise CommandRefused(cause.code, cause.reason)
                    state = await self._state_once_applied(workflow_id, command_id)
            except TimeoutError:
                return Outcome(command_id, duplicate, None)
            return Outcome(command_id, duplicate, state)
        finally:
            if events is not None:
                await events.unsubscribe()

    async def _committed_events(self, workflow_id: str):
        return await self._link.js.subscribe(
            self._topology.events_subject(workflow_id),
            stream=self._topology.events_stream,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.NEW,
            inactive_threshold=LISTEN_IDLE_LIMIT_S,
        )

    async def _first_event_caused_by(
        self, events: Subscription, workflow_id: str, command_id: str, duplicate: bool
    ) -> Event:
        """The first event the command caused: from the live subscription, and for a duplicate (whose original may
        have been decided before we listened) from the log first."""
        if duplicate:
            for recorded in await read_events(self._link.js, self._topology, workflow_id):
                if recorded.event.causation_id == command_id:
                    return recorded.event
        while True:
            message = await events.next_msg(timeout=None)
            try:
                event = EVENT.validate_json(message.data)
            except ValidationError as error:
                log.warning("not an event on %s: %s", message.subject, error)
                continue
            if event.causation_id == command_id:
                return event

    async def _state_once_applied(self, workflow_id: str, command_id: str) -> WorkflowState:
        """The read model once it has folded the command in. The watch starts with the current value, so an update
        written before it began is not missed."""
        bucket = await self._bucket(self._topology.state_bucket)
        watcher = await bucket.watch(workflow_id, inactive_threshold=LISTEN_IDLE_LIMIT_S)
        try:
            while True:
                # No limit: nats-py leaves `timeout` unannotated (float, from its default); asyncio.wait_for takes None.
                entry = await watcher.updates(timeout=None)  # pyright: ignore[reportArgumentType]
                assert not isinstance(entry, StopIterSentinel)  # sent once the watcher is stopped, after this loop
                if entry is None or entry.operation in (KV_DEL, KV_PURGE):
                    continue
                assert entry.value is not None  # a put's entry has its value; nats-py types it optional
                state = WorkflowState.model_validate_json(entry.value)
                if command_id in state.bookkeeping.applied_commands:
                    return state
        finally:
            await watcher.stop()
