"""Driving workflows through the real services over NATS, and reading their luck in advance.

Seeded draws are a pure function of (seed, key), so a test picks a workflow id whose draws take the path it tests."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from itertools import count

from nats.js.errors import KeyNotFoundError
from wfworker import Worker

from contracts.state import WorkflowState
from runtime.eventlog import read_events
from runtime.randomness import Randomness
from services.orchestrator.domain.types import SHIPPED
from tests.conftest import eventually

SEED = 20261124


class Luck:
    """What the orchestrator's and the processor's draws will be, for a seed and failure rates."""

    def __init__(self, seed: int = SEED, send_failure_rate: float = 0.25, **processor_rates: float) -> None:
        self.chance, self.send_failure_rate, self.rates = Randomness(seed), send_failure_rate, processor_rates

    def send_fails(self, workflow_id: str, visit: int, try_number: int) -> bool:
        return self.chance.draw("send", workflow_id, visit, try_number) < self.send_failure_rate

    def output(self, job: str) -> float:
        return self.chance.draw("output", job)

    def processor_does(self, what: str, job: str) -> bool:
        """`what` in transient / fatal / slow: does the processor inject it into this job?"""
        return self.chance.draw(what, job) < self.rates.get(what, 0.0)

    def clean(self, job: str) -> bool:
        return not any(self.processor_does(what, job) for what in ("transient", "fatal", "slow"))


def first_id(predicate, prefix: str = "wf") -> str:
    return next(wf for wf in (f"{prefix}-{i}" for i in count()) if predicate(wf))


def describe(event) -> str:
    """An event as a test reads it: its type, and for a transition its trigger."""
    return f"{event.type}:{event.trigger}" if event.type == "TransitionTaken" else event.type


class Driver:
    def __init__(self, js, topology) -> None:
        self.js, self.topology = js, topology

    async def send(self, command, dedup: bool = True) -> None:
        headers = {"Nats-Msg-Id": command.message_id} if dedup else None
        subject = self.topology.commands_subject(command.workflow_id)
        await self.js.publish(subject, command.model_dump_json().encode(), headers=headers)

    async def state(self, workflow_id: str) -> WorkflowState | None:
        kv = await self.js.key_value(self.topology.state_bucket)
        try:
            return WorkflowState.model_validate_json((await kv.get(workflow_id)).value)
        except KeyNotFoundError:
            return None

    async def reaches(self, workflow_id: str, business_state: str, timeout_s: float = 20.0, **fields) -> WorkflowState:
        """Wait until the read model shows this business state (and these field values)."""

        async def probe():
            state = await self.state(workflow_id)
            if state and state.business_state == business_state:
                if all(getattr(state, name) == value for name, value in fields.items()):
                    return state
            return None

        try:
            return await eventually(probe, timeout_s)
        except AssertionError:
            state = await self.state(workflow_id)
            seen = state.model_dump(include={"business_state", "infra_status", "attempt", "error"}) if state else None
            raise AssertionError(
                f"{workflow_id} did not reach {business_state} {fields} within {timeout_s}s; it is {seen}, "
                f"its log: {await self.history(workflow_id)}"
            ) from None

    async def events(self, workflow_id: str) -> list:
        return [recorded.event for recorded in await read_events(self.js, self.topology, workflow_id)]

    async def history(self, workflow_id: str) -> list[str]:
        return [describe(event) for event in await self.events(workflow_id)]

    async def has(self, workflow_id: str, entry: str, times: int = 1) -> bool:
        return (await self.history(workflow_id)).count(entry) >= times

    async def assert_consistent(self, workflow_id: str) -> WorkflowState:
        """The log is a legal path of the machine (the fold raises otherwise) and, once the workflow rests, the read
        model equals a replay of the log."""

        async def read_model_equals_replay():
            replayed = SHIPPED.fold(
                WorkflowState(id=workflow_id), await read_events(self.js, self.topology, workflow_id)
            )
            resting = replayed.infra_status not in ("Running", "Processing Step")
            return replayed if resting and await self.state(workflow_id) == replayed else None

        return await eventually(read_model_equals_replay)


@asynccontextmanager
async def taking_jobs(worker: Worker) -> AsyncIterator[Worker]:
    """The worker (of the worker library) taking jobs in this event loop, connected as it connects itself, until the
    block ends; then stopped as SIGTERM stops it. A worker that could not start raises its error at the end."""
    nc = await worker.connect()
    serving = asyncio.create_task(worker.serve(nc))
    await eventually(lambda: worker._ready or serving.done())
    try:
        yield worker
    finally:
        worker.stop()
        await serving
        await nc.drain()
