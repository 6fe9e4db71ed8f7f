"""The orchestrator's parts and their lifetime: made once the broker is connected, started, and stopped in order."""

import asyncio
import logging
from functools import partial

from faststream.nats import NatsBroker

from contracts.envelope import utcnow
from runtime.observability import report_consumer_lag
from runtime.randomness import Randomness
from runtime.settings import pull_inbox_prefix
from runtime.streams import ensure_topology, patiently
from services.orchestrator.catalog import TypeCatalog, run_forever
from services.orchestrator.consumer import CommandConsumer
from services.orchestrator.domain.declaration import TypeVersions
from services.orchestrator.domain.engine import Engine
from services.orchestrator.domain.types import SHIPPED_DEFINITIONS
from services.orchestrator.handler import CommandHandler
from services.orchestrator.intake import CommandIntake, DeadLetters
from services.orchestrator.metrics import OrchestratorMetrics
from services.orchestrator.outbox import JetStreamOutbox
from services.orchestrator.retention import Retention
from services.orchestrator.settings import OrchestratorSettings
from services.orchestrator.store import JetStreamEventStore
from services.orchestrator.sweeper import PassedOverSweeper

log = logging.getLogger("orchestrator")


class OrchestratorService:
    def __init__(self, settings: OrchestratorSettings, broker: NatsBroker, metrics: OrchestratorMetrics) -> None:
        self.settings, self.broker, self.metrics = settings, broker, metrics
        self.intake: CommandIntake | None = None
        self.catalog: TypeCatalog | None = None
        self.consumer: CommandConsumer | None = None
        self.background: set[asyncio.Task] = set()

    async def connect(self) -> None:
        """Connect, make or check the streams and buckets it owns, load the types (publishing the shipped ones the
        bucket lacks), and build the intake."""
        topology = self.settings.topology
        await self.broker.connect()
        nc = self.broker.connection
        js = nc.jetstream()
        # It owns the streams and buckets. It writes the log, jobs, timers, dead letters, the read model and the types.
        writes = [topology.events_subject(), topology.jobs_subject(), topology.timer_subject("*", "*")]
        writes += [topology.dead_subject("commands"), topology.kv_subjects(topology.state_bucket)]
        writes += [topology.kv_subjects(topology.types_bucket)]
        await ensure_topology(js, topology, writes)
        state_bucket = await js.key_value(topology.state_bucket)
        versions = TypeVersions()
        self.catalog = TypeCatalog(nc, js, topology, versions)
        await self.catalog.open(SHIPPED_DEFINITIONS.values())
        engine = Engine(versions)  # runs every version the catalog loads, as it loads them
        commits = self.metrics.batch_commits.inc
        store = JetStreamEventStore(nc, js, state_bucket, topology, on_batch_commit=commits, engine=engine)
        randomness = Randomness(self.settings.seed)
        outbox = JetStreamOutbox(js, topology)
        rate = self.settings.send_failure_rate
        handler = CommandHandler(store, outbox, randomness, rate, self.metrics, engine, self.catalog.refresh)
        max_deliver = topology.orchestrator_consumer().max_deliver
        assert max_deliver is not None  # orchestrator_consumer() sets it (nats-py types each field optional)
        self.intake = CommandIntake(
            topology, handler, DeadLetters(js, topology, self.metrics.dead_letters), max_deliver
        )

    async def start(self) -> None:
        """Consume the commands, and run the lag gauge, the sweeper and (when configured) retention beside it."""
        assert self.intake and self.catalog, "connect() comes first"
        settings, topology = self.settings, self.settings.topology
        self._beside(run_forever(self.catalog.follow, "types watch"), "types watch")
        await self.catalog.serve()
        js = self.broker.connection.jetstream()
        # Created here, or an existing one brought to this config (its subjects, its ack wait). Patiently: on a
        # cluster just formed, a new consumer's raft group may take longer than one request's timeout.
        consumer_config = topology.orchestrator_consumer()
        await patiently(partial(js.add_consumer, topology.commands_stream, consumer_config))
        subscription = await js.pull_subscribe_bind(
            consumer_config.durable_name, topology.commands_stream, inbox_prefix=pull_inbox_prefix("orchestrator")
        )
        self.consumer = CommandConsumer(
            self.broker.connection, subscription, self.intake.apply, topology.workflow_id_of
        )
        self.consumer.start()
        self._beside(report_consumer_lag(js, topology.commands_stream, "orchestrator", self.metrics.lag), "lag")
        sweeper = PassedOverSweeper(js, topology, self.intake.dead_letters.keep)
        self._beside(sweeper.run(settings.sweep_every_s), "sweeper")
        if settings.retention_days:
            retention = Retention(js, topology, settings.retention_days)
            self._beside(retention.run(settings.retention_every_s, utcnow), "retention")

    async def stop(self) -> None:
        """Stop the tasks beside it, then drain: finish the commands in hand, give back the ones fetched."""
        for task in self.background:
            task.cancel()
        if self.consumer:
            given_back = await self.consumer.stop()
            log.info("orchestrator stopped consuming; gave back %d fetched command(s) it had not applied", given_back)

    def _beside(self, work, name: str) -> None:
        self.background.add(asyncio.create_task(work, name=name))
