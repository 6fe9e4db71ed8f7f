"""The indexer's wiring: the index (migrated at start), the NATS link, the feed from the read model into the index,
and /healthz and /metrics."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.datastructures import State
from nats.aio.client import Client
from prometheus_client import CollectorRegistry

from runtime.index_db import connect
from runtime.nats_link import NatsLink, cancel_all
from runtime.probes import healthz, metrics
from services.indexer.feed import ReadModelFeed
from services.indexer.metrics import IndexerMetrics
from services.indexer.projection import IndexProjection, migrate
from services.indexer.settings import IndexerSettings


class Indexer:
    """The service's parts, and its lifetime: migrate the index, connect, follow the read model until stopped."""

    def __init__(self, settings: IndexerSettings) -> None:
        self.settings = settings
        self.registry = CollectorRegistry()
        self.engine = connect(settings.index_url)
        self.feed = ReadModelFeed(IndexProjection(self.engine), settings.topology, IndexerMetrics(self.registry))
        topology = settings.topology
        self.link = NatsLink(
            settings, "indexer", streams=[topology.kv_stream(topology.state_bucket)], on_connected=self._start_feed
        )
        self.tasks: set[asyncio.Task] = set()

    async def _start_feed(self, nc: Client) -> None:
        self.tasks.add(asyncio.create_task(self.feed.run(nc.jetstream()), name="indexer-feed"))

    @property
    def ready(self) -> bool:
        return self.link.ready and self.feed.caught_up.is_set()

    @asynccontextmanager
    async def lifespan(self, *_: object) -> AsyncIterator[None]:
        await asyncio.to_thread(migrate, self.settings.index_url)
        try:
            async with self.link.lifespan():
                try:
                    yield
                finally:
                    await cancel_all(self.tasks)
        finally:
            await self.engine.dispose()


def create_app(settings: IndexerSettings) -> Litestar:
    indexer = Indexer(settings)
    return Litestar(
        route_handlers=[healthz, metrics],
        state=State({"service": indexer}),
        lifespan=[indexer.lifespan],
        openapi_config=None,
    )
