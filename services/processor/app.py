"""The processor: takes jobs from the work queue and answers each with a result command for its workflow.

It simulates the outside world: a random output in [0, 1), and at configurable rates a transient error, a
non-retryable one, or a run slower than the step's timeout. What to do about a failure is the step's policy, applied by
the orchestrator: the processor only reports it."""

import asyncio
import logging
import time
from functools import partial

from faststream import AckPolicy
from faststream.asgi import AsgiFastStream, make_ping_asgi
from faststream.nats import JStream, NatsBroker, PullSub
from faststream.nats.message import NatsMessage
from nats.js.client import JetStreamContext
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_asgi_app
from pydantic import ValidationError

from contracts.commands import CompleteJob, FailJob
from contracts.errors import describe
from contracts.jobs import ProcessJob
from contracts.topology import JOB_HEARTBEAT_S, PROCESSOR_CONSUMER
from runtime.draining import GRACEFUL_TIMEOUT_S, drain_on_shutdown
from runtime.observability import correlation_id, report_consumer_lag
from runtime.randomness import Randomness
from runtime.settings import pull_inbox_prefix
from runtime.streams import patiently, wait_until_created
from services.processor.settings import ProcessorSettings

log = logging.getLogger("processor")


def create_app(settings: ProcessorSettings) -> AsgiFastStream:
    topology = settings.topology
    randomness = Randomness(settings.seed)
    registry = CollectorRegistry()
    jobs = Counter("wf_jobs_total", "Jobs run, by step and outcome", ["step", "outcome"], registry=registry)
    job_seconds = Histogram("wf_job_seconds", "Time to run a job, by step", ["step"], registry=registry)
    lag = Gauge("wf_consumer_pending", "Jobs waiting for the processors", ["consumer"], registry=registry)
    consumer_config = topology.processor_consumer()
    dead_letters = Counter("wf_dead_letters_total", "Unreadable jobs dead-lettered", registry=registry)
    errors = Counter(
        "wf_job_errors_total",
        "Runs that raised, so sent no result (the job is delivered again), by step and error",
        ["step", "error"],
        registry=registry,
    )
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
    app = AsgiFastStream(
        broker,
        asgi_routes=[("/metrics", make_asgi_app(registry)), ("/healthz", make_ping_asgi(broker, timeout=2.0))],
    )
    background: set[asyncio.Task] = set()

    @app.on_startup
    async def connect() -> None:
        await broker.connect()
        # Its NATS user may not create streams: the orchestrator does.
        streams = [topology.jobs_stream, topology.commands_stream, topology.dead_stream]
        writes = [topology.results_subject(), topology.dead_subject("jobs")]
        js = broker.connection.jetstream()
        await wait_until_created(js, streams, writes)
        # Its consumer, created (or brought to this config) before FastStream's subscriber looks it up. Patiently: on
        # a cluster just formed, a new consumer's raft group may take longer than one request's timeout, and a
        # processor whose subscriber failed to start would stop there.
        await patiently(partial(js.add_consumer, topology.jobs_stream, consumer_config))

    @app.after_startup
    async def watch_lag() -> None:
        js = broker.connection.jetstream()
        background.add(asyncio.create_task(report_consumer_lag(js, topology.jobs_stream, PROCESSOR_CONSUMER, lag)))

    @app.on_shutdown
    async def stop_watching() -> None:
        for task in background:
            task.cancel()

    def happens(failure: str, job: ProcessJob, rate: float) -> bool:
        # Not drawn at a rate of 0 (the default): a seeded draw seeds a generator from a string, and skipping one
        # changes no other draw (each depends on its key only).
        return rate > 0 and randomness.draw(failure, job.job_id) < rate

    async def run(js: JetStreamContext, job: ProcessJob) -> None:
        started = time.monotonic()
        envelope = {
            "message_id": f"{job.job_id}-result",  # one result per job, however often it runs
            "workflow_id": job.workflow_id,
            "causation_id": job.message_id,
            "correlation_id": job.correlation_id,
            "job_id": job.job_id,
        }
        if happens("slow", job, settings.slow_rate):
            log.info("job %s: a slow run of %.1f s", job.job_id, settings.slow_s)
            await asyncio.sleep(settings.slow_s)
        if happens("transient", job, settings.transient_error_rate):
            result = FailJob(**envelope, error="transient error", error_type="TransientError", retryable=True)
        elif happens("fatal", job, settings.fatal_error_rate):
            result = FailJob(**envelope, error="non-retryable error", error_type="FatalError", retryable=False)
        else:
            result = CompleteJob(**envelope, output=randomness.draw("output", job.job_id))

        subject = topology.subject_for(result.kind, job.workflow_id)
        await js.publish(subject, result.model_dump_json().encode(), headers={"Nats-Msg-Id": result.message_id})
        outcome = result.error_type if isinstance(result, FailJob) else "completed"
        log.info("job %s of %s: %s", job.job_id, job.workflow_id, outcome)
        jobs.labels(step=job.step, outcome=outcome).inc()
        job_seconds.labels(step=job.step).observe(time.monotonic() - started)

    jobs_subscriber = broker.subscriber(
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
    drain_on_shutdown(app, jobs_subscriber, consumer_config.ack_wait, "processor")

    @jobs_subscriber
    async def on_job(body: bytes) -> None:
        message: NatsMessage = broker.context.get_local("message")
        js = broker.connection.jetstream()
        try:
            job = ProcessJob.model_validate_json(body)
        except ValidationError as error:
            log.warning("dead-lettering an unreadable job: %s", error)
            headers = {"Wf-Error": describe(error)[:1000], "Wf-Subject": message.raw_message.subject}
            await js.publish(topology.dead_subject("jobs"), body, headers=headers)
            await message.ack()
            dead_letters.inc()
            return

        correlation_id.set(job.correlation_id)
        heartbeat = asyncio.create_task(_keep_in_progress(message))
        try:
            await run(js, job)
        except asyncio.CancelledError:
            await message.nack()  # stopped before it finished: another processor runs it now
            raise
        except Exception as error:
            errors.labels(step=job.step, error=type(error).__name__).inc()
            raise  # FastStream logs it; the job is delivered again once its ack wait is over
        finally:
            heartbeat.cancel()
        await message.ack()

    return app


async def _undecoded(message: NatsMessage) -> bytes:
    """The body as it came: the handler reads the job itself, and dead-letters a body FastStream's JSON decoding
    would have raised on (nested too deep; not JSON under a JSON content type), as the orchestrator does
    (docs/decisions/0011)."""
    return message.body


async def _keep_in_progress(message: NatsMessage) -> None:
    """Tells JetStream the job is still being worked on, so it is not delivered to another processor meanwhile."""
    while True:
        await asyncio.sleep(JOB_HEARTBEAT_S)
        await message.in_progress()
