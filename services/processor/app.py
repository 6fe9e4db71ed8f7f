"""Wiring: the processor's pull subscriber on the jobs stream feeding the job intake (jobs.py), on its broker's
connection, served by FastStream's ASGI app (/metrics, /healthz)."""

import logging

from faststream import AckPolicy
from faststream.asgi import AsgiFastStream, make_ping_asgi
from faststream.nats import JStream, NatsBroker, PullSub
from faststream.nats.message import NatsMessage
from prometheus_client import CollectorRegistry, make_asgi_app

from contracts.topology import PROCESSOR_CONSUMER
from runtime.draining import GRACEFUL_TIMEOUT_S, drain_on_shutdown
from runtime.settings import pull_inbox_prefix
from services.processor.jobs import JobIntake, ProcessorMetrics, Simulator, log
from services.processor.service import ProcessorService
from services.processor.settings import ProcessorSettings


def create_app(settings: ProcessorSettings) -> AsgiFastStream:
    topology, consumer_config = settings.topology, settings.topology.processor_consumer()
    registry = CollectorRegistry()
    metrics = ProcessorMetrics(registry)
    broker = NatsBroker(
        **settings.broker_connection("processor"),
        max_reconnect_attempts=-1,
        graceful_timeout=GRACEFUL_TIMEOUT_S,
        # Per job, FastStream's machinery cost more CPU than the job itself (docs/decisions/0013). Its own lines go to
        # our JSON log: "Received"/"Processed" at DEBUG (not written), a handler's error at ERROR with its traceback.
        logger=log,
        log_level=logging.DEBUG,
        apply_types=False,  # no dependency injection: the handler takes the raw body and the message from the context
    )
    service = ProcessorService(settings, broker, JobIntake(topology, Simulator(settings), metrics), metrics)
    jobs = broker.subscriber(
        topology.jobs_subject(),
        stream=JStream(name=topology.jobs_stream, declare=False),
        durable=PROCESSOR_CONSUMER,
        inbox_prefix=pull_inbox_prefix("processor"),
        config=consumer_config,
        pull_sub=PullSub(batch_size=16, timeout=1.0),
        max_workers=settings.concurrency,
        ack_policy=AckPolicy.MANUAL,
        decoder=_undecoded,
    )
    jobs(service.on_job)
    app = AsgiFastStream(
        broker,
        asgi_routes=[("/metrics", make_asgi_app(registry)), ("/healthz", make_ping_asgi(broker, timeout=2.0))],
        logger=log,
        on_startup=[service.connect],
        after_startup=[service.start],
        on_shutdown=[service.stop],
    )
    assert consumer_config.ack_wait is not None  # processor_consumer() sets it (nats-py types each field optional)
    drain_on_shutdown(app, jobs, consumer_config.ack_wait, "processor")
    return app


async def _undecoded(message: NatsMessage) -> bytes:
    """The body as it came: the handler reads the job itself, and dead-letters a body FastStream's JSON decoding
    would have raised on (nested too deep; not JSON under a JSON content type), as the orchestrator does
    (docs/decisions/0011)."""
    return message.body
