"""Wiring: the pull consumer on the commands stream (consumer.py) feeding the command handler, served by FastStream's
ASGI app (/metrics, /healthz) on its broker's connection."""

import asyncio
import json
import logging
from functools import partial
from typing import Any

from faststream.asgi import AsgiFastStream, make_ping_asgi
from faststream.nats import NatsBroker
from nats.aio.msg import Msg
from prometheus_client import CollectorRegistry, make_asgi_app
from pydantic import TypeAdapter, ValidationError

from contracts.commands import COMMAND
from contracts.envelope import utcnow
from contracts.errors import describe, printable
from contracts.ids import CommandId, WorkflowId
from runtime.draining import GRACEFUL_TIMEOUT_S
from runtime.nats_protocol import read_every_subject_as_the_server_sends_it
from runtime.observability import correlation_id, report_consumer_lag
from runtime.randomness import Randomness
from runtime.settings import pull_inbox_prefix
from runtime.streams import ensure_topology, patiently
from services.orchestrator.consumer import CommandConsumer
from services.orchestrator.domain.types import WORKFLOW_TYPES
from services.orchestrator.handler import CommandHandler
from services.orchestrator.metrics import OrchestratorMetrics
from services.orchestrator.outbox import JetStreamOutbox
from services.orchestrator.retention import Retention
from services.orchestrator.settings import OrchestratorSettings
from services.orchestrator.store import JetStreamEventStore
from services.orchestrator.sweeper import PassedOverSweeper

log = logging.getLogger("orchestrator")
WORKFLOW_ID, COMMAND_ID = TypeAdapter(WorkflowId), TypeAdapter(CommandId)


