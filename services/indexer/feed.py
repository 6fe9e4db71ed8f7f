"""The indexer's one loop: read the read model's stream after the position the index holds, a batch at a time, and
hand each batch to the projection.

It follows the read model (the `<prefix>_state` bucket's stream), which the orchestrator writes after every append:
each entry is a workflow's whole state, folded from its log up to `last_sequence`, so the index needs no engine of its
own to fold the log, and a rebuild from the start reads one entry per workflow, not every event. The position lives
in the index, in the same transaction as the rows (the projection's tracking record), so no broker consumer has to be
kept: each start reads on from the index's own position through a fresh, short-lived consumer."""

import asyncio
import logging
import time
from datetime import UTC, datetime

from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.client import JetStreamContext
from nats.js.kv import KV_DEL, KV_OP, KV_PURGE
from pydantic import ValidationError

from contracts.state import WorkflowState
from contracts.topology import Topology
from services.indexer.metrics import IndexerMetrics
from services.indexer.projection import Change, IndexProjection, PositionMoved

log = logging.getLogger("indexer")

BATCH = 256
FETCH_WAIT_S = 0.5  # also how soon an idle indexer notices a reset of its index
RETRY_S = 1.0
CONSUMER_IDLE_LIMIT_S = 60.0  # the broker removes a consumer left behind by a crash


class ReadModelFeed:
    def __init__(self, projection: IndexProjection, topology: Topology, metrics: IndexerMetrics) -> None:
        self.projection, self.topology, self.metrics = projection, topology, metrics
        self.caught_up = asyncio.Event()  # set once a fetch found nothing more to read

    async def run(self, js: JetStreamContext) -> None:
        """Follow the read model until cancelled; start again from the index's position after any failure."""
        while True:
            try:
                await self._follow(js, await self.projection.position())
            except asyncio.CancelledError:
                raise
            except PositionMoved as moved:
                log.info("%s: reading on from the index's position", moved)
            except Exception:
                log.exception("indexing stopped; starting again from the index's position")
                await asyncio.sleep(RETRY_S)

    async def _follow(self, js: JetStreamContext, after: int) -> None:
        stream = self.topology.kv_stream(self.topology.state_bucket)
        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=after + 1,
            ack_policy=AckPolicy.NONE,  # the position is kept in the index, not by the broker
            mem_storage=True,
            num_replicas=1,
            inactive_threshold=CONSUMER_IDLE_LIMIT_S,
        )
        subscription = await js.pull_subscribe(
            self.topology.kv_subjects(self.topology.state_bucket), stream=stream, config=config
        )
        try:
            while True:
                try:
                    messages = await subscription.fetch(BATCH, timeout=FETCH_WAIT_S)
                except NatsTimeoutError:
                    messages = []
                if not messages:  # idle: caught up; a reset of the index (to rebuild it) shows here too
                    self.caught_up.set()
                    self.metrics.pending.set(0)
                    if await self.projection.position() != after:
                        raise PositionMoved(f"the index is no longer at {after}")
                    continue
                changes = [change for message in messages if (change := self._change(message)) is not None]
                last = messages[-1].metadata
                if changes:
                    await self.projection.apply(after, changes)
                    self._measure(changes)
                after = last.sequence.stream if changes else after
                self.metrics.pending.set(last.num_pending)
                if last.num_pending == 0:
                    self.caught_up.set()
        finally:
            try:
                await subscription.unsubscribe()
            except NatsError:  # gone with the connection: the broker drops it once idle
                pass

    def _change(self, message) -> Change | None:
        sequence = message.metadata.sequence.stream
        workflow_id = message.subject.split(".", 2)[2]
        written_at = message.metadata.timestamp
        if (message.headers or {}).get(KV_OP) in (KV_DEL, KV_PURGE):
            return Change(sequence, workflow_id, None, written_at)
        try:
            return Change(sequence, workflow_id, WorkflowState.model_validate_json(message.data), written_at)
        except ValidationError as error:  # never written by the orchestrator: skipped, loudly
            log.error("read model entry %d (%s) is not a workflow state, not indexed: %s", sequence, workflow_id, error)
            self.metrics.unreadable.inc()
            return None

    def _measure(self, changes: list[Change]) -> None:
        now = datetime.now(UTC)
        for change in changes:
            if change.written_at is not None:
                self.metrics.lag.observe(max(0.0, (now - change.written_at).total_seconds()))
        self.metrics.indexed.inc(len(changes))
        self.metrics.applied_at.set(time.time())
