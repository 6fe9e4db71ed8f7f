"""A worker: takes the jobs of the steps it registers, runs each step's handler, answers with the result.

One durable pull consumer per worker (its `name`) on the jobs work queue, filtered on its steps' subjects, so the
replicas of one worker share the jobs and two different workers can never take the same step (the broker refuses a
second consumer on a subject). A job is acked only once its answer is stored: a worker killed mid-job leaves it to
another after the ack wait, and the orchestrator keeps the first answer of a job only."""

import asyncio
import inspect
import json
import logging
import signal
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar, get_args, get_type_hints

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import AckPolicy, ConsumerConfig
from nats.js.client import JetStreamContext
from nats.js.errors import BadRequestError, NotFoundError
from pydantic import BaseModel, ValidationError

from wfworker import protocol
from wfworker.health import HealthServer, WorkerMetrics

log = logging.getLogger("wfworker")

InputT = TypeVar("InputT")
FETCH_BATCH = 16
DRAIN_GRACE_S = 5.0  # how long a stopping worker lets running jobs finish before it gives them back


class NonRetryableError(Exception):
    """Raise it from a handler when trying again cannot help (a declined card, a missing document): the step fails
    at once, whatever its retry policy. Any other exception is a retryable failure. The step may also declare error
    types non-retryable (`non_retryable` in its definition): the name of the exception's class is sent."""


class StepNotFree(RuntimeError):
    """Another worker already takes one of this worker's steps."""


@dataclass(frozen=True)
class Job(Generic[InputT]):
    """What a handler gets: the workflow's input as its declared type, and the results of the steps before it."""

    id: str
    workflow_id: str
    workflow_type: str
    step: str
    attempt: int  # how many times the workflow entered this step
    try_number: int  # the try within that entry
    input: InputT
    context: dict[str, Any]  # every recorded result before this step, by step name (and the raw input as "input")
    timeout_at: datetime | None

    @property
    def idempotency_key(self) -> str:
        """The same for every try and every delivery of this entry into the step: hand it to an outside system
        (a payment API's Idempotency-Key) so a try run again after a crash or a timeout does the work once."""
        return f"{self.workflow_id}:{self.step}:{self.attempt}"


Handler = Callable[[Job[Any]], Coroutine[Any, Any, BaseModel | dict[str, Any]]]


@dataclass(frozen=True)
class Step:
    workflow_type: str
    name: str
    handler: Handler
    input_type: Any


