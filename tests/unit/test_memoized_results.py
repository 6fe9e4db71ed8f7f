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

from contracts.definitions import StepState, TypeDefinition
from contracts.jobs import ProcessJob
from contracts.state import WorkflowState
from services.orchestrator.domain.declaration import TypeVersions, WorkflowType
from services.orchestrator.domain.engine import Engine, outbox
from services.orchestrator.domain.types import WORKFLOW_TYPES


class CountingRoutes:
    """A two-step type, run by an engine of the test's own, whose routes record every call with the context each one
    saw: its first step runs as soon as it is created."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        chain = TypeDefinition.model_validate(
            {
                "name": "chain",
                "title": "Chain",
                "initial": "Scoring",
                "states": {
                    "Scoring": {"kind": "step", "step": "score", "routes": [{"trigger": "scored"}]},
                    # Reads the result recorded before it.
                    "Reviewing": {
                        "kind": "step",
                        "step": "review",
                        "routes": [{"when": "context.score.output > 0.5", "trigger": "reviewed"}, {"trigger": "fail"}],
                    },
                    "Done": {"kind": "end"},
                    "Error": {"kind": "end", "succeeded": False},
                },
                "transitions": [
                    {"trigger": "scored", "source": "Scoring", "dest": "Reviewing"},
                    {"trigger": "reviewed", "source": "Reviewing", "dest": "Done"},
                    {"trigger": "fail", "source": "Scoring", "dest": "Error"},
                    {"trigger": "fail", "source": "Reviewing", "dest": "Error"},
                ],
            }
        )
        self.engine = Engine(TypeVersions([*WORKFLOW_TYPES.values(), WorkflowType.compile(chain)]))
        route = WorkflowType.route

        def counted(declared: WorkflowType, state: str, result: Mapping[str, Any], context: Mapping[str, Any]):
            step = declared.states[state]
            assert isinstance(step, StepState)
            self.calls.append((step.step, dict(context)))
            return route(declared, state, result, context)

        monkeypatch.setattr(WorkflowType, "route", counted)


@pytest.fixture
def routes(monkeypatch: pytest.MonkeyPatch) -> CountingRoutes:
    return CountingRoutes(monkeypatch)


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

    assert routes.calls == [("score", {"input": INPUT}), ("review", {"input": INPUT, "score": {"output": 0.7}})]


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
