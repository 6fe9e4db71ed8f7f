"""The notifier's wiring: the NATS link, the subscriptions, the log and reminder feeds, one delivery loop per
subscription, and /healthz and /metrics."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import httpx
from litestar import Litestar
from litestar.datastructures import State
from nats.aio.client import Client
from prometheus_client import CollectorRegistry

from runtime.nats_link import NatsLink, cancel_all
from runtime.probes import healthz, metrics
from runtime.streams import patiently
from services.notifier.channels import WEBHOOK_TIMEOUT_S, Composer, Mail, Webhooks
from services.notifier.deliverers import Deliverers
from services.notifier.feed import EventFeed, Outbox, ReminderFeed, Subscriptions, Types
from services.notifier.metrics import NotifierMetrics
from services.notifier.settings import NotifierSettings


class Notifier:
    """The service's parts, and its lifetime: connect, then follow the log and deliver until stopped."""

    def __init__(self, settings: NotifierSettings) -> None:
        self.settings = settings
        self.registry = CollectorRegistry()
        self.metrics = NotifierMetrics(self.registry)
        topology = settings.topology
        self.link = NatsLink(
            settings,
            "notifier",
            streams=[topology.events_stream, topology.notify_stream, topology.kv_stream(topology.subscriptions_bucket)],
            writes=[topology.deliveries_subject()],
            on_connected=self._start,
        )
        self.http = httpx.AsyncClient(timeout=WEBHOOK_TIMEOUT_S)
        self.tasks: set[asyncio.Task] = set()

    async def _start(self, nc: Client) -> None:
        settings, topology, js = self.settings, self.settings.topology, nc.jetstream()
        await patiently(partial(js.add_consumer, topology.events_stream, topology.notifier_consumer()))
        await patiently(partial(js.add_consumer, topology.notify_stream, topology.reminders_consumer()))
        subscriptions, types = Subscriptions(js, topology), Types(js, topology)
        outbox = Outbox(js, topology, subscriptions, self.metrics)
        composer = Composer(settings.public_url, settings.link_key or b"")
        channels = {"webhook": Webhooks(self.http), "email": Mail(settings.smtp)}
        deliverers = Deliverers(js, topology, subscriptions, composer, channels, settings.retry, self.metrics)
        loops = {
            "subscriptions": subscriptions.run(),
            "events": EventFeed(js, topology, types, outbox).run(),
            "reminders": ReminderFeed(js, topology, types, outbox).run(),
            "deliveries": deliverers.run(),
        }
        self.tasks |= {asyncio.create_task(loop, name=f"notifier-{name}") for name, loop in loops.items()}

    @property
    def ready(self) -> bool:
        return self.link.ready

    @asynccontextmanager
    async def lifespan(self, *_: object) -> AsyncIterator[None]:
        try:
            async with self.link.lifespan():
                try:
                    yield
                finally:
                    await cancel_all(self.tasks)
        finally:
            await self.http.aclose()


def create_app(settings: NotifierSettings) -> Litestar:
    notifier = Notifier(settings)
    return Litestar(
        route_handlers=[healthz, metrics],
        state=State({"service": notifier}),
        lifespan=[notifier.lifespan],
        openapi_config=None,
    )
