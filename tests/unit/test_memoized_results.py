"""A step's result is recorded once (StepCompleted) and is then the context of the steps after it: never computed
again, not even when the log is folded again."""

from collections.abc import Mapping
from typing import Any

import pytest
from workflow_history import (
    INPUT,
    WORKFLOW_ID,
    approve,
    complete,
    create,
    create_expense,
    given,
    job_id,
    process,
)

from contracts.jobs import ProcessJob
from contracts.state import WorkflowState
from services.orchestrator.domain.declaration import End, Route, Step, WorkflowType
from services.orchestrator.domain.engine import Engine, outbox
from services.orchestrator.domain.types import WORKFLOW_TYPES


class CountingRoutes:
    """Routes that record every call, with the context each one saw."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.engine = Engine(WORKFLOW_TYPES)  # the fixture gives it the type whose routes these are

    def to(self, step: str, trigger: str):
        def route(result: Mapping[str, Any], context: Mapping[str, Any]) -> Route:
            self.calls.append((step, dict(context)))
            return Route(trigger)

        return route


@pytest.fixture
def routes() -> CountingRoutes:
    """A two-step type, run by an engine of the test's own (`routes.engine`): its first step runs as soon as it is
    created."""
    routes = CountingRoutes()
    chain = WorkflowType(
        name="chain",
        title="Chain",
        initial="Scoring",
        states={
            "Scoring": Step("score", route=routes.to("score", "scored")),
            "Reviewing": Step("review", route=routes.to("review", "reviewed")),
            "Done": End(),
            "Error": End(succeeded=False),
        },
        transitions=[
            {"trigger": "scored", "source": "Scoring", "dest": "Reviewing"},
            {"trigger": "reviewed", "source": "Reviewing", "dest": "Done"},
            {"trigger": "fail", "source": "Scoring", "dest": "Error"},
            {"trigger": "fail", "source": "Reviewing", "dest": "Error"},
        ],
    )
    routes.engine = Engine({**WORKFLOW_TYPES, "chain": chain})
    return routes


def test_a_step_result_lands_in_the_context_under_the_step_name(routes):
    history = given(create(workflow_type="chain"), complete(0.7, visit=1), engine=routes.engine)

    assert history.state.context == {"input": INPUT, "score": {"output": 0.7}}


def test_the_next_step_job_carries_the_results_recorded_before_it(routes):
    history = given(create(workflow_type="chain"), complete(0.7, visit=1), engine=routes.engine)

    [job, _timeout] = outbox(history.state)
    assert isinstance(job, ProcessJob)
    assert (job.step, job.job_id) == ("review", job_id(visit=2))
    assert job.context == {"input": INPUT, "score": {"output": 0.7}}


def test_each_route_sees_the_results_recorded_so_far_including_its_own(routes):
    given(create(workflow_type="chain"), complete(0.7, visit=1), complete(0.4, visit=2), engine=routes.engine)

    assert routes.calls == [
        ("score", {"input": INPUT, "score": {"output": 0.7}}),
        ("review", {"input": INPUT, "score": {"output": 0.7}, "review": {"output": 0.4}}),
    ]


def test_folding_the_log_again_gives_the_same_state_without_calling_any_route(routes):
    history = given(create(workflow_type="chain"), complete(0.7, visit=1), complete(0.4, visit=2), engine=routes.engine)
    state, calls = history.state, len(routes.calls)

    replayed = [routes.engine.fold(WorkflowState(id=WORKFLOW_ID), history.recorded) for _ in range(3)]

    assert replayed == [state] * 3
    assert state.business_state == "Done"
    assert len(routes.calls) == calls == 2


def test_the_expense_payment_job_carries_the_policy_check_result():
    history = given(
        create_expense(), process(), complete(0.5), approve(), approve(approver="fin-ann"), approve(approver="fin-bob")
    )

    [job, _timeout] = outbox(history.state)
    assert isinstance(job, ProcessJob)
    assert (job.step, job.context) == ("pay", {"input": INPUT, "validate": {"output": 0.5}})