@dataclass
class Worker:
    """Runs step handlers for jobs. `credentials`: the NATS user and password (or None); `concurrency`: jobs run at
    once; `port`: where /metrics and /healthz are served (None: not served)."""

    nats_url: str | list[str]  # one server, or several (comma separated, or a list) to fail over between
    credentials: tuple[str, str] | None = None
    name: str = "worker"
    prefix: str = "wf"
    concurrency: int = 8
    port: int | None = None
    host: str = "0.0.0.0"
    connect_options: dict[str, Any] = field(default_factory=dict)  # more of nats.connect's (tls, inbox_prefix, ...)
    steps: dict[str, Step] = field(default_factory=dict)  # by jobs subject

    def __post_init__(self) -> None:
        self.metrics = WorkerMetrics()
        self._running: set[asyncio.Task] = set()
        self._stopping = asyncio.Event()
        self._ready = False

    def step(self, workflow_type: str, step: str) -> Callable[[Handler], Handler]:
        """Register the decorated coroutine as the handler of one step of one type. Its parameter's annotation,
        `Job[SomeModel]`, says how the input is read (a pydantic model, or dict)."""

        def register(handler: Handler) -> Handler:
            self.add_step(workflow_type, step, handler)
            return handler

        return register

    def add_step(self, workflow_type: str, step: str, handler: Handler) -> None:
        subject = protocol.jobs_subject(self.prefix, workflow_type, step)
        if subject in self.steps:
            raise ValueError(f"{workflow_type}.{step} has a handler already")
        self.steps[subject] = Step(workflow_type, step, handler, _input_type_of(handler))

    @property
    def consumer(self) -> ConsumerConfig:
        return ConsumerConfig(
            name=self.name,
            durable_name=self.name,
            filter_subjects=sorted(self.steps),
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=protocol.ACK_WAIT_S,
            max_deliver=protocol.MAX_DELIVER,
            max_ack_pending=max(1000, self.concurrency),
        )

    def run_forever(self) -> None:
        """Run until SIGTERM or Ctrl-C, then drain: finish what runs (give back what cannot), then exit."""
        asyncio.run(self.run())

    async def run(self) -> None:
        if not self.steps:
            raise ValueError("no steps registered: decorate a handler with @worker.step(type, step)")
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stop)
        health = HealthServer(self.metrics, lambda: self._ready and not self._stopping.is_set())
        if self.port is not None:
            health.start(self.host, self.port)
        nc = await self.connect()
        try:
            await self.serve(nc)
        finally:
            try:
                await asyncio.wait_for(nc.drain(), DRAIN_GRACE_S)
            except Exception:  # (a drain that hangs on a subscription nats-py never empties: close it then)
                await nc.close()
            health.stop()

    def stop(self) -> None:
        self._stopping.set()

    async def connect(self) -> Client:
        user, password = self.credentials or (None, None)
        servers = self.nats_url.split(",") if isinstance(self.nats_url, str) else self.nats_url
        return await nats.connect(
            servers,
            user=user,
            password=password,
            max_reconnect_attempts=-1,
            **(protocol.LIVENESS | self.connect_options),
        )

    async def serve(self, nc: Client) -> None:
        """Take jobs until stopped, then let the running ones finish (DRAIN_GRACE_S) and give the rest back."""
        js = nc.jetstream()
        stream = protocol.jobs_stream(self.prefix)
        await self._make_consumer(js, stream)
        lag = asyncio.create_task(self._report_lag(js, stream))
        inbox = self.connect_options.get("inbox_prefix", "_INBOX")  # a NATS user may own inboxes of its own
        pulls = await js.pull_subscribe_bind(self.name, stream, inbox_prefix=f"{inbox}.".encode())
        self._ready = True
        log.info("worker %s takes %s", self.name, ", ".join(sorted(self.steps)))
        try:
            await self._take_jobs(nc, pulls)
        finally:
            lag.cancel()
            await self._drain()
            await pulls.unsubscribe()  # (a drain would wait for the pull's unread status messages, never read)

    async def _take_jobs(self, nc: Client, pulls: JetStreamContext.PullSubscription) -> None:
        slots = asyncio.Semaphore(self.concurrency)
        while not self._stopping.is_set():
            await slots.acquire()
            slots.release()
            free = min(FETCH_BATCH, _free(slots))
            try:
                messages = await pulls.fetch(free, timeout=1.0)
            except TimeoutError:  # nothing came (nats-py raises its own or asyncio's: both are TimeoutError)
                continue
            except Exception as error:  # a failover: the consumer's leader moves (503), the connection reconnects
                log.warning("could not fetch jobs (%s: %s); trying again", type(error).__name__, error)
                await asyncio.sleep(0.5)
                continue
            for message in messages:
                await slots.acquire()
                task = asyncio.create_task(self._take(nc, message))
                self._running.add(task)
                task.add_done_callback(lambda done: (self._running.discard(done), slots.release()))

    async def _make_consumer(self, js: JetStreamContext, stream: str) -> None:
        """Create the worker's consumer, or bring it to this worker's steps; wait for the jobs stream while the
        orchestrator has not created it yet (or a cluster just formed answers slowly)."""
        while not self._stopping.is_set():
            try:
                await js.add_consumer(stream, self.consumer)
                return
            except BadRequestError as error:
                if error.err_code == 10100:  # filtered consumer not unique on a work queue stream
                    steps = ", ".join(sorted(self.steps))
                    raise StepNotFree(f"another worker takes one of {steps}: {error.description}") from None
                raise
            except (NotFoundError, NatsTimeoutError, NoRespondersError) as error:
                log.info("waiting for the jobs stream %s: %s", stream, error)
                await asyncio.sleep(0.5)

    async def _report_lag(self, js: JetStreamContext, stream: str) -> None:
        """Keep the lag gauge at the jobs waiting for this worker (pending, and taken but not acked)."""
        while True:
            try:
                info = await js.consumer_info(stream, self.name)
                self.metrics.lag.labels(consumer=self.name).set((info.num_pending or 0) + (info.num_ack_pending or 0))
            except Exception as error:  # a metric never stops the worker; the next round tries again
                log.warning("could not read the lag of %s: %s", self.name, error)
            await asyncio.sleep(5.0)

    async def _drain(self) -> None:
        if not self._running:
            return
        log.info("stopping: %d jobs still running", len(self._running))
        _, late = await asyncio.wait(set(self._running), timeout=DRAIN_GRACE_S)
        for task in late:  # each naks its job as it is cancelled: another worker takes it at once
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)

    async def _take(self, nc: Client, message: Msg) -> None:
        js = nc.jetstream()
        try:
            job_message = protocol.JobMessage.model_validate_json(message.data)
            step = self.steps[message.subject]
        except (ValidationError, KeyError) as error:
            await self._dead_letter(nc, message, str(error))
            return
        # On every line about the job: the ids that follow one workflow across services (as `extra`).
        ids = {"correlation_id": job_message.correlation_id, "workflow_id": job_message.workflow_id}
        ids["job_id"] = job_message.job_id
        started = time.monotonic()
        heartbeat = asyncio.create_task(_keep_in_progress(message))
        try:
            outcome, answer = await self._run(nc, step, job_message)
            if answer is not None:
                data = json.dumps(answer).encode()
                subject = protocol.results_subject(self.prefix, job_message.workflow_id)
                await js.publish(subject, data, headers={"Nats-Msg-Id": answer["message_id"]})
            await message.ack()
        except asyncio.CancelledError:
            await message.nak()  # stopped before it finished: another worker runs it now
            raise
        except Exception as error:  # the answer could not be stored: the job is delivered again after the ack wait
            self.metrics.errors.labels(step=step.name, error=type(error).__name__).inc()
            log.exception("job %s of %s: no answer sent", job_message.job_id, job_message.workflow_id, extra=ids)
            return
        finally:
            heartbeat.cancel()
        log.info("job %s of %s: %s", job_message.job_id, job_message.workflow_id, outcome, extra=ids)
        self.metrics.jobs.labels(step=step.name, outcome=outcome).inc()
        self.metrics.job_seconds.labels(step=step.name).observe(time.monotonic() - started)

    async def _run(self, nc: Client, step: Step, job_message: protocol.JobMessage) -> tuple[str, dict | None]:
        """The outcome and the answer to send (None: the try was given up, and the orchestrator knows it)."""
        now = datetime.now(UTC)
        try:
            job = _job_of(step, job_message)
        except ValidationError as error:
            return "InvalidInput", protocol.failed(job_message, str(error), "InvalidInput", False, now)
        remaining = (job.timeout_at - now).total_seconds() if job.timeout_at else None
        if remaining is not None and remaining <= 0:
            return "abandoned", None  # delivered after its try timed out: a new try has its own job
        abandoned = asyncio.Event()

        async def on_event(event: Msg) -> None:
            try:
                if protocol.abandons(json.loads(event.data), job.id):
                    abandoned.set()
            except ValueError:
                pass  # not an event this worker reads

        watch = await nc.subscribe(protocol.events_subject(self.prefix, job.workflow_id), cb=on_event)
        try:
            if await self._given_up_before_the_watch(nc, job):
                return "abandoned", None
            run = await _until_done_or_given_up(step.handler(job), abandoned, remaining)
        finally:  # also when this worker stops: the handler is cancelled with it
            await watch.unsubscribe()
        if run.cancelled():
            return ("abandoned" if abandoned.is_set() else "timed out"), None
        now = datetime.now(UTC)
        try:
            result = run.result()
        except NonRetryableError as error:
            return type(error).__name__, protocol.failed(job_message, str(error), type(error).__name__, False, now)
        except Exception as error:
            return type(error).__name__, protocol.failed(job_message, str(error), type(error).__name__, True, now)
        body = result.model_dump(mode="json") if isinstance(result, BaseModel) else result
        if len(json.dumps(body, separators=(",", ":")).encode()) > protocol.RESULT_MAX_BYTES:
            error = f"the result is larger than {protocol.RESULT_MAX_BYTES} bytes"
            return "ResultTooLarge", protocol.failed(job_message, error, "ResultTooLarge", False, now)
        return "completed", protocol.completed(job_message, body, now)

    async def _given_up_before_the_watch(self, nc: Client, job: Job[Any]) -> bool:
        """Whether the workflow's log already gives the try up: a cancel while the job waited in the queue, before
        this worker watched the workflow. Its last event says so: a cancel or a terminate ends the log."""
        stream, subject = protocol.events_stream(self.prefix), protocol.events_subject(self.prefix, job.workflow_id)
        try:
            last = await nc.jetstream().get_last_msg(stream, subject, direct=True)
        except NotFoundError:
            return False
        return protocol.abandons(json.loads(last.data or b"{}"), job.id)

    async def _dead_letter(self, nc: Client, message: Msg, reason: str) -> None:
        log.warning("dead-lettering an unreadable job: %s", reason)
        headers = {"Wf-Error": reason[:1000], "Wf-Subject": message.subject}
        await nc.jetstream().publish(protocol.dead_jobs_subject(self.prefix), message.data, headers=headers)
        await message.ack()
        self.metrics.dead_letters.inc()


