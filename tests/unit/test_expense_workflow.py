"""The expense type run by the engine: a policy check, the manager's approval escalated to the director when its
deadline passes, finance's approval by 2 of its 3 approvers (the same approver twice counts once), then payment."""

from datetime import timedelta

import pytest
from workflow_history import (
    INPUT,
    NOW,
    SITUATIONS,
    WORKFLOW_ID,
    approve,
    complete,
    create_expense,
    facts,
    fire,
    given,
    job_id,
    moved,
    pending_job,
    process,
    reject,
    rejection,
    scheduled,
    seconds_later,
)

from contracts.commands import FireTimer
from contracts.state import InfraStatus, PendingTimer, TimerPurpose
from services.orchestrator.domain.engine import outbox

DAY, HOUR = 24 * 3600, 3600


def in_manager_approval(**input_fields):
    return given(create_expense(input=INPUT | input_fields), process(), complete(0.5))


def in_finance_approval():
    return given(create_expense(), process(), complete(0.5), approve(approver="manager-mo"))


# ------------------------------------------------------------------------------------------------ the policy check


def test_an_expense_is_drafted_then_submitted_to_the_policy_check():
    history = given(create_expense())
    assert (history.state.business_state, history.state.infra_status) == ("Draft", InfraStatus.WAITING_FOR_EVENT)

    events = history.record(process())

    assert facts(events) == [
        moved("submit", "Draft", "Validating"),
        scheduled("validate", timeout_at=seconds_later(10)),
    ]
    assert (history.state.business_state, history.state.infra_status) == ("Validating", InfraStatus.PROCESSING_STEP)
    assert pending_job(history.state).step == "validate"


# A passed policy check: the manager's wait, its deadline a day on, its reminder an hour before that.
TO_THE_MANAGER = moved(
    "validated", "Validating", "Manager Approval", deadline_at=seconds_later(DAY), remind_at=seconds_later(DAY - HOUR)
)


@pytest.mark.parametrize(
    ("output", "routed"),
    [
        (0.0, moved("fail", "Validating", "Error", note="The policy check refused the expense (score 0)")),
        (0.049, moved("fail", "Validating", "Error", note="The policy check refused the expense (score 0.049)")),
        (0.05, TO_THE_MANAGER),
        (0.9, TO_THE_MANAGER),
    ],
)
def test_the_policy_check_refuses_an_expense_scoring_below_the_floor(output, routed):
    events = given(create_expense(), process()).when(complete(output))

    assert facts(events) == [
        ("StepCompleted", {"step": "validate", "job_id": job_id(), "result": {"output": output}}),
        routed,
    ]


def test_a_refused_expense_ends_in_error():
    errored = given(create_expense(), process(), complete(0.04)).state

    assert (errored.business_state, errored.infra_status, errored.error) == (
        "Error",
        InfraStatus.ERRORED,
        "The policy check refused the expense (score 0.04)",
    )


# ---------------------------------------------------------------------------------------------- the manager's deadline


def test_the_manager_approval_owes_a_deadline_timer_a_day_later_by_default():
    history = in_manager_approval()
    entered = history.events[-1]

    assert (history.state.infra_status, history.state.deadline_at) == (
        InfraStatus.WAITING_FOR_EVENT,
        seconds_later(DAY),
    )
    assert outbox(history.state) == [
        PendingTimer(
            purpose=TimerPurpose.DEADLINE,
            due_at=seconds_later(DAY),
            command=FireTimer(
                message_id=f"{WORKFLOW_ID}-deadline-3",
                workflow_id=WORKFLOW_ID,
                occurred_at=NOW,
                causation_id=entered.message_id,
                correlation_id=entered.correlation_id,
                timer_id="deadline-3",
            ),
        )
    ]


def test_the_input_sets_the_manager_deadline():
    history = in_manager_approval(manager_deadline_s=60)

    assert history.state.deadline_at == seconds_later(60)
    assert history.state.bookkeeping.timers["deadline-3"].due_at == seconds_later(60)


def test_the_deadline_passing_escalates_to_the_director():
    history = in_manager_approval()
    history.now = NOW + timedelta(days=1)

    events = history.record(fire("deadline-3"))

    assert facts(events) == [moved("escalate", "Manager Approval", "Director Approval", note="the deadline passed")]
    escalated = history.state
    assert (escalated.business_state, escalated.infra_status) == ("Director Approval", InfraStatus.WAITING_FOR_EVENT)
    assert (escalated.deadline_at, outbox(escalated)) == (None, [])


