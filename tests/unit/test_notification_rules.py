"""What the notifier tells whom (services/notifier/rules.py), decision links (contracts/links.py) and webhook
signatures, without I/O."""

from datetime import UTC, datetime, timedelta

import pytest

from contracts.events import (
    DEADLINE_PASSED,
    InputRecorded,
    RecordedEvent,
    TransitionTaken,
    WorkflowCancelled,
    WorkflowReassigned,
    WorkflowStarted,
)
from contracts.links import DecisionLink, LinkRefused
from contracts.notifications import Delivery, Subscription
from services.notifier.catcher import signature_is_valid
from services.notifier.channels import Composer, signature, slack
from services.notifier.rules import decider, matches, notifications_of, reminded, reminder_of
from services.orchestrator.domain.types import WORKFLOW_TYPES

EXPENSE = WORKFLOW_TYPES["expense"].describe()
APPROVAL = WORKFLOW_TYPES["approval"].describe()
NOW = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
SECRET = b"a secret"


def recorded(event, sequence: int = 7) -> RecordedEvent:
    return RecordedEvent(sequence=sequence, event=event)


def moved(source: str, dest: str, **fields) -> RecordedEvent:
    event = TransitionTaken(workflow_id="x-1", occurred_at=NOW, trigger="t", source=source, dest=dest, **fields)
    return recorded(event)


def subscription(**fields) -> Subscription:
    defaults = {"id": "s1", "owner": "ada", "owner_roles": ["approver"], "channel": "webhook", "url": "http://r/h"}
    return Subscription.model_validate(defaults | {"created_at": NOW} | fields)


def test_entering_a_wait_tells_who_it_waits_for_bound_to_the_event_that_entered_it():
    [waiting] = notifications_of(moved("Validating", "Manager Approval", deadline_at=NOW), EXPENSE)
    assert (waiting.kind, waiting.state, waiting.people) == ("waiting", "Manager Approval", ("group:managers",))
    assert (waiting.id, waiting.entered_sequence, waiting.deadline_at) == ("x-1.7.waiting", 7, NOW)


def test_a_wait_entered_by_its_deadline_is_an_escalation_to_its_new_people():
    [escalated] = notifications_of(moved("Manager Approval", "Director Approval", note=DEADLINE_PASSED), EXPENSE)
    assert (escalated.kind, escalated.people) == ("escalated", ("director",))


def test_a_quorum_names_each_member_and_the_start_names_the_initial_wait():
    [finance] = notifications_of(moved("Manager Approval", "Finance Approval"), EXPENSE)
    assert finance.people == ("fin-ann", "fin-bob", "fin-cy")
    [draft] = notifications_of(recorded(WorkflowStarted(workflow_id="x-1", occurred_at=NOW)), EXPENSE)
    assert (draft.state, draft.people, draft.decisions) == ("Draft", ("role:requester",), ())
    assert finance.decisions == ("approve", "reject")


def test_an_end_is_told_to_no_one_in_particular_and_steps_and_inputs_tell_nothing():
    [ended] = notifications_of(moved("Waiting For Approval", "Finished"), APPROVAL)
    assert (ended.kind, ended.people, ended.summary) == ("ended", (), "Approval x-1 ended in Finished")
    cancelled = recorded(WorkflowCancelled(workflow_id="x-1", occurred_at=NOW, reason="dup"))
    assert [n.summary for n in notifications_of(cancelled, APPROVAL)] == ["Approval x-1 was cancelled: dup"]
    assert notifications_of(moved("Unprocessed", "Sending To Queue"), APPROVAL) == []
    taken = InputRecorded(workflow_id="x-1", occurred_at=NOW, command_kind="approve", actor="fin-ann")
    assert notifications_of(recorded(taken), EXPENSE) == []


def test_a_wait_with_a_reminder_asks_for_one_at_its_time_which_then_tells_the_same_people():
    deadline = NOW + timedelta(hours=24)
    entered = moved("Validating", "Manager Approval", deadline_at=deadline, remind_at=deadline)
    asked = reminder_of(entered, notifications_of(entered, EXPENSE))
    assert asked is not None
    reminder, due = asked
    assert due == deadline and (reminder.entered_sequence, reminder.people) == (7, ("group:managers",))
    told = reminded(reminder, "Expense", deadline - timedelta(minutes=90))
    assert (told.id, told.kind) == ("x-1.7.reminder", "reminder")
    assert told.summary.endswith("its deadline passes in 1 h 30 min")
    unreminded = moved("Validating", "Manager Approval", deadline_at=deadline)
    assert reminder_of(unreminded, notifications_of(unreminded, EXPENSE)) is None


