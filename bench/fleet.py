"""Driving many workflows to an end over raw NATS, through failovers and restarts: what the cluster test, the chaos
run and the rolling-restart test share."""

import asyncio
import time
from collections.abc import Awaitable, Callable, Collection
from typing import Any

from nats.js.errors import APIError, KeyNotFoundError

from contracts.commands import ApproveWorkflow, CreateWorkflow, RejectWorkflow
from contracts.state import WorkflowState
from runtime.streams import UNAVAILABLE

FINAL = {"Finished", "Error"}
RESEND_FOR_S = 60.0
DUPLICATE_IN_PROCESS = 10158


class Fleet:
    """Drives many workflows through create-and-process → approve (when one waits for approval), from the read model,
    resending whatever a failover left unacknowledged. The workflows in `reject_first` are rejected once, processed
    again, then approved. It remembers every command it sent, for the checker."""

    def __init__(
        self,
        js,
        bucket,
        topology,
        workflow_ids: list[str],
        sweep_interval_s: float = 0.25,
        reject_first: Collection[str] = (),
        workflow_input: dict[str, Any] | None = None,
    ) -> None:
        self.js, self.bucket, self.topology, self.sweep_interval_s = js, bucket, topology, sweep_interval_s
        self.reject_first, self.workflow_input = set(reject_first), workflow_input or {}
        self.states: dict[str, WorkflowState | None] = dict.fromkeys(workflow_ids)
        self.sent: dict[str, list[str]] = {wf: [] for wf in workflow_ids}

    @property
    def ended(self) -> set[str]:
        return {wf for wf, state in self.states.items() if state and state.business_state in FINAL}

    def count(self, business_state: str) -> int:
        return sum(1 for state in self.states.values() if state and state.business_state == business_state)

    async def send(self, command) -> None:
        subject, data = self.topology.commands_subject(command.workflow_id), command.model_dump_json().encode()
        deadline = time.monotonic() + RESEND_FOR_S
        while True:
            try:
                await self.js.publish(subject, data, headers={"Nats-Msg-Id": command.message_id}, timeout=2)
                break
            except (*UNAVAILABLE, APIError) as error:
                # 10158: the same id is being stored by a publish whose answer was lost in a failover; ask again.
                if isinstance(error, APIError) and error.err_code != DUPLICATE_IN_PROCESS:
                    raise
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
        self.sent[command.workflow_id].append(command.message_id)

    async def start_all(self, per_second: float | None = None) -> None:
        """Create and process every workflow: at once, or `per_second` of them each second."""
        began = time.monotonic()
        for number, wf in enumerate(self.states):
            if per_second:
                await asyncio.sleep(began + number / per_second - time.monotonic())
            # Fixed ids, so that a resend after a failover is recognised as the same command.
            create = CreateWorkflow(workflow_id=wf, message_id=f"{wf}-create", start=True, input=self.workflow_input)
            await self.send(create)

    async def sweep(self) -> int:
        """Read the state of every workflow that has not ended; decide the ones waiting. How many have ended."""
        ended = self.ended
        pending = [wf for wf in self.states if wf not in ended]
        for wf, state in zip(pending, await asyncio.gather(*(self._read(wf) for wf in pending)), strict=True):
            self.states[wf] = state or self.states[wf]
            if state and state.business_state == "Waiting For Approval":
                await self._decide(wf, state)
        return len(self.ended)

    async def _decide(self, wf: str, state: WorkflowState) -> None:
        """Reject a first approval request of the workflows to reject once; approve every other (attempt counts the
        times it was processed, so a request read before the reject was applied is not approved)."""
        sent = self.sent[wf]
        if wf in self.reject_first and state.attempt == 1:
            if f"{wf}-reject" not in sent:
                await self.send(RejectWorkflow(workflow_id=wf, approver="bob", message_id=f"{wf}-reject"))
        elif f"{wf}-approve" not in sent:
            await self.send(ApproveWorkflow(workflow_id=wf, approver="ann", message_id=f"{wf}-approve"))

    async def _read(self, workflow_id: str) -> WorkflowState | None:
        try:
            return WorkflowState.model_validate_json((await self.bucket.get(workflow_id)).value)
        except KeyNotFoundError:
            return None
        except UNAVAILABLE:
            return None  # this sweep does not know; the next one asks again

    async def run_until(
        self, ended: int, timeout_s: float, after_each_sweep: Callable[[int], Awaitable[None]] | None = None
    ) -> None:
        """Sweep until `ended` workflows have ended; `after_each_sweep` is told how many have, each time."""
        deadline = time.monotonic() + timeout_s
        while True:
            done = await self.sweep()
            if after_each_sweep:
                await after_each_sweep(done)
            if done >= ended:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"only {done} of {ended} workflows ended within {timeout_s:.0f} s; {self.waiting}")
            await asyncio.sleep(self.sweep_interval_s)

    @property
    def waiting(self) -> dict[str, str | None]:
        """The workflows that have not ended, with their states as last read."""
        ended = self.ended
        return {
            wf: state and f"{state.business_state} / {state.infra_status}"
            for wf, state in self.states.items()
            if wf not in ended
        }

    @property
    def sent_commands(self) -> list[tuple[str, str]]:
        return [(wf, command) for wf, commands in self.sent.items() for command in commands]