def create_app(settings: OrchestratorSettings) -> AsgiFastStream:
    read_every_subject_as_the_server_sends_it()  # any client chooses the command subjects' last token
    topology = settings.topology
    registry = CollectorRegistry()
    metrics = OrchestratorMetrics(registry)
    # Not FastStream's Prometheus middleware: it labels by subject, and every workflow has a subject of its own, so
    # its series grew with every workflow (measured: 44 MB of /metrics at 5 700 workflows). Ours are bounded.
    broker = NatsBroker(
        **settings.broker_connection("orchestrator"),
        max_reconnect_attempts=-1,
        log_level=logging.DEBUG,
        graceful_timeout=GRACEFUL_TIMEOUT_S,
    )
    app = AsgiFastStream(
        broker,
        asgi_routes=[("/metrics", make_asgi_app(registry)), ("/healthz", make_ping_asgi(broker, timeout=2.0))],
    )
    wiring: dict[str, Any] = {}  # made once connected: the handler and the consumer
    background: set[asyncio.Task] = set()
    max_deliver = topology.orchestrator_consumer().max_deliver

    @app.on_startup
    async def connect() -> None:
        await broker.connect()
        nc = broker.connection
        js = nc.jetstream()
        # It owns the streams and buckets. It writes the log, jobs, timers, dead letters, the read model and the types.
        writes = [topology.events_subject(), topology.jobs_subject(), topology.timer_subject("*", "*")]
        writes += [topology.dead_subject("commands"), topology.kv_subjects(topology.state_bucket)]
        writes += [topology.kv_subjects(topology.types_bucket)]
        await ensure_topology(js, topology, writes)
        state_bucket = await js.key_value(topology.state_bucket)
        store = JetStreamEventStore(nc, js, state_bucket, topology, on_batch_commit=metrics.batch_commits.inc)
        outbox = JetStreamOutbox(js, topology)
        types = await js.key_value(topology.types_bucket)
        for declared in WORKFLOW_TYPES.values():  # what clients draw the machines and offer commands from
            await types.put(declared.name, declared.describe().model_dump_json().encode())
        wiring["handler"] = CommandHandler(
            store, outbox, Randomness(settings.seed), settings.send_failure_rate, metrics
        )

    @app.after_startup
    async def watch_lag() -> None:
        js = broker.connection.jetstream()
        lag = report_consumer_lag(js, topology.commands_stream, "orchestrator", metrics.lag)
        background.add(asyncio.create_task(lag, name="consumer-lag"))

    @app.on_shutdown
    async def stop_watching() -> None:
        for task in background:
            task.cancel()

    @app.after_startup
    async def consume() -> None:
        js = broker.connection.jetstream()
        # Created here, or an existing one brought to this config (its subjects, its ack wait). Patiently: on a
        # cluster just formed, a new consumer's raft group may take longer than one request's timeout.
        consumer_config = topology.orchestrator_consumer()
        await patiently(partial(js.add_consumer, topology.commands_stream, consumer_config))
        subscription = await js.pull_subscribe_bind(
            consumer_config.durable_name, topology.commands_stream, inbox_prefix=pull_inbox_prefix("orchestrator")
        )
        consumer = wiring["consumer"] = CommandConsumer(broker.connection, subscription, apply, topology.workflow_id_of)
        consumer.start()
        sweeper = PassedOverSweeper(js, topology, keep_dead_letter)
        background.add(asyncio.create_task(sweeper.run(settings.sweep_every_s), name="sweeper"))
        if settings.retention_days:
            retention = Retention(js, topology, settings.retention_days).run(settings.retention_every_s, utcnow)
            background.add(asyncio.create_task(retention, name="retention"))

    @app.on_shutdown
    async def drain() -> None:
        given_back = await wiring["consumer"].stop()
        log.info("orchestrator stopped consuming; gave back %d fetched command(s) it had not applied", given_back)

    async def apply(message: Msg) -> bool:
        """Apply one command and ack it; False when it failed for now (it is to be redelivered)."""
        subject = message.subject
        try:
            command = COMMAND.validate_json(message.data)
            correlation_id.set(command.correlation_id)
            if command.workflow_id != topology.workflow_id_of(subject):
                raise ValueError(f"workflow_id {command.workflow_id} does not match the subject {subject}")
            if subject != (own := topology.subject_for(command.kind, command.workflow_id)):
                # Only the processors may publish results, and only the broker (a timer) fires timers.
                raise ValueError(f"a {command.kind} command is taken only on {own}, not on {subject}")
        except ValidationError as error:
            return await dead_letter(message, describe(error))
        except ValueError as error:
            return await dead_letter(message, str(error))
        try:
            await wiring["handler"].handle(command)
        except Exception as error:
            if not delivered_for_the_last_time(message):
                # Transient (broker unreachable, too many conflicts): redeliver after a pause.
                log.exception("command %s failed; it will be redelivered", command.message_id)
                return False
            # Poison: the consumer delivers it no more, so keep it where an operator sees it.
            log.exception("command %s failed on its last delivery", command.message_id)
            return await dead_letter(message, f"not applied after {max_deliver} deliveries: {_explain(error)}")
        await message.ack()
        return True

    def delivered_for_the_last_time(message: Msg) -> bool:
        return message.metadata.num_delivered >= max_deliver

    async def dead_letter(message: Msg, reason: str) -> bool:
        """Never drop a bad command silently: keep it, with the error, in the dead-letter stream, and when the
        workflow is known, record the rejection in its log so whoever sent it learns why. Then ack it; False when
        it could not be kept (it is to be redelivered)."""
        subject, reason = message.subject, printable(reason.replace("\n", " | "))[:2000]
        if not await keep_dead_letter(subject, message.data, message.metadata.sequence.stream, reason):
            return False
        workflow_id, command_id, kind = _salvage(topology.workflow_id_of(subject), message.data)
        if workflow_id:
            try:
                await wiring["handler"].reject_unreadable(workflow_id, command_id, kind, f"invalid command: {reason}")
            except Exception:
                if not delivered_for_the_last_time(message):
                    log.exception("could not record the rejection of a message on %s; it will be redelivered", subject)
                    return False
                log.exception("could not record the rejection of a message on %s; its dead letter stays", subject)
        await message.ack()
        return True

    async def keep_dead_letter(subject: str, data: bytes, sequence: int, reason: str) -> bool:
        """Keep a message of the commands stream, with why, in the dead-letter stream; False when it could not."""
        log.warning("dead-lettering a message on %s: %s", subject, reason)
        headers = {
            "Wf-Error": reason[:1000],
            "Wf-Subject": printable(subject),  # a header is one line of text: a subject may hold anything
            "Nats-Msg-Id": f"{topology.commands_stream}-{sequence}",  # kept again (a redelivery): still one copy
        }
        js = broker.connection.jetstream()
        try:
            kept = await js.publish(topology.dead_subject("commands"), data, headers=headers)
        except Exception:
            log.exception("could not dead-letter a message on %s; it will be tried again", subject)
            return False
        if not kept.duplicate:
            metrics.dead_letters.inc()
        return True

    return app


def _explain(error: Exception) -> str:
    """An exception as a dead letter's reason: its type and what it says."""
    return f"{type(error).__name__}: {describe(error) if isinstance(error, ValidationError) else error}"


def _salvage(subject_workflow_id: str, body: bytes) -> tuple[str | None, str | None, str]:
    """What can be read off an unreadable command to record its rejection: a valid workflow id (else None: there is
    no log to record it in), its message id and its kind."""
    try:
        workflow_id = WORKFLOW_ID.validate_python(subject_workflow_id)
    except ValidationError:
        workflow_id = None
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # (nested deeper than Python's parser goes)
        data = None
    if not isinstance(data, dict):
        return workflow_id, None, "unknown"
    try:
        command_id = COMMAND_ID.validate_python(data.get("message_id"))
    except ValidationError:
        command_id = None
    kind = data.get("kind")
    return workflow_id, command_id, kind[:64] if isinstance(kind, str) else "unknown"
