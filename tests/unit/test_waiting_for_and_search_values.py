"""What the read model tells the query side: who may answer a waiting workflow now (`waiting_for`: named actors, a
quorum's members who have not voted yet, or `role:<role>` where anyone with the command's role may), and the values
of its type's search fields, read off its input and its steps' results."""

from workflow_history import (
    INPUT,
    approve,
    cancel,
    complete,
    create,
    create_expense,
    fire,
    given,
    process,
)

from services.orchestrator.domain.types import WORKFLOW_TYPES


def test_a_state_anyone_with_the_role_may_answer_waits_for_the_role():
    history = given(create())
    assert history.state.waiting_for == ("role:requester",)  # Unprocessed: process
    history.record(process())
    assert history.state.waiting_for == ()  # a step runs: nobody is asked
    history.record(complete(0.9))
    assert history.state.waiting_for == ("role:approver",)  # approve or reject
    history.record(approve(approver="ann"))
    assert history.state.waiting_for == ()  # ended


def test_a_named_approver_and_a_quorums_members_who_have_not_voted_yet():
    history = given(create_expense(input=INPUT | {"manager_deadline_s": 60}), process(), complete(0.5))
    history.record(fire("deadline-3"))
    assert history.state.business_state == "Director Approval"
    assert history.state.waiting_for == ("director",)

    history.record(approve(approver="director"))
    assert history.state.waiting_for == ("fin-ann", "fin-bob", "fin-cy")
    history.record(approve(approver="fin-bob"))
    # fin-bob may still reject (any of the three may), so the reject handler keeps him among those asked.
    assert history.state.waiting_for == ("fin-ann", "fin-bob", "fin-cy")


def test_a_quorum_alone_asks_only_those_who_have_not_voted():
    finance = WORKFLOW_TYPES["expense"]
    taken = [{"command_kind": "approve", "actor": "fin-bob", "note": ""}]
    context = {"input": {}}
    assert finance.waiting_for("Finance Approval", taken, context) == ("fin-ann", "fin-bob", "fin-cy")  # may reject
    votes_of_another_kind = [{"command_kind": "reject", "actor": "fin-bob", "note": ""}]
    assert finance.waiting_for("Director Approval", votes_of_another_kind, context) == ("director",)


def test_a_cancelled_workflow_waits_for_nobody():
    history = given(create(), cancel(reason="not needed"))
    assert history.state.waiting_for == ()


def test_search_values_come_from_the_input_and_the_steps_results():
    expense = given(create_expense(input=INPUT | {"requester": "ann"}))
    assert expense.state.search_values == {"amount": 120.0, "requester": "ann"}

    approval = given(create())
    assert approval.state.search_values == {}  # no result yet
    approval.record(process())
    approval.record(complete(0.42))
    assert approval.state.search_values == {"output": 0.42}


def test_a_value_of_the_wrong_kind_is_not_searchable():
    expense = given(create_expense(input={"amount": "a lot", "requester": 7}))
    assert expense.state.search_values == {}
