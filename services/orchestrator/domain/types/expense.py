"""Expense: a policy check, the manager's approval (escalated to the director when its deadline passes), then
finance's approval by 2 of its 3 approvers, then payment."""

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
    only,
    quorum,
    text,
)

FINANCE_APPROVERS = frozenset({"fin-ann", "fin-bob", "fin-cy"})
FALLBACK_APPROVER = "director"
MANAGER_DEADLINE_S = 24 * 3600.0
MANAGER_REMIND_BEFORE_S = 3600.0  # the manager is reminded an hour before the escalation
POLICY_FLOOR = 0.05  # the simulated policy check refuses an expense whose check output is below this


def policy_check(result: Mapping[str, Any], _: Mapping[str, Any]) -> Route:
    if result["output"] >= POLICY_FLOOR:
        return Route("validated")
    return Route("fail", f"The policy check refused the expense (score {result['output']:.3g})")


WORKFLOW_TYPE = WorkflowType(
    name="expense",
    title="Expense",
    initial="Draft",
    states={
        "Draft": Wait(accepts={"process": move("submit")}),
        "Validating": Step(
            "validate",
            route=policy_check,
            retry=RetryPolicy(max_tries=3, initial_delay_s=0.5, backoff="linear"),
            timeout_s=from_input("step_timeout_s", 10.0),
            non_retryable=frozenset({"FatalError"}),
        ),
        "Manager Approval": Wait(
            accepts={"approve": move("manager_approve"), "reject": move("reject")},
            deadline_s=from_input("manager_deadline_s", MANAGER_DEADLINE_S),
            on_deadline="escalate",
            remind_before_s=from_input("manager_remind_before_s", MANAGER_REMIND_BEFORE_S),
        ),
        "Director Approval": Wait(
            accepts={
                "approve": only({FALLBACK_APPROVER}, move("director_approve")),
                "reject": only({FALLBACK_APPROVER}, move("reject")),
            }
        ),
        "Finance Approval": Wait(
            accepts={
                "approve": quorum(FINANCE_APPROVERS, needed=2, trigger="finance_approve"),
                "reject": only(FINANCE_APPROVERS, move("reject")),
            }
        ),
        "Paying": Step(
            "pay",
            route=lambda _result, _context: Route("paid"),
            retry=RetryPolicy(max_tries=5, initial_delay_s=1.0, backoff="exponential", max_delay_s=30.0),
            timeout_s=30.0,
        ),
        "Paid": End(succeeded=True),
        "Rejected": End(succeeded=True),  # a decision, not a failure: the workflow completed
        "Error": End(succeeded=False),
    },
    transitions=[
        {"trigger": "submit", "source": "Draft", "dest": "Validating"},
        {"trigger": "validated", "source": "Validating", "dest": "Manager Approval"},
        {"trigger": "fail", "source": "Validating", "dest": "Error"},
        {"trigger": "manager_approve", "source": "Manager Approval", "dest": "Finance Approval"},
        {"trigger": "escalate", "source": "Manager Approval", "dest": "Director Approval"},
        {"trigger": "director_approve", "source": "Director Approval", "dest": "Finance Approval"},
        {"trigger": "finance_approve", "source": "Finance Approval", "dest": "Paying"},
        {"trigger": "reject", "source": "Manager Approval", "dest": "Rejected"},
        {"trigger": "reject", "source": "Director Approval", "dest": "Rejected"},
        {"trigger": "reject", "source": "Finance Approval", "dest": "Rejected"},
        {"trigger": "paid", "source": "Paying", "dest": "Paid"},
        {"trigger": "fail", "source": "Paying", "dest": "Error"},
    ],
    search_fields={"amount": number("input", "amount"), "requester": text("input", "requester")},
)
