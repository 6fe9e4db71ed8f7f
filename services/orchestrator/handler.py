"""The orchestrator's one use case: load a workflow, decide on a command, append the events, send what is owed."""

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Protocol

from contracts.commands import Command, CreateWorkflow, FireTimer, MigrateWorkflow
from contracts.events import CommandRejected
from contracts.ids import new_id
from contracts.jobs import ProcessJob
from contracts.state import PendingTimer, WorkflowState
from runtime.randomness import Randomness
from services.orchestrator.domain.declaration import UnknownTypeVersion
from services.orchestrator.domain.engine import Context, Engine, outbox
from services.orchestrator.metrics import OrchestratorMetrics
from services.orchestrator.store import ConcurrencyConflict, EventStore

log = logging.getLogger("orchestrator")
MAX_CONFLICT_RETRIES = 8


class Outbox(Protocol):
    async def __call__(self, messages: list[ProcessJob | PendingTimer]) -> None:
        """Send what a state owes (idempotent: fixed message ids)."""

    async def cancel(self, timers: list[PendingTimer]) -> None:
        """Withdraw timers no longer owed, so they do not fire later as commands that change nothing."""


async def nothing_to_refresh() -> None:
    """The engine's types are all it will ever run (a test's own)."""


class CommandHandler:
    def __init__(
        self,
        store: EventStore,
        send_outbox: Outbox,
        randomness: Randomness,
        send_failure_rate: float,
        metrics: OrchestratorMetrics,
        engine: Engine,
        refresh_types: Callable[[], Awaitable[None]] = nothing_to_refresh,
    ) -> None:
        self.store, self.send_outbox, self.engine = store, send_outbox, engine
        self.refresh_types = refresh_types
        self.randomness, self.send_failure_rate = randomness, send_failure_rate
        self.metrics = metrics

    def context(self) -> Context:
        def send_fails(workflow_id: str, visit: int, try_number: int) -> bool:
            return self.randomness.draw("send", workflow_id, visit, try_number) < self.send_failure_rate

        return Context(now=datetime.now(UTC), send_fails=send_fails)

    async def handle(self, command: Command) -> WorkflowState:
        """Apply a command exactly once. (The consumer hands one workflow's commands over one at a time, in order.)"""
        with self.metrics.seconds.time():
            if (wanted := _version_named(command)) and wanted > self.engine.types.highest_version():
                await self.refresh_types()  # a version published a moment ago, maybe through another replica
            try:
                return await self._apply(command)
            except UnknownTypeVersion:  # published through another replica a moment ago: read the bucket, go on
                await self.refresh_types()
                return await self._apply(command)

    async def _apply(self, command: Command) -> WorkflowState:
        # A conflict means another replica appended first: reload and decide again.
        # A create is for a new workflow, so it is first decided on an empty state without reading anything: its
        # append's guard (the workflow's log is still empty) refuses it if the workflow exists after all.
        assume_new = isinstance(command, CreateWorkflow)
        for _ in range(MAX_CONFLICT_RETRIES):
            state = WorkflowState(id=command.workflow_id) if assume_new else await self.store.load(command.workflow_id)
            assume_new = False
            if command.message_id in state.bookkeeping.applied_commands:
                # Delivered again: the log has it. A crash may have come between append and send, so send what the
                # state owes once more (idempotent) and make sure the read model caught up.
                await self.send_outbox(outbox(state))
                await self.store.save(state)
                self.metrics.commands.labels(kind=command.kind, outcome="duplicate").inc()
                return state
            decision = self.engine.decide(state, command, self.context())
            events = decision.events
            try:
                new_state = await self.store.append(decision)
            except ConcurrencyConflict:
                log.info("conflict on %s, deciding %s again", command.workflow_id, command.message_id)
                self.metrics.conflicts.inc()
                continue
            self.metrics.record(command.kind, events)
            log.info(
                "%s %s: %s", command.kind, command.workflow_id, ", ".join(e.type for e in events) or "nothing to do"
            )
            owed_before = outbox(state)
            if new_messages := [message for message in outbox(new_state) if message not in owed_before]:
                await self.send_outbox(new_messages)
            if settled := _settled_timers(state, new_state, command):
                await self.send_outbox.cancel(settled)
            await self.store.save(new_state)
            return new_state
        raise ConcurrencyConflict(f"gave up on {command.message_id} after {MAX_CONFLICT_RETRIES} conflicts")

    async def reject_unreadable(self, workflow_id: str, command_id: str | None, kind: str, reason: str) -> None:
        """Record that a message on a workflow's command subject could not be read as a command."""
        command_id = command_id or new_id()
        for _ in range(MAX_CONFLICT_RETRIES):
            state = await self.store.load(workflow_id)
            if command_id in state.bookkeeping.applied_commands:
                return
            rejected = CommandRejected(
                message_id=f"{command_id}-1",
                workflow_id=workflow_id,
                causation_id=command_id,
                correlation_id=command_id,
                command_id=command_id,
                command_kind=kind,
                code="invalid",
                reason=reason,
            )
            try:
                await self.store.save(await self.store.append(self.engine.decision(state, [rejected])))
                return
            except ConcurrencyConflict:
                continue


def _version_named(command: Command) -> int | None:
    if isinstance(command, CreateWorkflow):
        return command.type_version
    return command.to_version if isinstance(command, MigrateWorkflow) else None


def _settled_timers(before: WorkflowState, after: WorkflowState, command: Command) -> list[PendingTimer]:
    """Timers the decision no longer owes (a step done before its timeout, a wait answered before its deadline), but
    not the one that has just fired: the broker has already let go of that one."""
    fired = command.timer_id if isinstance(command, FireTimer) else None
    return [
        timer
        for timer_id, timer in before.bookkeeping.timers.items()
        if timer_id not in after.bookkeeping.timers and timer_id != fired
    ]
