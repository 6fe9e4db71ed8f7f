"""Every command refused where it cannot apply, for both shipped types: one CommandRejected that says why, and the
workflow otherwise unchanged."""

import pytest
from workflow_history import (
    COMMAND_OF_KIND,
    INPUT,
    SITUATIONS,
    WORKFLOW_ID,
    History,
    approve,
    command_in,
    complete,
    create,
    create_expense,
    facts,
    fail_job,
    fire,
    given,
    job_id,
    process,
    reject,
    rejection,
    send_fails_on,
)

from contracts.events import CommandRejected, RecordedEvent
from services.orchestrator.domain.types import SHIPPED, WORKFLOW_TYPES

STEP_RUNNING = "a step is running; wait for it"
NOT_ERRORED = "only a workflow that errored can be retried"
NOT_ENDED = "only an ended workflow can be archived"
FINAL = "it is final"


def refused_all_but(allowed: set[str], why: str) -> dict[str, str]:
    return {kind: why for kind in ("process", "approve", "reject", "cancel", "terminate") if kind not in allowed}


# For each situation, the commands refused there and why; every other command of COMMAND_OF_KIND applies.
REFUSED: dict[str, dict[str, str]] = {
    "approval: Unprocessed": {
        "approve": "allowed now: process",
        "reject": "allowed now: process",
        "retry": NOT_ERRORED,
        "archive": NOT_ENDED,
    },
    "approval: Sending To Queue, job in flight": refused_all_but({"cancel", "terminate"}, STEP_RUNNING)
    | {"retry": NOT_ERRORED, "archive": NOT_ENDED},
    "approval: Sending To Queue, retry due": refused_all_but({"cancel", "terminate"}, STEP_RUNNING)
    | {"retry": NOT_ERRORED, "archive": NOT_ENDED},
    "approval: Waiting For Approval": {
        "process": "allowed now: approve, reject",
        "retry": NOT_ERRORED,
        "archive": NOT_ENDED,
    },
    "approval: Finished": refused_all_but(set(), FINAL) | {"retry": NOT_ERRORED},
    "approval: Error": refused_all_but(set(), FINAL),
    "approval: cancelled while Sending To Queue": refused_all_but(set(), "it was cancelled") | {"retry": NOT_ERRORED},
    "approval: terminated while Waiting For Approval": refused_all_but(set(), "it was terminated")
    | {"retry": NOT_ERRORED},
    "approval: Finished, archived": refused_all_but(set(), FINAL)
    | {"retry": NOT_ERRORED, "archive": "it is already archived"},
    "expense: Draft": {
        "approve": "allowed now: process",
        "reject": "allowed now: process",
        "retry": NOT_ERRORED,
        "archive": NOT_ENDED,
    },
    "expense: Validating": refused_all_but({"cancel", "terminate"}, STEP_RUNNING)
    | {"retry": NOT_ERRORED, "archive": NOT_ENDED},
    "expense: Manager Approval": {
        "process": "allowed now: approve, reject",
        "retry": NOT_ERRORED,
        "archive": NOT_ENDED,
    },
    "expense: Director Approval": {
        "process": "allowed now: approve, reject",
        "retry": NOT_ERRORED,
        "archive": NOT_ENDED,
    },
    "expense: Finance Approval, one approval in": {
        "process": "allowed now: approve, reject",
        "retry": NOT_ERRORED,
        "archive": NOT_ENDED,
    },
    "expense: Paying": refused_all_but({"cancel", "terminate"}, STEP_RUNNING)
    | {"retry": NOT_ERRORED, "archive": NOT_ENDED},
    "expense: Paid": refused_all_but(set(), FINAL) | {"retry": NOT_ERRORED},
    "expense: Rejected": refused_all_but(set(), FINAL) | {"retry": NOT_ERRORED},
    "expense: Error": refused_all_but(set(), FINAL),
}
CASES = [(situation, kind) for situation in SITUATIONS for kind in COMMAND_OF_KIND]


def test_the_situations_reach_every_state_of_both_types():
    reached = {(name.split(":")[0], situation.make().state.business_state) for name, situation in SITUATIONS.items()}

    declared_states = {(name, state) for name, declared in WORKFLOW_TYPES.items() for state in declared.states}
    assert reached == declared_states


def test_the_table_covers_every_situation():
    assert REFUSED.keys() == SITUATIONS.keys()


@pytest.mark.parametrize(("situation", "kind"), [case for case in CASES if case[1] in REFUSED[case[0]]])
def test_a_command_is_refused_where_it_is_not_allowed_and_changes_nothing(situation, kind):
    history = SITUATIONS[situation].make()
    before = history.state
    command = command_in(situation, kind)

    rejected = rejection(history.when(command), "not_allowed")

    why = REFUSED[situation][kind]
    assert rejected.reason == f"cannot {kind} a workflow in state '{before.business_state}' ({why})"
    assert (rejected.command_id, rejected.command_kind) == (command.message_id, kind)
    after = SHIPPED.evolve(before, RecordedEvent(sequence=before.last_sequence + 1, event=rejected))
    recorded = {"last_sequence": True, "bookkeeping": {"applied_commands": True}}  # what recording the rejection does
    assert after.model_dump(exclude=recorded) == before.model_dump(exclude=recorded)
    assert (after.last_sequence, after.bookkeeping.applied_commands) == (
        before.last_sequence + 1,
        (*before.bookkeeping.applied_commands, command.message_id),
    )


