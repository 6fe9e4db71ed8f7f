"""Command intake: a message from the commands stream is read and checked, handed to the handler, or dead-lettered.

Nothing is dropped silently: a message that cannot be applied is kept, with why, in the dead-letter stream, and when
its workflow is known the rejection is recorded in that workflow's log, so whoever sent it learns why."""

import json
import logging
from typing import Protocol

from nats.aio.msg import Msg
from nats.js.client import JetStreamContext
from prometheus_client import Counter
from pydantic import TypeAdapter, ValidationError

from contracts.commands import COMMAND, Command
from contracts.errors import describe, printable
from contracts.ids import CommandId, WorkflowId
from contracts.topology import Topology
from runtime.observability import work_on

log = logging.getLogger("orchestrator")
WORKFLOW_ID, COMMAND_ID = TypeAdapter(WorkflowId), TypeAdapter(CommandId)
MAX_REASON_CHARS = 2000


class Handler(Protocol):
    async def handle(self, command: Command) -> object: ...

    async def reject_unreadable(self, workflow_id: str, command_id: str | None, kind: str, reason: str) -> None: ...


class DeadLetters:
    """The commands' dead-letter stream: where a message of the commands stream that cannot be applied is kept."""

    def __init__(self, js: JetStreamContext, topology: Topology, kept: Counter) -> None:
        self.js, self.topology, self.kept = js, topology, kept

    async def keep(self, subject: str, data: bytes, sequence: int, reason: str) -> bool:
        """Keep the message at `sequence` of the commands stream, with why; False when it could not be kept."""
        log.warning("dead-lettering a message on %s: %s", subject, reason)
        headers = {
            "Wf-Error": reason[:1000],
            "Wf-Subject": printable(subject),  # a header is one line of text: a subject may hold anything
            "Nats-Msg-Id": f"{self.topology.commands_stream}-{sequence}",  # kept again (a redelivery): still one copy
        }
        try:
            receipt = await self.js.publish(self.topology.dead_subject("commands"), data, headers=headers)
        except Exception:
            log.exception("could not dead-letter a message on %s; it will be tried again", subject)
            return False
        if not receipt.duplicate:
            self.kept.inc()
        return True


class CommandIntake:
    """Validate → handle → ack, or dead-letter. `apply` is what the consumer calls for each message."""

    def __init__(self, topology: Topology, handler: Handler, dead_letters: DeadLetters, max_deliver: int) -> None:
        self.topology, self.handler, self.dead_letters = topology, handler, dead_letters
        self.max_deliver = max_deliver

    async def apply(self, message: Msg) -> bool:
        """Apply one command and ack it; False when it failed for now (it is to be redelivered)."""
        try:
            command = COMMAND.validate_json(message.data)
        except ValidationError as error:
            return await self._dead_letter(message, describe(error))
        ids = {"workflow_id": command.workflow_id, "command_id": command.message_id}
        with work_on(correlation_id=command.correlation_id, **ids):
            if problem := self._misplaced(message.subject, command):
                return await self._dead_letter(message, problem)
            try:
                await self.handler.handle(command)
            except Exception as error:
                if not self._last_delivery(message):
                    # Transient (broker unreachable, too many conflicts): redeliver after a pause.
                    log.exception("command %s failed; it will be redelivered", command.message_id)
                    return False
                # Poison: the consumer delivers it no more, so keep it where an operator sees it.
                log.exception("command %s failed on its last delivery", command.message_id)
                reason = f"not applied after {self.max_deliver} deliveries: {explain(error)}"
                return await self._dead_letter(message, reason)
            await message.ack()
            return True

    def _misplaced(self, subject: str, command: Command) -> str | None:
        """Why the command may not be taken on the subject it came on (None: it may)."""
        if command.workflow_id != self.topology.workflow_id_of(subject):
            return f"workflow_id {command.workflow_id} does not match the subject {subject}"
        if subject != (own := self.topology.subject_for(command.kind, command.workflow_id)):
            # Only the processors may publish results, and only the broker (a timer) fires timers.
            return f"a {command.kind} command is taken only on {own}, not on {subject}"
        return None

    def _last_delivery(self, message: Msg) -> bool:
        return message.metadata.num_delivered >= self.max_deliver

    async def _dead_letter(self, message: Msg, reason: str) -> bool:
        """Keep it as a dead letter, record the rejection in its workflow's log when the workflow is known, then ack
        it; False when it could not be kept (it is to be redelivered)."""
        subject, reason = message.subject, printable(reason.replace("\n", " | "))[:MAX_REASON_CHARS]
        if not await self.dead_letters.keep(subject, message.data, message.metadata.sequence.stream, reason):
            return False
        workflow_id, command_id, kind = salvage(self.topology.workflow_id_of(subject), message.data)
        if workflow_id:
            try:
                await self.handler.reject_unreadable(workflow_id, command_id, kind, f"invalid command: {reason}")
            except Exception:
                if not self._last_delivery(message):
                    log.exception("could not record the rejection of a message on %s; it will be redelivered", subject)
                    return False
                log.exception("could not record the rejection of a message on %s; its dead letter stays", subject)
        await message.ack()
        return True


def explain(error: Exception) -> str:
    """An exception as a dead letter's reason: its type and what it says."""
    return f"{type(error).__name__}: {describe(error) if isinstance(error, ValidationError) else error}"


def salvage(subject_workflow_id: str, body: bytes) -> tuple[str | None, str | None, str]:
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
