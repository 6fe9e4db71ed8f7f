"""The processor's lifetime: its consumer made ready once connected, the lag gauge beside it, each job handed in."""

import asyncio
from functools import partial

from faststream.nats import NatsBroker
from faststream.nats.message import NatsMessage

from contracts.topology import PROCESSOR_CONSUMER
from runtime.observability import report_consumer_lag
from runtime.streams import patiently, wait_until_created
from services.processor.jobs import JobIntake, ProcessorMetrics
from services.processor.settings import ProcessorSettings


class ProcessorService:
    def __init__(
        self, settings: ProcessorSettings, broker: NatsBroker, intake: JobIntake, metrics: ProcessorMetrics
    ) -> None:
        self.topology, self.broker, self.intake, self.metrics = settings.topology, broker, intake, metrics
        self.background: set[asyncio.Task] = set()

    async def connect(self) -> None:
        """Connect, wait for the streams it uses, and make its consumer ready before FastStream's subscriber looks
        it up."""
        topology = self.topology
        await self.broker.connect()
        # Its NATS user may not create streams: the orchestrator does.
        js = self.broker.connection.jetstream()
        streams = [topology.jobs_stream, topology.commands_stream, topology.dead_stream]
        await wait_until_created(js, streams, [topology.results_subject(), topology.dead_subject("jobs")])
        # Created, or brought to this config. Patiently: on a cluster just formed, a new consumer's raft group may
        # take longer than one request's timeout, and a processor whose subscriber failed to start would stop there.
        await patiently(partial(js.add_consumer, topology.jobs_stream, topology.processor_consumer()))

    async def start(self) -> None:
        js = self.broker.connection.jetstream()
        lag = report_consumer_lag(js, self.topology.jobs_stream, PROCESSOR_CONSUMER, self.metrics.lag)
        self.background.add(asyncio.create_task(lag, name="consumer-lag"))

    async def stop(self) -> None:
        for task in self.background:
            task.cancel()

    async def on_job(self, body: bytes) -> None:
        """The jobs subscriber's handler (no dependency injection: the message comes from FastStream's context)."""
        message: NatsMessage = self.broker.context.get_local("message")
        await self.intake.take(self.broker.connection.jetstream(), body, message)
