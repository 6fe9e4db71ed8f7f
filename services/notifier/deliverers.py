"""Each subscription's deliveries, sent by a loop of its own through a durable consumer that hands out one at a time:
they arrive in order, and a receiver that is down holds back only its own. A delivery it does not take is tried
again with a growing delay until `retry_for_s` has passed since it was queued, then kept as a dead letter with the
last error."""

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from nats.aio.msg import Msg
from nats.js.client import JetStreamContext
from nats.js.errors import NotFoundError
from pydantic import ValidationError

from contracts.notifications import Delivery, Subscription
from contracts.topology import Topology
from runtime.nats_link import cancel_all
from runtime.streams import patiently
from services.notifier.channels import Composer, DeliveryFailed, Message
from services.notifier.feed import Subscriptions, fetched, pulling
from services.notifier.metrics import NotifierMetrics

log = logging.getLogger("notifier")

RETRY_S = 1.0
SYNC_EVERY_S = 1.0


class Channel(Protocol):
    async def send(self, delivery: Delivery, subscription: Subscription, message: Message) -> None: ...


@dataclass(frozen=True)
class RetryPolicy:
    retry_for_s: float = 24 * 3600.0  # then a dead letter
    first_delay_s: float = 1.0
    max_delay_s: float = 300.0

    def delay(self, tries: int) -> float:
        return min(self.first_delay_s * 2 ** max(0, tries - 1), self.max_delay_s)


class Deliverers:
    def __init__(
        self,
        js: JetStreamContext,
        topology: Topology,
        subscriptions: Subscriptions,
        composer: Composer,
        channels: dict[str, Channel],
        retry: RetryPolicy,
        metrics: NotifierMetrics,
    ) -> None:
        self.js, self.topology, self.subscriptions = js, topology, subscriptions
        self.composer, self.channels, self.retry, self.metrics = composer, channels, retry, metrics
        self.running: dict[str, asyncio.Task] = {}

    async def run(self) -> None:
        """Keep one loop per subscription, until cancelled."""
        try:
            await self.subscriptions.loaded.wait()
            while True:
                await self._sync()
                await asyncio.sleep(SYNC_EVERY_S)
        finally:
            await cancel_all(set(self.running.values()))

    async def _sync(self) -> None:
        wanted = set(self.subscriptions.by_id)
        for subscription_id in wanted - self.running.keys():
            config = self.topology.deliveries_consumer(subscription_id)
            await patiently(lambda: self.js.add_consumer(self.topology.notify_stream, config))
            self.running[subscription_id] = asyncio.create_task(self._deliver_all(subscription_id))
        for subscription_id in self.running.keys() - wanted:  # deleted: its loop, consumer and deliveries go
            await cancel_all({self.running.pop(subscription_id)})
            try:
                name = self.topology.deliveries_consumer(subscription_id).durable_name or ""
                await self.js.delete_consumer(self.topology.notify_stream, name)
                await self.js.purge_stream(
                    self.topology.notify_stream, subject=self.topology.deliveries_subject(subscription_id)
                )
            except NotFoundError:
                pass

    async def _deliver_all(self, subscription_id: str) -> None:
        durable = self.topology.deliveries_consumer(subscription_id).durable_name or ""
        while True:
            try:
                async with pulling(self.js, durable, self.topology.notify_stream) as pull:
                    while True:
                        for message in await fetched(pull, 1):
                            await self.deliver(message)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("delivering to subscription %s stopped; starting again", subscription_id)
                await asyncio.sleep(RETRY_S)

    async def deliver(self, message: Msg) -> None:
        try:
            delivery = Delivery.model_validate_json(message.data)
        except ValidationError as error:
            log.error("an unreadable delivery, dropped: %s", error)
            await message.ack()
            return
        subscription = self.subscriptions.by_id.get(delivery.subscription_id)
        if subscription is None:  # deleted meanwhile
            await message.ack()
            return
        channel = subscription.channel
        try:
            await self.channels[channel].send(delivery, subscription, self.composer.message(delivery, subscription))
        except DeliveryFailed as failure:
            await self._failed(message, delivery, channel, str(failure))
            return
        await message.ack()
        self.metrics.delivered.labels(channel=channel).inc()

    async def _failed(self, message: Msg, delivery: Delivery, channel: str, error: str) -> None:
        metadata = message.metadata
        queued_at = metadata.timestamp or datetime.now(UTC)
        age_s = (datetime.now(UTC) - queued_at).total_seconds()
        if age_s >= self.retry.retry_for_s:
            log.error("delivery %s given up after %.0f s: %s", delivery.idempotency_key, age_s, error)
            headers = {"Wf-Error": error[:1000], "Wf-Subject": message.subject}
            await self.js.publish(self.topology.dead_subject("deliveries"), message.data, headers=headers)
            await message.ack()
            self.metrics.dead_letters.labels(channel=channel).inc()
            return
        delay = self.retry.delay(metadata.num_delivered or 1)
        log.warning("delivery %s not taken (%s); again in %.1f s", delivery.idempotency_key, error, delay)
        await message.nak(delay=delay)
        self.metrics.retries.labels(channel=channel).inc()
