"""A job's result is data: a JSON object its step's schema may constrain, recorded whole, read by the routes and handed
to the steps after it; one that does not fit, or that a route cannot read, fails the step with the reason."""

import pytest
from pydantic import ValidationError
from workflow_history import INPUT, WORKFLOW_ID, History, job_id, last, only

from contracts.commands import MAX_RESULT_BYTES, CompleteJob, CreateWorkflow
from contracts.definitions import TypeDefinition
from contracts.events import StepAttemptFailed, StepCompleted, TransitionTaken
from services.orchestrator.domain.declaration import TypeVersions, WorkflowType
from services.orchestrator.domain.engine import Engine
from services.orchestrator.domain.types import WORKFLOW_TYPES

PAYMENT = TypeDefinition.model_validate(
    {
        "name": "payment",
        "title": "Payment",
        "initial": "Paying",
        "states": {
            "Paying": {
                "kind": "step",
                "step": "pay",
                "routes": [
                    {"when": "result.status == 'paid' && result.amount == input.amount", "trigger": "paid"},
                    {"trigger": "fail", "note": "'the bank said ' + result.status"},
                ],
                "result_schema": {
                    "type": "object",
                    "required": ["status", "payment_id"],
                    "properties": {"status": {"enum": ["paid", "declined"]}, "payment_id": {"type": "string"}},
                },
            },
            "Paid": {"kind": "end"},
            "Failed": {"kind": "end", "succeeded": False},
        },
        "transitions": [
            {"trigger": "paid", "source": "Paying", "dest": "Paid"},
            {"trigger": "fail", "source": "Paying", "dest": "Failed"},
        ],
    }
)
ENGINE = Engine(TypeVersions([*WORKFLOW_TYPES.values(), WorkflowType.compile(PAYMENT)]))


def paying() -> History:
    history = History(engine=ENGINE)
    history.record(CreateWorkflow(workflow_id=WORKFLOW_ID, workflow_type="payment", input=INPUT))
    return history


def answered(result: dict) -> CompleteJob:
    return CompleteJob(workflow_id=WORKFLOW_ID, job_id=job_id(visit=1), result=result)


def test_a_result_is_recorded_whole_and_its_fields_route_it():
    history = paying()
    result = {"status": "paid", "payment_id": "pay_123", "amount": 120}
    events = history.record(answered(result))
    assert only(events[:1], StepCompleted).result == result
    assert last(events, TransitionTaken).trigger == "paid"
    assert history.state.context == {"input": INPUT, "pay": result}


def test_a_route_reads_the_result_for_its_note():
    history = paying()
    events = history.record(answered({"status": "declined", "payment_id": "pay_9"}))
    assert (last(events, TransitionTaken).trigger, last(events, TransitionTaken).note) == (
        "fail",
        "the bank said declined",
    )


def test_a_result_that_does_not_fit_its_schema_fails_the_step_at_once_with_why():
    history = paying()
    events = history.record(answered({"status": "maybe"}))
    failed = events[0]
    assert isinstance(failed, StepAttemptFailed)
    assert (failed.error_type, failed.retry_at) == ("InvalidResult", None)
    assert "'payment_id' is a required property" in failed.error and "'maybe' is not one of" in failed.error
    assert history.state.business_state == "Failed"
    assert "pay" not in history.state.context  # not recorded as the step's result


def test_a_result_a_route_cannot_read_fails_the_step_with_the_reason():
    history = paying()
    events = history.record(answered({"status": "paid", "payment_id": "p"}))  # no amount to compare
    failed = events[0]
    assert isinstance(failed, StepAttemptFailed) and failed.error_type == "RouteError" and failed.retry_at is None
    assert "the route 'paid' could not be evaluated" in failed.error
    assert history.state.business_state == "Failed"


def test_a_result_sent_as_one_output_reads_as_an_object_and_one_too_large_is_refused():
    legacy = CompleteJob.model_validate({"workflow_id": WORKFLOW_ID, "job_id": "j", "output": 0.4})
    assert legacy.result == {"output": 0.4}
    with pytest.raises(ValidationError, match=f"at most {MAX_RESULT_BYTES} bytes"):
        CompleteJob(workflow_id=WORKFLOW_ID, job_id="j", result={"blob": "x" * MAX_RESULT_BYTES})
