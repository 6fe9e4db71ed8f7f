"""Replaying the log for a client that resumes: the events after the last sequence it saw, read from the events
stream a page at a time.

A reconnect storm (every client of a restarted broadcaster coming back at once) must not overload the process or the
broker: at most `concurrency` pages are read at once, and a client holds no read slot while its page is being sent,
so a client that reads slowly delays only itself. Each replay reads through an ephemeral pull consumer, which the
stream's leader serves (a direct get may be answered by a replica that lags, which would leave a gap)."""

import asyncio
import logging
from collections.abc import AsyncGenerator

from nats.errors import Error as NatsError
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.client import JetStreamContext
from pydantic import ValidationError

from contracts.topology import Topology
from services.broadcaster.hub import Relayed
from services.broadcaster.messages import event_message

log = logging.getLogger(__name__)

FETCH_TIMEOUT_S = 5.0
# The broker deletes a replay's consumer left idle this long (e.g. its process died mid-replay).
CONSUMER_IDLE_LIMIT_S = 60.0


class LogReplay:
    def __init__(self, topology: Topology, page_size: int, concurrency: int) -> None:
        self._topology = topology
        self._page_size = page_size
        self._reads = asyncio.Semaphore(concurrency)

    async def log_end(self, js: JetStreamContext) -> int:
        """The sequence of the last event in the stream now."""
        async with self._reads:
            return (await js.stream_info(self._topology.events_stream)).state.last_seq

    async def pages(
        self, js: JetStreamContext, after: int, until: int, workflow_id: str | None
    ) -> AsyncGenerator[list[Relayed], None]:
        """The events with a sequence above `after` (only the workflow's, when given), oldest first, in pages,
        through at least sequence `until`; the last page may go beyond it. Close it with `contextlib.aclosing`."""
        if after >= until:
            return
        stream = self._topology.events_stream
        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=after + 1,
            filter_subject=self._topology.events_subject(workflow_id or "*"),
            ack_policy=AckPolicy.NONE,
            mem_storage=True,
            num_replicas=1,
            inactive_threshold=CONSUMER_IDLE_LIMIT_S,
        )
        async with self._reads:
            consumer = await js.add_consumer(stream, config)
        try:
            if consumer.num_pending == 0:
                return
            subscription = await js.pull_subscribe_bind(consumer=consumer.name, stream=stream)
            try:
                while True:
                    async with self._reads:
                        messages = await subscription.fetch(self._page_size, timeout=FETCH_TIMEOUT_S)
                    yield [relayed for relayed in map(_relayed, messages) if relayed is not None]
                    last = messages[-1].metadata
                    # Caught up: the rest reaches the client through the live feed it joined before `until` was read.
                    if last.sequence.stream >= until or last.num_pending == 0:
                        return
            finally:
                await subscription.unsubscribe()
        finally:
            await _delete_consumer(js, stream, consumer.name)


def _relayed(message) -> Relayed | None:
    sequence = message.metadata.sequence.stream
    try:
        return sequence, event_message(sequence, message.data)
    except ValidationError as error:
        log.error("events stream sequence %d is not an event, not replayed: %s", sequence, error)
        return None


async def _delete_consumer(js: JetStreamContext, stream: str, name: str) -> None:
    try:
        await js.delete_consumer(stream, name)
    except NatsError as error:  # the broker deletes it anyway once idle: no reason to fail the client for it
        log.info("could not delete replay consumer %s (the broker will): %r", name, error)
