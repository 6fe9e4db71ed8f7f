"""The orchestrator's use case on the in-memory store: what it reads, and that a create is applied exactly once."""

from prometheus_client import CollectorRegistry

from contracts.commands import CreateWorkflow
from runtime.randomness import Randomness
from services.orchestrator.handler import CommandHandler
from services.orchestrator.metrics import OrchestratorMetrics
from services.orchestrator.store import InMemoryEventStore


class CountingStore(InMemoryEventStore):
    def __init__(self) -> None:
        super().__init__()
        self.loads = 0

    async def load(self, workflow_id):
        self.loads += 1
        return await super().load(workflow_id)


class Outbox:
    async def __call__(self, messages) -> None:
        pass

    async def cancel(self, timers) -> None:
        pass


def handler_on(store: InMemoryEventStore) -> CommandHandler:
    return CommandHandler(
        store, Outbox(), Randomness(seed=1), 0.0, OrchestratorMetrics(CollectorRegistry()), store.engine
    )


def event_types(store: InMemoryEventStore, workflow_id: str) -> list[str]:
    return [recorded.event.type for recorded in store.logs[workflow_id]]


async def test_a_create_of_a_new_workflow_reads_nothing_first():
    store = CountingStore()
    state = await handler_on(store).handle(CreateWorkflow(workflow_id="w1", start=True))
    assert store.loads == 0
    assert state.exists and state.bookkeeping.started and event_types(store, "w1")[0] == "WorkflowCreated"


async def test_a_create_delivered_again_is_applied_once():
    store = CountingStore()
    handler, create = handler_on(store), CreateWorkflow(workflow_id="w1", start=True)
    first = await handler.handle(create)
    again = await handler.handle(create)  # the guard refuses it on the empty state; the log then shows it applied
    assert again == first and store.loads == 1
    assert event_types(store, "w1").count("WorkflowCreated") == 1 and "CommandRejected" not in event_types(store, "w1")


async def test_a_second_create_of_an_existing_workflow_is_rejected_on_what_the_log_holds():
    store = InMemoryEventStore()
    handler = handler_on(store)
    await handler.handle(CreateWorkflow(workflow_id="w1", start=True))
    state = await handler.handle(CreateWorkflow(workflow_id="w1"))
    assert event_types(store, "w1").count("WorkflowCreated") == 1
    assert event_types(store, "w1")[-1] == "CommandRejected" and state.bookkeeping.started