def test_the_director_approves_an_escalated_expense_on_to_finance():
    history = SITUATIONS["expense: Director Approval"].make()

    events = history.record(approve(approver="director", comment="ok"))

    assert facts(events) == [
        moved("director_approve", "Director Approval", "Finance Approval", actor="director", note="ok")
    ]


def test_the_manager_approving_in_time_goes_on_to_finance_and_the_deadline_is_no_longer_owed():
    history = in_manager_approval()

    events = history.record(approve(approver="manager-mo", comment="fine"))

    assert facts(events) == [
        moved("manager_approve", "Manager Approval", "Finance Approval", actor="manager-mo", note="fine")
    ]
    assert (history.state.deadline_at, outbox(history.state)) == (None, [])
    assert history.when(fire("deadline-3")) == []


# ------------------------------------------------------------------------------------------------ finance's quorum


def test_one_finance_approval_is_recorded_without_moving():
    history = in_finance_approval()

    events = history.record(approve(approver="fin-ann", comment="fine"))

    assert facts(events) == [("InputRecorded", {"command_kind": "approve", "actor": "fin-ann", "note": "1 of 2"})]
    assert history.state.business_state == "Finance Approval"
    assert history.state.bookkeeping.inputs == [{"command_kind": "approve", "actor": "fin-ann", "note": "1 of 2"}]


def test_the_same_finance_approver_twice_counts_once():
    history = in_finance_approval()
    history.record(approve(approver="fin-ann"))

    again = history.record(approve(approver="fin-ann"))

    assert rejection(again, "not_allowed").reason == "fin-ann has already sent approve; it counts once"
    assert history.state.business_state == "Finance Approval"
    assert [(e.command_kind, e.actor) for e in history.events if e.type == "InputRecorded"] == [("approve", "fin-ann")]


def test_two_distinct_finance_approvers_send_the_expense_to_payment_then_it_is_paid():
    history = in_finance_approval()
    history.record(approve(approver="fin-ann"), approve(approver="fin-ann"))

    events = history.record(approve(approver="fin-cy", comment="paying"))

    assert facts(events) == [
        moved("finance_approve", "Finance Approval", "Paying", actor="fin-cy", note="paying"),
        scheduled("pay", visit=5),
    ]
    assert (history.state.business_state, history.state.infra_status) == ("Paying", InfraStatus.PROCESSING_STEP)
    assert history.state.bookkeeping.inputs == []

    events = history.record(complete(0.3, visit=5))

    assert facts(events) == [
        ("StepCompleted", {"step": "pay", "job_id": job_id(visit=5), "result": {"output": 0.3}}),
        moved("paid", "Paying", "Paid"),
    ]
    assert (history.state.business_state, history.state.infra_status) == ("Paid", InfraStatus.COMPLETED)


def test_an_approver_outside_finance_does_not_count_toward_the_quorum():
    history = in_finance_approval()
    rejected = rejection(history.record(approve(approver="mallory")), "not_allowed")

    assert rejected.reason == "mallory may not approve here (only fin-ann, fin-bob, fin-cy)"
    assert facts(history.record(approve(approver="fin-bob"))) == [
        ("InputRecorded", {"command_kind": "approve", "actor": "fin-bob", "note": "1 of 2"})
    ]


def test_an_approval_from_an_earlier_stage_does_not_count_toward_the_finance_quorum():
    history = given(create_expense(), process(), complete(0.5), approve(approver="fin-ann"))

    assert facts(history.record(approve(approver="fin-bob"))) == [
        ("InputRecorded", {"command_kind": "approve", "actor": "fin-bob", "note": "1 of 2"})
    ]


# ------------------------------------------------------------------------------------------------ rejections


@pytest.mark.parametrize(
    ("situation", "approver"),
    [
        ("expense: Manager Approval", "manager-mo"),
        ("expense: Director Approval", "director"),
        ("expense: Finance Approval, one approval in", "fin-bob"),
        ("expense: Finance Approval, one approval in", "fin-ann"),
    ],
)
def test_a_reject_at_any_approval_stage_ends_the_expense_rejected_and_completed(situation, approver):
    history = SITUATIONS[situation].make()
    stage = history.state.current_state

    events = history.record(reject(approver=approver, reason="not in budget"))

    assert facts(events) == [moved("reject", stage, "Rejected", actor=approver, note="not in budget")]
    rejected = history.state
    assert (rejected.business_state, rejected.infra_status, rejected.error) == ("Rejected", InfraStatus.COMPLETED, None)
    assert outbox(rejected) == []