@pytest.mark.parametrize(("situation", "kind"), [case for case in CASES if case[1] not in REFUSED[case[0]]])
def test_a_command_applies_where_it_is_allowed(situation, kind):
    events = SITUATIONS[situation].make().when(command_in(situation, kind))

    assert events
    assert not any(isinstance(event, CommandRejected) for event in events)


# -------------------------------------------------------------------------------------------- refused by who sent it


@pytest.mark.parametrize(
    ("situation", "command", "reason"),
    [
        ("expense: Director Approval", approve(approver="ann"), "ann may not approve here (only director)"),
        ("expense: Director Approval", approve(approver="fin-ann"), "fin-ann may not approve here (only director)"),
        ("expense: Director Approval", reject(approver="bob"), "bob may not reject here (only director)"),
        (
            "expense: Finance Approval, one approval in",
            approve(approver="mallory"),
            "mallory may not approve here (only fin-ann, fin-bob, fin-cy)",
        ),
        (
            "expense: Finance Approval, one approval in",
            approve(approver="fin-ann"),
            "fin-ann has already sent approve; it counts once",
        ),
        (
            "expense: Finance Approval, one approval in",
            reject(approver="ann"),
            "ann may not reject here (only fin-ann, fin-bob, fin-cy)",
        ),
    ],
)
def test_a_wait_refuses_a_command_from_someone_it_does_not_accept(situation, command, reason):
    history = SITUATIONS[situation].make()
    before = history.state

    rejected = rejection(history.when(command), "not_allowed")

    assert rejected.reason == reason
    after = SHIPPED.evolve(before, RecordedEvent(sequence=before.last_sequence + 1, event=rejected))
    assert (after.business_state, after.bookkeeping.inputs) == (before.business_state, before.bookkeeping.inputs)


# ------------------------------------------------------------------------------------------------ other codes


@pytest.mark.parametrize(
    "command",
    [
        *(make() for make in COMMAND_OF_KIND.values()),
        complete(0.8),
        fail_job(),
        fire("timeout-2-1"),
    ],
    ids=[*COMMAND_OF_KIND, "complete_job", "fail_job", "fire_timer"],
)
def test_any_command_on_a_workflow_never_created_is_rejected_as_unknown(command):
    history = History()

    rejected = rejection(history.when(command), "unknown_workflow")

    assert rejected.reason == f"workflow {WORKFLOW_ID} does not exist"
    history.recorded += [RecordedEvent(sequence=1, event=rejected)]
    assert (history.state.exists, history.state.bookkeeping.started, history.state.last_sequence) == (False, False, 1)


@pytest.mark.parametrize("make_history", [lambda: given(create()), lambda: given(create_expense(), process())])
def test_creating_a_workflow_twice_is_rejected_as_already_existing(make_history):
    rejected = rejection(make_history().when(create()), "already_exists")

    assert rejected.reason == f"workflow {WORKFLOW_ID} already exists"


def test_creating_a_workflow_of_an_unknown_type_is_rejected_naming_the_known_ones():
    rejected = rejection(History().when(create(workflow_type="loan")), "unknown_type")

    assert rejected.reason == "unknown workflow type 'loan' (known: approval, expense)"


def test_a_rejected_creation_leaves_the_workflow_uncreated_so_it_can_be_created_after():
    history = given(create(workflow_type="loan"))

    assert history.state.exists is False
    assert facts(history.when(create()))[0] == (
        "WorkflowCreated",
        {"workflow_type": "approval", "type_version": 1, "input": INPUT},
    )


@pytest.mark.parametrize(
    ("make_history", "command", "stale_job"),
    [
        pytest.param(
            lambda: given(create(), process()), complete(0.8, job_id="wf-1-9-9"), "wf-1-9-9", id="unknown job id"
        ),
        pytest.param(
            lambda: given(create(), process(), complete(0.8)), complete(0.8), job_id(), id="result already recorded"
        ),
        pytest.param(
            lambda: given(create(), process(), complete(0.4), reject()),
            complete(0.8),
            job_id(),
            id="result of the visit before the rejection",
        ),
        pytest.param(
            lambda: given(create(), process(), fail_job()), fail_job(), job_id(), id="failure already recorded"
        ),
        pytest.param(
            lambda: given(create(), process(), fire("retry-2-1"), send_fails=send_fails_on((2, 1))),
            complete(0.8),
            job_id(),
            id="try that could not be sent",
        ),
        pytest.param(
            lambda: given(create_expense(), process(), complete(0.5)),
            complete(0.8, visit=3),
            job_id(visit=3),
            id="no step running",
        ),
    ],
)
def test_a_result_for_a_job_not_in_flight_is_stale(make_history, command, stale_job):
    history = make_history()
    before = history.state

    rejected = rejection(history.when(command), "stale")

    assert rejected.reason == f"job {stale_job} is not in flight"
    after = SHIPPED.evolve(before, RecordedEvent(sequence=before.last_sequence + 1, event=rejected))
    assert (after.business_state, after.bookkeeping.pending_job, after.output) == (
        before.business_state,
        before.bookkeeping.pending_job,
        before.output,
    )
