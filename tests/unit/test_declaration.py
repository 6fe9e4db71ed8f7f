"""The language a type is declared in, and how a type describes itself to clients."""

import re

import pytest

from contracts.types import StateInfo, TransitionInfo, WorkflowTypeInfo
from services.orchestrator.domain.declaration import IllegalTransition, StateKind
from services.orchestrator.domain.types import WORKFLOW_TYPES

APPROVAL, EXPENSE = WORKFLOW_TYPES["approval"], WORKFLOW_TYPES["expense"]


def transitions(*rows: tuple[str, str, str]) -> list[TransitionInfo]:
    return [TransitionInfo(trigger=trigger, source=source, dest=dest) for source, trigger, dest in rows]


APPROVAL_TRANSITIONS = [
    ("Unprocessed", "process", "Sending To Queue"),
    ("Sending To Queue", "request_approval", "Waiting For Approval"),
    ("Sending To Queue", "fail", "Error"),
    ("Waiting For Approval", "approve", "Finished"),
    ("Waiting For Approval", "reject", "Sending To Queue"),
]
EXPENSE_TRANSITIONS = [
    ("Draft", "submit", "Validating"),
    ("Validating", "validated", "Manager Approval"),
    ("Validating", "fail", "Error"),
    ("Manager Approval", "manager_approve", "Finance Approval"),
    ("Manager Approval", "escalate", "Director Approval"),
    ("Director Approval", "director_approve", "Finance Approval"),
    ("Finance Approval", "finance_approve", "Paying"),
    ("Manager Approval", "reject", "Rejected"),
    ("Director Approval", "reject", "Rejected"),
    ("Finance Approval", "reject", "Rejected"),
    ("Paying", "paid", "Paid"),
    ("Paying", "fail", "Error"),
]


def test_the_shipped_types_are_discovered_by_name():
    assert sorted(WORKFLOW_TYPES) == ["approval", "expense"]


def test_the_approval_type_describes_its_states_and_transitions():
    assert APPROVAL.describe() == WorkflowTypeInfo(
        name="approval",
        title="Approval",
        initial="Unprocessed",
        states=[
            StateInfo(
                name="Unprocessed",
                kind="wait",
                accepts=["process", "cancel", "terminate"],
                waits_for=["role:requester"],
            ),
            StateInfo(name="Sending To Queue", kind="step", accepts=["cancel", "terminate"]),
            StateInfo(
                name="Waiting For Approval",
                kind="wait",
                accepts=["approve", "reject", "cancel", "terminate"],
                waits_for=["role:approver"],
            ),
            StateInfo(name="Finished", kind="succeeded", accepts=["archive"]),
            StateInfo(name="Error", kind="failed", accepts=["archive", "retry"]),
        ],
        transitions=transitions(*APPROVAL_TRANSITIONS),
        search_fields={"output": "number"},
    )


def test_the_expense_type_describes_its_states_and_transitions():
    assert EXPENSE.describe() == WorkflowTypeInfo(
        name="expense",
        title="Expense",
        initial="Draft",
        states=[
            StateInfo(
                name="Draft", kind="wait", accepts=["process", "cancel", "terminate"], waits_for=["role:requester"]
            ),
            StateInfo(name="Validating", kind="step", accepts=["cancel", "terminate"]),
            StateInfo(
                name="Manager Approval",
                kind="wait",
                accepts=["approve", "reject", "cancel", "terminate"],
                waits_for=["group:managers", "input:manager"],
            ),
            StateInfo(
                name="Director Approval",
                kind="wait",
                accepts=["approve", "reject", "cancel", "terminate"],
                waits_for=["director"],
            ),
            StateInfo(
                name="Finance Approval",
                kind="wait",
                accepts=["approve", "reject", "cancel", "terminate"],
                waits_for=["fin-ann", "fin-bob", "fin-cy"],
            ),
            StateInfo(name="Paying", kind="step", accepts=["cancel", "terminate"]),
            StateInfo(name="Paid", kind="succeeded", accepts=["archive"]),
            StateInfo(name="Rejected", kind="succeeded", accepts=["archive"]),
            StateInfo(name="Error", kind="failed", accepts=["archive", "retry"]),
        ],
        transitions=transitions(*EXPENSE_TRANSITIONS),
        search_fields={"amount": "number", "requester": "text"},
        input_schema=EXPENSE.definition.input_schema,
    )


@pytest.mark.parametrize("declared", WORKFLOW_TYPES.values(), ids=list(WORKFLOW_TYPES))
def test_a_description_lists_the_transitions_exactly_as_declared(declared):
    described = declared.describe()

    assert [t.model_dump() for t in described.transitions] == [t.model_dump() for t in declared.definition.transitions]
    assert [s.name for s in described.states] == list(declared.states)


@pytest.mark.parametrize(
    ("declared", "table"),
    [(APPROVAL, APPROVAL_TRANSITIONS), (EXPENSE, EXPENSE_TRANSITIONS)],
    ids=["approval", "expense"],
)
def test_each_trigger_leads_from_its_source_to_its_destination_and_is_illegal_anywhere_else(declared, table):
    triggers = {trigger for _, trigger, _ in table}
    for state in declared.states:
        for trigger in triggers:
            dest = next((d for s, t, d in table if (s, t) == (state, trigger)), None)
            if dest:
                assert declared.next_state(state, trigger) == dest
            else:
                message = f"{declared.name}: '{trigger}' cannot happen in state '{state}'"
                with pytest.raises(IllegalTransition, match=re.escape(message)):
                    declared.next_state(state, trigger)


def test_nothing_can_happen_before_the_workflow_has_a_state():
    with pytest.raises(IllegalTransition):
        APPROVAL.next_state(None, "process")


@pytest.mark.parametrize(
    ("state", "kind"),
    [
        ("Draft", StateKind.WAIT),
        ("Validating", StateKind.STEP),
        ("Paid", StateKind.SUCCEEDED),
        ("Rejected", StateKind.SUCCEEDED),
        ("Error", StateKind.FAILED),
    ],
)
def test_a_state_kind_follows_its_declaration(state, kind):
    assert EXPENSE.kind(state) is kind