def test_a_subscription_matches_by_kind_type_and_people_and_links_only_what_its_owner_may_answer():
    [waiting] = notifications_of(moved("Validating", "Manager Approval"), EXPENSE)
    [director] = notifications_of(moved("Manager Approval", "Director Approval"), EXPENSE)
    [ended] = notifications_of(moved("Waiting For Approval", "Finished"), APPROVAL)
    mine = subscription(people=["ada", "group:managers"], owner_groups=["managers"])
    assert matches(mine, waiting) and not matches(mine, director) and not matches(mine, ended)
    everyone = subscription(people=[], owner_groups=["managers"])
    assert all(matches(everyone, each) for each in (waiting, director, ended))
    assert not matches(subscription(people=[], types=["approval"]), waiting)
    assert not matches(subscription(people=[], kinds=["ended"]), waiting)
    assert decider(everyone, waiting) == "ada" and decider(everyone, director) is None
    assert decider(subscription(owner="director", owner_roles=["approver"]), director) == "director"
    assert decider(everyone, ended) is None
    [draft] = notifications_of(recorded(WorkflowStarted(workflow_id="x-1", occurred_at=NOW)), EXPENSE)
    assert decider(subscription(owner_roles=["requester"]), draft) is None  # Draft takes no decision: no links


def test_a_decision_link_is_checked_by_its_signature():
    link = DecisionLink.new("x-1", 7, "ada", "approve", NOW)
    token = link.sign(SECRET)
    assert DecisionLink.verified(token, SECRET) == link
    payload, mac = token.split(".")
    for forged in (f"{payload}.{mac[:-2]}AA", f"{payload[:-2]}AA.{mac}", "nonsense", "a.b"):
        with pytest.raises(LinkRefused):
            DecisionLink.verified(forged, SECRET)
    with pytest.raises(LinkRefused):
        DecisionLink.verified(token, b"another secret")
    assert DecisionLink.new("x-1", 7, "ada", "approve", NOW).nonce != link.nonce


def test_a_webhook_signature_verifies_only_the_same_body_secret_and_a_recent_time():
    body, now = b'{"id": "k"}', 1_900_000_000
    header = signature("whsec_s", now, body)
    assert signature_is_valid("whsec_s", header, body, now=now)
    assert not signature_is_valid("whsec_s", header, body + b" ", now=now)
    assert not signature_is_valid("whsec_other", header, body, now=now)
    assert not signature_is_valid("whsec_s", header, body, now=now + 301)  # a replay, later
    assert not signature_is_valid("whsec_s", "garbage", body, now=now)


def test_a_slack_body_is_the_summary_with_slack_links_and_the_json_body_has_the_links_of_the_one_it_goes_to():
    [waiting] = notifications_of(moved("Validating", "Manager Approval"), EXPENSE)
    delivery = Delivery(subscription_id="s1", notification=waiting)
    message = Composer("http://ui.test/", SECRET).message(delivery, subscription(people=[], owner_groups=["managers"]))
    assert message.body["url"] == "http://ui.test/#/workflows/x-1" and set(message.body["links"]) == {
        "approve",
        "reject",
    }
    approve = message.body["links"]["approve"].removeprefix("http://ui.test/#/decide/")
    assert DecisionLink.verified(approve, SECRET).person == "ada"
    text = slack(message)["text"]
    assert text.startswith(
        "Expense x-1 waits in Manager Approval for group:managers\n<http://ui.test/#/workflows/x-1|Open it>"
    )
    assert "|Approve> · <" in text and text.endswith("|Reject>")
    other = Composer("http://ui.test", SECRET).message(delivery, subscription(owner="cy", owner_roles=["requester"]))
    assert other.body["links"] == {} and "Approve:" not in other.text


def test_a_wait_for_the_person_the_input_names_tells_them_and_a_reassigned_wait_tells_its_assignees():
    entered = moved("Validating", "Manager Approval")
    [named] = notifications_of(entered, EXPENSE, {"manager": "carol", "amount": 120})
    assert named.people == ("carol", "group:managers")
    [unnamed] = notifications_of(entered, EXPENSE, {})
    assert unnamed.people == ("group:managers",)
    event = WorkflowReassigned(workflow_id="x-1", occurred_at=NOW, state="Finance Approval", to=["ada", "bo"])
    [reassigned] = notifications_of(recorded(event, sequence=9), EXPENSE)
    assert (reassigned.kind, reassigned.people, reassigned.entered_sequence) == ("waiting", ("ada", "bo"), 9)
    assert reassigned.decisions == ("approve", "reject")
