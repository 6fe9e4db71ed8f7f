"""A job's way through the processor: read it (or dead-letter it), run it, publish its result, ack it.

The run simulates the outside world: a random output in [0, 1), and at configurable rates a transient error, a
non-retryable one, or a run slower than the step's timeout. What to do about a failure is the step's policy, applied by
the orchestrator: the processor only reports it."""

import asyncio
import logging
import time
from typing import Protocol

from nats.aio.msg import Msg
from nats.js.client import JetStreamContext
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from pydantic import ValidationError

from contracts.commands import CompleteJob, FailJob
from contracts.errors import describe
from contracts.jobs import ProcessJob
from contracts.topology import JOB_HEARTBEAT_S, Topology
from runtime.observability import work_on
from runtime.randomness import Randomness
from services.processor.settings import ProcessorSettings

log = logging.getLogger("processor")


class ProcessorMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.jobs = Counter("wf_jobs_total", "Jobs run, by step and outcome", ["step", "outcome"], registry=registry)
        self.job_seconds = Histogram("wf_job_seconds", "Time to run a job, by step", ["step"], registry=registry)
        self.lag = Gauge("wf_consumer_pending", "Jobs waiting for the processors", ["consumer"], registry=registry)
        self.dead_letters = Counter("wf_dead_letters_total", "Unreadable jobs dead-lettered", registry=registry)
        self.errors = Counter(
            "wf_job_errors_total",
            "Runs that raised, so sent no result (the job is delivered again), by step and error",
            ["step", "error"],
            registry=registry,
        )


class JobMessage(Protocol):
    """What the intake needs of a delivered job (FastStream's NatsMessage)."""

    @property
    def raw_message(self) -> Msg: ...

    async def ack(self) -> None: ...

    async def nack(self) -> None: ...

    async def in_progress(self) -> None: ...


class Simulator:
    """Runs a job as the outside world might: its result, at the configured rates of failure and slowness."""

    def __init__(self, settings: ProcessorSettings) -> None:
        self.settings, self.randomness = settings, Randomness(settings.seed)

    async def run(self, job: ProcessJob) -> CompleteJob | FailJob:
        envelope = {
            "message_id": f"{job.job_id}-result",  # one result per job, however often it runs
            "workflow_id": job.workflow_id,
            "causation_id": job.message_id,
            "correlation_id": job.correlation_id,
            "job_id": job.job_id,
        }
        if self._happens("slow", job, self.settings.slow_rate):
            log.info("job %s: a slow run of %.1f s", job.job_id, self.settings.slow_s)
            await asyncio.sleep(self.settings.slow_s)
        if self._happens("transient", job, self.settings.transient_error_rate):
            return FailJob(**envelope, error="transient error", error_type="TransientError", retryable=True)
        if self._happens("fatal", job, self.settings.fatal_error_rate):
            return FailJob(**envelope, error="non-retryable error", error_type="FatalError", retryable=False)
        return CompleteJob(**envelope, output=self.randomness.draw("output", job.job_id))

    def _happens(self, failure: str, job: ProcessJob, rate: float) -> bool:
        # Not drawn at a rate of 0 (the default): a seeded draw seeds a generator from a string, and skipping one
        # changes no other draw (each depends on its key only).
        return rate > 0 and self.randomness.draw(failure, job.job_id) < rate


class JobIntake:
    """Validate → run → publish the result → ack; an unreadable job is dead-lettered, a failed run delivered again."""

    def __init__(self, topology: Topology, simulator: Simulator, metrics: ProcessorMetrics) -> None:
        self.topology, self.simulator, self.metrics = topology, simulator, metrics

    async def take(self, js: JetStreamContext, body: bytes, message: JobMessage) -> None:
        try:
            job = ProcessJob.model_validate_json(body)
        except ValidationError as error:
            log.warning("dead-lettering an unreadable job: %s", error)
            headers = {"Wf-Error": describe(error)[:1000], "Wf-Subject": message.raw_message.subject}
            await js.publish(self.topology.dead_subject("jobs"), body, headers=headers)
            await message.ack()
            self.metrics.dead_letters.inc()
            return

        with work_on(correlation_id=job.correlation_id, workflow_id=job.workflow_id, job_id=job.job_id):
            heartbeat = asyncio.create_task(_keep_in_progress(message))
            try:
                await self._run(js, job)
            except asyncio.CancelledError:
                await message.nack()  # stopped before it finished: another processor runs it now
                raise
            except Exception as error:
                self.metrics.errors.labels(step=job.step, error=type(error).__name__).inc()
                raise  # FastStream logs it; the job is delivered again once its ack wait is over
            finally:
                heartbeat.cancel()
            await message.ack()

    async def _run(self, js: JetStreamContext, job: ProcessJob) -> None:
        started = time.monotonic()
        result = await self.simulator.run(job)
        subject = self.topology.subject_for(result.kind, job.workflow_id)
        await js.publish(subject, result.model_dump_json().encode(), headers={"Nats-Msg-Id": result.message_id})
        outcome = result.error_type if isinstance(result, FailJob) else "completed"
        log.info("job %s of %s: %s", job.job_id, job.workflow_id, outcome)
        self.metrics.jobs.labels(step=job.step, outcome=outcome).inc()
        self.metrics.job_seconds.labels(step=job.step).observe(time.monotonic() - started)


async def _keep_in_progress(message: JobMessage) -> None:
    """Tells JetStream the job is still being worked on, so it is not delivered to another processor meanwhile."""
    while True:
        await asyncio.sleep(JOB_HEARTBEAT_S)
        await message.in_progress()