def _job_of(step: Step, message: protocol.JobMessage) -> Job[Any]:
    raw_input = message.context.get("input", {})
    if inspect.isclass(step.input_type) and issubclass(step.input_type, BaseModel):
        typed_input = step.input_type.model_validate(raw_input)
    else:
        typed_input = raw_input
    return Job(
        id=message.job_id,
        workflow_id=message.workflow_id,
        workflow_type=message.workflow_type,
        step=message.step,
        attempt=message.attempt,
        try_number=message.try_number,
        input=typed_input,
        context=message.context,
        timeout_at=message.timeout_at,
    )


def _input_type_of(handler: Handler) -> Any:
    """The T of the handler's `job: Job[T]` parameter (dict when it names none)."""
    hints = get_type_hints(handler)
    hints.pop("return", None)
    for hint in hints.values():
        if arguments := get_args(hint):
            return arguments[0]
    return dict


async def _until_done_or_given_up(
    work: Coroutine[Any, Any, Any], given_up: asyncio.Event, timeout_s: float | None
) -> asyncio.Task:
    """Runs `work` until it ends, `given_up` is set or `timeout_s` passes (then it is cancelled), and returns its
    task. Cancelled itself (the worker stopping), it cancels `work` too."""
    run = asyncio.create_task(work)
    waiting = asyncio.create_task(given_up.wait())
    try:
        await asyncio.wait({run, waiting}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiting.cancel()
        if not run.done():
            run.cancel()
            await asyncio.gather(run, return_exceptions=True)
    return run


def _free(slots: asyncio.Semaphore) -> int:
    return slots._value  # (asyncio's Semaphore has no public count of free slots)


async def _keep_in_progress(message: Msg) -> None:
    """Tells JetStream the job is still being worked on, so it is not delivered to another worker meanwhile."""
    while True:
        await asyncio.sleep(protocol.HEARTBEAT_S)
        try:
            await message.in_progress()
        except Exception as error:  # reconnecting: the next beat may pass (else the job is delivered again: safe)
            log.warning("could not mark job %s in progress: %s", message.subject, error)
