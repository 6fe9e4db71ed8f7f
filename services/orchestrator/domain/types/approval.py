"""Approval: process → (output above 0.25) → a person approves, or rejects to process again."""

from collections.abc import Mapping
from typing import Any

from services.orchestrator.domain.declaration import (
    End,
    RetryPolicy,
    Route,
    Step,
    Wait,
    WorkflowType,
    from_input,
    move,
    number,
)

THRESHOLD = 0.25


def check_output(result: Mapping[str, Any], _: Mapping[str, Any]) -> Route:
    output = result["output"]
    if output > THRESHOLD:
        return Route("request_approval")
    return Route("fail", f"Output {output:.3g} is not above {THRESHOLD}")


WORKFLOW_TYPE = WorkflowType(
    name="approval",
    title="Approval",
    initial="Unprocessed",
    states={
        "Unprocessed": Wait(accepts={"process": move("process")}),
        # The "send to queue" step: each try can fail to be sent (WF_SEND_FAILURE_RATE) and is then retried.
        "Sending To Queue": Step(
            "process",
            route=check_output,
            retry=RetryPolicy(max_tries=4, initial_delay_s=0.2, backoff="exponential", max_delay_s=5.0),
            timeout_s=from_input("step_timeout_s", 30.0),
            non_retryable=frozenset({"FatalError"}),
        ),
        "Waiting For Approval": Wait(accepts={"approve": move("approve"), "reject": move("reject")}),
        "Finished": End(succeeded=True),
        "Error": End(succeeded=False),
    },
    transitions=[
        {"trigger": "process", "source": "Unprocessed", "dest": "Sending To Queue"},
        {"trigger": "request_approval", "source": "Sending To Queue", "dest": "Waiting For Approval"},
        {"trigger": "fail", "source": "Sending To Queue", "dest": "Error"},
        {"trigger": "approve", "source": "Waiting For Approval", "dest": "Finished"},
        {"trigger": "reject", "source": "Waiting For Approval", "dest": "Sending To Queue"},
    ],
    search_fields={"output": number("process", "output")},
)
